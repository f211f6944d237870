"""Data: from the user's ``X`` (arrays, image files, torch Datasets) to batches of tensors.

Also the small real image data that ships inside the dependencies (no
download), label noise for experiments, and batched augmentation.
"""

from ._augment import random_shift
from ._datasets import add_label_noise, load_digits_images, load_mnist_images, make_moving_digits
from ._image_files import ImageFiles, ImageReader, list_image_files
from ._sources import iter_batches, make_source

__all__ = [
    "ImageFiles",
    "ImageReader",
    "add_label_noise",
    "iter_batches",
    "list_image_files",
    "load_digits_images",
    "load_mnist_images",
    "make_moving_digits",
    "make_source",
    "random_shift",
]

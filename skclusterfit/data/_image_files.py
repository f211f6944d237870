"""Image files on disk as a torch Dataset, decoded with PIL.

Every estimator accepts a list (or 1-D array) of image paths as ``X``; it is
wrapped in :class:`ImageFiles` with the defaults, which refuse a missing or
unreadable file up front, naming it. Wrap the paths yourself to choose the
colour mode, the size and crop, a normalisation, or to skip bad files.
:func:`list_image_files` turns a folder, a text file of paths or a glob into
the list of paths.
"""

import glob
import os
import warnings
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from torch.utils.data import DataLoader, Dataset

_ON_ERROR = ("raise", "skip")
# PIL's filters by torchvision's InterpolationMode names (Resize on a PIL image uses these).
_FILTERS = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


def is_path_list(X):
    """True for a non-empty list, tuple or 1-D array whose items are all paths."""
    if isinstance(X, np.ndarray):
        if X.ndim != 1 or X.dtype.kind not in "USO":
            return False
    elif not isinstance(X, (list, tuple)):
        return False
    return len(X) > 0 and all(isinstance(x, (str, os.PathLike)) for x in X)


def list_image_files(source):
    """The image paths named by ``source``, and the files passed over.

    Parameters
    ----------
    source : str or path
        A folder (searched recursively for ``.jpg``, ``.jpeg``, ``.png`` and
        ``.webp`` files, any letter case; hidden files and folders are left
        out), a text file with one path per line (relative paths are taken
        from the file's folder; blank lines and lines starting with ``#`` are
        ignored), or a glob pattern such as ``"photos/**/*.jpg"``.

    Returns
    -------
    paths : list of str
        Sorted (a folder or glob) or in the file's order (a list file).
    ignored : list of (str, str)
        Files of a folder that were passed over, each with the reason (their
        extension is not an image's).

    Examples
    --------
    >>> import os, tempfile
    >>> from skclusterfit.data import list_image_files
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("b.PNG", "a.jpg", "notes.txt"):
    ...     open(os.path.join(folder, name), "w").close()
    >>> paths, ignored = list_image_files(folder)
    >>> [os.path.basename(p) for p in paths], [os.path.basename(p) for p, _ in ignored]
    (['a.jpg', 'b.PNG'], ['notes.txt'])
    """
    source = os.fspath(source)
    if os.path.isdir(source):
        paths, ignored = [], []
        for root, dirs, files in os.walk(source, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in files:
                if name.startswith("."):
                    continue
                path = os.path.join(root, name)
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(path)
                else:
                    ignored.append((path, "not an image file extension"))
        return sorted(paths), sorted(ignored)
    if os.path.isfile(source):
        folder = os.path.dirname(os.path.abspath(source))
        with open(source, encoding="utf-8") as file:
            lines = [line.strip() for line in file]
        paths = [
            line if os.path.isabs(line) else os.path.join(folder, line)
            for line in lines
            if line and not line.startswith("#")
        ]
        return paths, []
    if glob.has_magic(source):
        return sorted(p for p in glob.glob(source, recursive=True) if os.path.isfile(p)), []
    raise ValueError(
        f"images={source!r} is neither a folder, a text file of paths, nor a glob "
        "pattern (e.g. 'photos/**/*.jpg')."
    )


def _as_pair(value, name):
    if value is None or isinstance(value, Integral):
        return value if value is None else int(value)
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{name}={value!r} must be an int or a (height, width) pair.")
    return pair


def _resized_size(width, height, size):
    """(width, height) after torchvision's ``Resize(size)`` rule."""
    if size is None:
        return width, height
    if isinstance(size, int):  # the shorter side becomes ``size``, aspect kept
        if width <= height:
            return size, int(size * height / width)
        return int(size * width / height), size
    return size[1], size[0]


def _probe(path):
    """(width, height) of an image file, or raise ValueError naming the file."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise ValueError(f"image file {path!r} does not exist.")
    try:
        with Image.open(path) as image:  # reads the header (PNG: every chunk's CRC)
            image.verify()
            return image.size
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{path!r} is not an image file PIL can read: {exc}") from exc


class ImageFiles(Dataset):
    """A Dataset of image files: item ``i`` is a float32 tensor (C, H, W).

    Each file is checked (exists, PIL can identify it) when the dataset is
    built, so a bad header is reported before a long fit starts;
    :meth:`check_decode` decodes every file once (in parallel) to find the
    files whose data is damaged past the header, such as a truncated JPEG.
    Items go through, in order: conversion to ``mode``, resizing to ``size``,
    centre-cropping to ``crop``, scaling to [0, 1], and ``(x - mean) / std``:
    torchvision's ``Resize``, ``CenterCrop``, ``ToTensor`` and ``Normalize``,
    so ``size=232, crop=224`` with ImageNet's mean and std reproduces
    ``ResNet50_Weights.IMAGENET1K_V2.transforms()``. Decoding happens in
    ``__getitem__``, i.e. in the DataLoader's worker processes when an
    estimator has ``num_workers > 0``.

    Parameters
    ----------
    paths : sequence of str or path
        Image files, in sample order.
    mode : str, default="RGB"
        PIL colour mode every image is converted to ("RGB": 3 channels, "L":
        grayscale, 1 channel).
    size : int, tuple of (height, width) or None, default=None
        Resize every image: an int sets the shorter side (aspect kept), a
        pair the exact size. None keeps the file's size.
    crop : int, tuple of (height, width) or None, default=None
        Centre crop after resizing (zero padding where the image is smaller).
    mean, std : sequence of float or None, default=None
        Per-channel normalisation ``(x - mean) / std`` of the [0, 1] values;
        None for none.
    interpolation : str, default="bilinear"
        PIL's resampling filter for the resize: "bilinear", "bicubic" (timm's
        and open_clip's usual), "nearest", "lanczos", "box" or "hamming".
    on_error : {"raise", "skip"}, default="raise"
        What to do with a file that is missing, not an image, of a size that
        differs from the first (when neither ``size`` nor ``crop`` fixes the
        output size), or that fails to decode when read. "raise": a
        ValueError naming it. "skip": files found bad when the dataset is
        built or by :meth:`check_decode` are dropped with a warning and
        listed in ``skipped``; a file that fails later, while a fit reads it,
        does not stop the fit: its item is an all-zero image, the file is
        listed in :attr:`read_failures` and a warning names it.

    Attributes
    ----------
    paths : list of str
        The files kept, in order: item ``i`` is ``paths[i]``.
    skipped : list of (str, str)
        Each dropped file and why.
    shape : tuple of (C, H, W)
        The shape of every item.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from skclusterfit.data import ImageFiles
    >>> folder = tempfile.mkdtemp()
    >>> paths = [os.path.join(folder, f"{i}.png") for i in range(3)]
    >>> for path in paths:
    ...     Image.fromarray(np.zeros((8, 6, 3), dtype=np.uint8)).save(path)
    >>> images = ImageFiles(paths)
    >>> len(images), tuple(images[0].shape)
    (3, (3, 8, 6))
    >>> tuple(ImageFiles(paths, size=12, crop=(10, 8))[0].shape)
    (3, 10, 8)
    """

    def __init__(
        self, paths, *, mode="RGB", size=None, crop=None, mean=None, std=None,
        on_error="raise", interpolation="bilinear",
    ):
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error={on_error!r} must be one of {_ON_ERROR}.")
        if interpolation not in _FILTERS:
            raise ValueError(
                f"interpolation={interpolation!r} must be one of {sorted(_FILTERS)}."
            )
        self.interpolation = interpolation
        self.mode = mode
        self.size = _as_pair(size, "size")
        self.crop = _as_pair(crop, "crop")
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)
        if (self.mean is None) != (self.std is None):
            raise ValueError(f"mean={mean!r} and std={std!r}: give both or neither.")
        if self.std is not None and not all(s > 0 for s in self.std):
            raise ValueError(f"std={std!r} must be positive.")
        self.on_error = on_error
        if self.mode == "P":
            raise ValueError("mode='P' (palette) is not an image layout; use 'RGB' or 'L'.")
        channels = len(self.mode) if self.mode not in ("1", "L", "I", "F") else 1
        if self.mean is not None and len(self.mean) not in (1, channels):
            raise ValueError(
                f"mean has {len(self.mean)} values but mode={mode!r} images have "
                f"{channels} channel(s)."
            )
        self.paths, self.skipped = [], []
        first = None  # (height, width) of the first kept item
        for path in map(os.fspath, paths):
            try:
                height_width = self._item_size(*_probe(path))
                if first is None:
                    first = height_width
                elif height_width != first:
                    raise ValueError(
                        f"image file {path!r} is {height_width[0]}x{height_width[1]} "
                        f"(HxW) but the first is {first[0]}x{first[1]}; pass "
                        "ImageFiles(paths, size=(H, W)) or crop= to give them one size."
                    )
            except ValueError as exc:
                if on_error == "raise":
                    raise
                self.skipped.append((path, str(exc)))
                continue
            self.paths.append(path)
        self._warn_skipped(self.skipped, len(self.skipped) + len(self.paths))
        if not self.paths:
            raise ValueError("no readable image file among the paths given.")
        self.shape = (channels, *first)
        self._reset_failures()

    # -- sizes and decoding ---------------------------------------------------------
    def _item_size(self, width, height):
        """(height, width) of the item made from a file of this size."""
        if self.crop is not None:
            return (self.crop, self.crop) if isinstance(self.crop, int) else self.crop
        width, height = _resized_size(width, height, self.size)
        return height, width

    def _reset_failures(self):
        # Shared memory, so that DataLoader workers' records reach this process.
        self._failed = torch.zeros(len(self.paths), dtype=torch.uint8).share_memory_()

    def _decode(self, path):
        """The transformed image as a float32 (C, H, W) tensor; OSError if damaged."""
        from PIL import Image

        with Image.open(path) as image:
            image = image.convert(self.mode)
            width, height = _resized_size(*image.size, self.size)
            if (width, height) != image.size:
                image = image.resize((width, height), _FILTERS[self.interpolation])
            if self.crop is not None:
                crop_h, crop_w = self._item_size(width, height)
                # torchvision's centre crop: offsets rounded, zero padding outside.
                top = int(round((height - crop_h) / 2.0))
                left = int(round((width - crop_w) / 2.0))
                image = image.crop((left, top, left + crop_w, top + crop_h))
            array = np.asarray(image, dtype=np.uint8)
        if array.ndim == 2:
            array = array[:, :, None]
        x = torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)
        if self.mean is not None:
            mean = torch.tensor(self.mean).view(-1, 1, 1)
            std = torch.tensor(self.std).view(-1, 1, 1)
            x = x.sub_(mean).div_(std)
        return x

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        path = self.paths[index]
        try:
            x = self._decode(path)
            if tuple(x.shape) != self.shape:
                raise OSError(f"decoded to shape {tuple(x.shape)}, not {self.shape}")
            return x
        except (OSError, ValueError, SyntaxError) as exc:  # damaged past the header
            message = f"cannot decode image file {path!r}: {exc}"
            if self.on_error == "raise":
                raise ValueError(message) from exc
            self._failed[index] = 1
            warnings.warn(
                f"{message}; on_error='skip': an all-zero image stands in for it "
                "(listed in .read_failures).",
                UserWarning,
                stacklevel=2,
            )
            return torch.zeros(self.shape)

    @property
    def read_failures(self):
        """Paths of the files that failed to decode when read, after the checks.

        Each one's item was an all-zero image (``on_error="skip"``). Run
        :meth:`check_decode` before a long fit so that this stays empty.
        """
        return [self.paths[i] for i in np.flatnonzero(self._failed.numpy())]

    def check_decode(self, num_workers=0, batch_size=64, verbose=0):
        """Decode every file once and drop (or refuse) those that fail.

        The header check made when the dataset is built does not see a file
        truncated or damaged further in; this does, at the cost of one
        decoding pass, spread over ``num_workers`` DataLoader processes.

        Parameters
        ----------
        num_workers : int, default=0
            DataLoader worker processes (0: decode in this process).
        batch_size : int, default=64
            Files per worker task.
        verbose : int, default=0
            Show a progress bar.

        Returns
        -------
        self : ImageFiles
            With the damaged files moved from ``paths`` to ``skipped``
            (``on_error="skip"``).

        Raises
        ------
        ValueError
            With ``on_error="raise"``, naming the first damaged file.
        """
        from ..runtime._progress import progress
        from ._sources import worker_context

        loader = DataLoader(
            _DecodeCheck(self), batch_size=batch_size, num_workers=num_workers,
            collate_fn=_as_list, multiprocessing_context=worker_context(num_workers),
        )
        failures = []
        for batch in progress(loader, total=len(loader), desc="checking images",
                              unit="batch", verbose=verbose):
            failures.extend(item for item in batch if item is not None)
        if failures and self.on_error == "raise":
            path, reason = failures[0]
            raise ValueError(f"cannot decode image file {path!r}: {reason}")
        if failures:
            bad = {path for path, _ in failures}
            self.paths = [p for p in self.paths if p not in bad]
            self.skipped.extend(failures)
            self._warn_skipped(failures, len(self.paths) + len(failures))
            if not self.paths:
                raise ValueError("no decodable image file among the paths given.")
            self._reset_failures()
        return self

    @staticmethod
    def _warn_skipped(skipped, total):
        if not skipped:
            return
        shown = "; ".join(reason for _, reason in skipped[:3])
        more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
        warnings.warn(
            f"skipped {len(skipped)} of {total} image files: {shown}{more}. "
            "The kept files are in .paths.",
            UserWarning,
            stacklevel=3,
        )

    def fingerprint_text(self):
        """The settings that change the items, as text (for checkpoint fingerprints)."""
        # Bilinear, the default, leaves the text (and checkpoints' fingerprints) as before.
        resample = "" if self.interpolation == "bilinear" else f"|{self.interpolation}"
        return (
            f"files|{self.mode}|{self.size}|{self.crop}|{self.mean}|{self.std}{resample}"
        )

    def __repr__(self):
        extras = "".join(
            f", {name}={getattr(self, name)!r}"
            for name in ("crop", "mean", "std")
            if getattr(self, name) is not None
        ) + ("" if self.interpolation == "bilinear" else f", interpolation={self.interpolation!r}")
        return (
            f"ImageFiles(<{len(self.paths)} files>, mode={self.mode!r}, "
            f"size={self.size!r}{extras})"
        )


def _as_list(items):
    return items


class _DecodeCheck(Dataset):
    """Item ``i``: None if ``paths[i]`` decodes, else ``(path, reason)``."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        path = self.images.paths[index]
        try:
            x = self.images._decode(path)
        except (OSError, ValueError, SyntaxError) as exc:
            return path, f"cannot decode image file {path!r}: {exc}"
        if tuple(x.shape) != self.images.shape:
            return path, f"image file {path!r} decoded to shape {tuple(x.shape)}"
        return None


class ImageReader(TransformerMixin, BaseEstimator):
    """Image paths to an :class:`ImageFiles` dataset: a pipeline's first step.

    Stateless: ``fit`` does nothing and ``transform(paths)`` returns
    ``ImageFiles(paths, **settings)``. A model saved by ``skclusterfit fit``
    is ``Pipeline([("images", ImageReader(...)), ("clusterfit", ClusterFit)])``,
    so its ``transform`` takes image paths and applies the preprocessing the
    model was trained with.

    Parameters
    ----------
    mode, size, crop, mean, std, on_error, interpolation
        As in :class:`ImageFiles`.

    Examples
    --------
    >>> from skclusterfit.data import ImageReader
    >>> ImageReader(size=232, crop=224).get_params()["crop"]
    224
    """

    def __init__(
        self, *, mode="RGB", size=None, crop=None, mean=None, std=None, on_error="raise",
        interpolation="bilinear",
    ):
        self.mode = mode
        self.size = size
        self.crop = crop
        self.mean = mean
        self.std = std
        self.on_error = on_error
        self.interpolation = interpolation

    def fit(self, X=None, y=None):
        """Nothing to learn; returns self."""
        return self

    def transform(self, X):
        """``ImageFiles(X, **settings)``: the dataset of the images at paths ``X``."""
        if isinstance(X, ImageFiles):
            return X
        return ImageFiles(list(X), **self.get_params())

    def fit_transform(self, X, y=None):
        return self.transform(X)

    def __sklearn_is_fitted__(self):
        return True

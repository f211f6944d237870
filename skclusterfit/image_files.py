"""Image files on disk as a torch Dataset, decoded with PIL.

Every estimator accepts a list (or 1-D array) of image paths as ``X``; it is
wrapped in :class:`ImageFiles` with the defaults, which refuse a missing or
unreadable file up front, naming it. Wrap the paths yourself to choose the
colour mode, the size, or to skip bad files with a warning.
"""

import os
import warnings

import numpy as np
import torch
from torch.utils.data import Dataset

_ON_ERROR = ("raise", "skip")


def is_path_list(X):
    """True for a non-empty list, tuple or 1-D array whose items are all paths."""
    if isinstance(X, np.ndarray):
        if X.ndim != 1 or X.dtype.kind not in "USO":
            return False
    elif not isinstance(X, (list, tuple)):
        return False
    return len(X) > 0 and all(isinstance(x, (str, os.PathLike)) for x in X)


def _probe(path):
    """(width, height) of an image file, or raise ValueError naming the file."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise ValueError(f"image file {path!r} does not exist.")
    try:
        with Image.open(path) as image:  # reads the header only
            image.verify()
            return image.size
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{path!r} is not an image file PIL can read: {exc}") from exc


class ImageFiles(Dataset):
    """A Dataset of image files: item ``i`` is a float32 tensor (C, H, W) in [0, 1].

    Each file is checked (exists, PIL can identify it) when the dataset is
    built, so a bad file is reported before a long fit starts rather than
    hours into it.

    Parameters
    ----------
    paths : sequence of str or path
        Image files, in sample order.
    mode : str, default="RGB"
        PIL colour mode every image is converted to ("RGB": 3 channels, "L":
        grayscale, 1 channel).
    size : tuple of (height, width) or None, default=None
        Resize every image to this size. None: all images must have the size
        of the first.
    on_error : {"raise", "skip"}, default="raise"
        What to do with a file that is missing, not an image, or (with
        ``size=None``) of another size: raise a ValueError naming it, or drop
        it with a warning. Dropped files are listed in ``skipped``.

    Attributes
    ----------
    paths : list of str
        The files kept, in order: item ``i`` is ``paths[i]``.
    skipped : list of (str, str)
        Each dropped file and why.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from skclusterfit.image_files import ImageFiles
    >>> folder = tempfile.mkdtemp()
    >>> paths = [os.path.join(folder, f"{i}.png") for i in range(3)]
    >>> for path in paths:
    ...     Image.fromarray(np.zeros((8, 6, 3), dtype=np.uint8)).save(path)
    >>> images = ImageFiles(paths)
    >>> len(images), tuple(images[0].shape)
    (3, (3, 8, 6))
    """

    def __init__(self, paths, *, mode="RGB", size=None, on_error="raise"):
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error={on_error!r} must be one of {_ON_ERROR}.")
        self.mode = mode
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.on_error = on_error
        self.paths, self.skipped = [], []
        expected = None if size is None else (self.size[1], self.size[0])
        for path in map(os.fspath, paths):
            try:
                image_size = _probe(path)
                if expected is None:
                    expected = image_size
                elif self.size is None and image_size != expected:
                    raise ValueError(
                        f"image file {path!r} is {image_size[1]}x{image_size[0]} "
                        f"(HxW) but the first is {expected[1]}x{expected[0]}; pass "
                        "ImageFiles(paths, size=(H, W)) to resize them all."
                    )
            except ValueError as exc:
                if on_error == "raise":
                    raise
                self.skipped.append((path, str(exc)))
                continue
            self.paths.append(path)
        self._shape = None if expected is None else (expected[1], expected[0])
        if self.skipped:
            shown = "; ".join(reason for _, reason in self.skipped[:3])
            more = f" (and {len(self.skipped) - 3} more)" if len(self.skipped) > 3 else ""
            warnings.warn(
                f"skipped {len(self.skipped)} of {len(self.skipped) + len(self.paths)} "
                f"image files: {shown}{more}. The kept files are in .paths.",
                UserWarning,
                stacklevel=2,
            )
        if not self.paths:
            raise ValueError("no readable image file among the paths given.")

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        from PIL import Image

        path = self.paths[index]
        try:
            with Image.open(path) as image:
                image = image.convert(self.mode)
                if self.size is not None:
                    image = image.resize((self.size[1], self.size[0]), Image.BILINEAR)
                array = np.asarray(image, dtype=np.uint8)
        except OSError as exc:  # truncated or corrupt data past the header
            raise ValueError(f"cannot decode image file {path!r}: {exc}") from exc
        if array.ndim == 2:
            array = array[:, :, None]
        return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)

    def __repr__(self):
        return f"ImageFiles(<{len(self.paths)} files>, mode={self.mode!r}, size={self.size!r})"

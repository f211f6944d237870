"""From the user's ``X`` to batches of float tensors.

Inputs are numpy arrays (images ``(n, C, H, W)``, ``(n, H, W, C)`` or
``(n, H, W)``, videos ``(n, T, C, H, W)``, uint8 or float; or 2-D
vectors), including memory maps, or a ``torch.utils.data.Dataset``. Arrays
are indexed a whole batch at a time and converted to float32 per batch, so
nothing holds the whole dataset as one float32 tensor and no Python code runs
per sample.
"""

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

_CHANNEL_COUNTS = (1, 3, 4)


def image_layout(shape):
    """``"nchw"``, ``"nhwc"``, ``"nhw"``, ``"video"`` or ``"vector"`` for an array of this shape.

    Videos are 5-D, ``(n, T, C, H, W)``: frames first, as torchvision's video
    datasets give them (see :mod:`skclusterfit.networks`).
    """
    if len(shape) == 2:
        return "vector"
    if len(shape) == 5:
        return "video"
    if len(shape) == 3:
        return "nhw"
    if len(shape) == 4:
        if shape[1] not in _CHANNEL_COUNTS and shape[-1] in _CHANNEL_COUNTS:
            return "nhwc"
        return "nchw"
    raise ValueError(
        f"X must be 2-D (n_samples, n_features), image data (n, C, H, W), "
        f"(n, H, W, C) or (n, H, W), or videos (n, T, C, H, W); got an array of "
        f"shape {tuple(shape)}."
    )


class ArraySource:
    """Batches from an in-memory or memory-mapped numpy array.

    Parameters
    ----------
    X : ndarray
        The validated array.
    """

    def __init__(self, X):
        self.X = X
        self.layout = image_layout(X.shape)
        # uint8 images are scaled to [0, 1] per batch, as torchvision's ToTensor does.
        self.scale = 1.0 / 255.0 if X.dtype == np.uint8 else None

    def __len__(self):
        return self.X.shape[0]

    @property
    def sample_shape(self):
        """Shape of one sample as the network sees it: (C, H, W), (T, C, H, W) or (D,)."""
        shape = self.X.shape[1:]
        if self.layout == "nhwc":
            return (shape[2], shape[0], shape[1])
        if self.layout == "nhw":
            return (1, shape[0], shape[1])
        return tuple(shape)

    def subset(self, indices):
        return ArraySource(self.X[np.asarray(indices)])

    def batch(self, index):
        """Float32 tensor for ``index`` (a slice or an integer array)."""
        x = np.ascontiguousarray(self.X[index])
        if not x.flags.writeable:  # read-only memmap: torch wants writable memory
            x = x.copy()
        x = torch.from_numpy(x)
        if self.layout == "nhwc":
            x = x.permute(0, 3, 1, 2)
        elif self.layout == "nhw":
            x = x.unsqueeze(1)
        x = x.float()
        if self.scale is not None:
            x = x.mul_(self.scale)
        return x


class DatasetSource:
    """Batches from a ``torch.utils.data.Dataset`` through a DataLoader.

    Items may be a tensor or a tuple whose first element is the input; any
    target the dataset carries is ignored (ClusterFit brings its own labels).
    """

    def __init__(self, dataset, num_workers=0):
        self.dataset = dataset
        self.num_workers = num_workers

    def __len__(self):
        return len(self.dataset)

    @property
    def sample_shape(self):
        return tuple(first_input(self.dataset[0]).shape)

    def subset(self, indices):
        return DatasetSource(Subset(self.dataset, list(indices)), self.num_workers)

    def iter_batches(self, indices, batch_size, pin_memory=False):
        loader = DataLoader(
            Subset(self.dataset, indices),
            batch_size=batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=pin_memory,
            collate_fn=_collate_inputs,
            multiprocessing_context=worker_context(self.num_workers),
        )
        start = 0
        for x in loader:
            stop = start + len(x)
            yield x, indices[start:stop]
            start = stop


def worker_context(num_workers):
    """The multiprocessing context for DataLoader workers (None without workers).

    Named explicitly because the process default is not always a standard one:
    inside a joblib/loky worker (``GridSearchCV(n_jobs=...)``, a parallel docs
    build) it is loky's, whose processes a DataLoader cannot start. ``fork``
    where the platform has it (PyTorch's own default on Linux), else ``spawn``.
    """
    if not num_workers:
        return None
    import multiprocessing
    import sys

    methods = multiprocessing.get_all_start_methods()
    method = "fork" if sys.platform.startswith("linux") and "fork" in methods else "spawn"
    return multiprocessing.get_context(method)


def first_input(item):
    """The input of one Dataset item as a float tensor; uint8 scaled to [0, 1] as for arrays."""
    x = item[0] if isinstance(item, (tuple, list)) else item
    x = torch.as_tensor(x)
    if x.dtype == torch.uint8:
        return x.float().mul_(1.0 / 255.0)
    return x.float() if not x.is_floating_point() else x


def _collate_inputs(items):
    # default_collate stacks a worker's batch straight into shared memory, saving
    # the copy that sending an ordinary tensor to the main process would make.
    return default_collate([first_input(item) for item in items])


def make_source(X, num_workers=0):
    """Wrap validated input ``X`` in the matching batch source."""
    if isinstance(X, Dataset):
        return DatasetSource(X, num_workers=num_workers)
    return ArraySource(X)


def iter_batches(source, batch_size, indices=None, pin_memory=False):
    """Yield ``(x, batch_indices)`` over ``indices`` (default: all, in order)."""
    n = len(source)
    if indices is None:
        indices = np.arange(n)
    if isinstance(source, DatasetSource):
        yield from source.iter_batches(indices, batch_size, pin_memory=pin_memory)
        return
    contiguous = len(indices) == n and np.array_equal(indices, np.arange(n))
    for start in range(0, len(indices), batch_size):
        batch_idx = indices[start : start + batch_size]
        # A slice keeps memory maps reading sequentially; fancy indexing copies anyway.
        index = slice(start, start + len(batch_idx)) if contiguous else np.sort(batch_idx)
        x = source.batch(index)
        if not contiguous:
            batch_idx = index
        if pin_memory:
            x = x.pin_memory()
        yield x, batch_idx


def is_dataset(X):
    return isinstance(X, Dataset)


def take_rows(X, start, stop):
    """Samples ``start:stop`` of validated input: an array slice (a memory map
    stays a lazy view) or a ``Subset`` of a Dataset."""
    if isinstance(X, Dataset):
        return Subset(X, range(start, stop))
    return X[start:stop]

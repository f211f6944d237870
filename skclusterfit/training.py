"""NetClassifier: the one training loop (student, teacher on labels, pretext teachers)."""

import math
import time
from numbers import Integral, Real

import numpy as np
import torch
from scipy.special import softmax
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    TransformerMixin,
    clone,
)
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._base import (
    NetworkFeaturesMixin,
    TorchStateMixin,
    prepare_network,
    run_network,
    to_device,
)
from ._progress import log, progress
from ._torch_utils import autocast_context, autocast_dtype, draw_seed, resolve_device, seeded
from ._validation import validate_input
from .augment import random_shift
from .backbones import (
    build_module,
    build_shape_of,
    check_channels,
    preprocess_from_spec,
    with_new_head,
)
from .checkpoint import as_epoch_checkpoint
from .data import iter_batches, make_source
from .persistence import PersistenceMixin


def balanced_order(y, rng):
    """An epoch of ``len(y)`` indices drawn uniformly over classes, then within them.

    DeepCluster's sampler: a few huge clusters would otherwise dominate every
    epoch of pseudo-label training.
    """
    counts = np.bincount(y)
    by_class = np.argsort(y, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    present = np.flatnonzero(counts)
    classes = present[rng.randint(len(present), size=len(y))]
    offsets = (rng.random_sample(len(y)) * counts[classes]).astype(np.int64)
    return by_class[starts[classes] + offsets]


def default_augmentation(sample_shape):
    """Random shifts of ~7% of the image side for images; nothing for vectors."""
    if len(sample_shape) != 3:
        return None
    max_shift = max(1, round(0.07 * min(sample_shape[1:])))
    return lambda x, generator: random_shift(x, max_shift, generator)


class NetClassifier(
    PersistenceMixin,
    TorchStateMixin,
    NetworkFeaturesMixin,
    TransformerMixin,
    ClassifierMixin,
    BaseEstimator,
):
    """Train a network on ``(X, y)``: the student, or a teacher on (noisy) labels.

    The network's final ``nn.Linear`` is replaced by one sized to the number
    of classes, then trained with cross-entropy by SGD with momentum under a
    cosine learning-rate schedule. ``transform`` returns the penultimate
    features (the input of that head).

    Read more in :ref:`components` (the student) and :ref:`gpu`.

    Parameters
    ----------
    model : str, nn.Module or callable, default="auto"
        ``"auto"`` (a small CNN for images, an MLP for vectors), ``"cnn"``,
        ``"mlp"``, a torchvision model name (randomly initialised), an
        ``nn.Module`` (copied; trained from its current weights) or a callable
        returning one.
    max_epochs : int, default=30
        Passes over the data.
    batch_size : int, default=128
        Samples per step.
    lr : float, default=0.05
        Peak learning rate.
    weight_decay : float, default=5e-4
        L2 penalty of SGD.
    momentum : float, default=0.9
        SGD momentum (Nesterov when > 0).
    lr_schedule : {"cosine", "constant"}, default="cosine"
        Cosine decay to zero over all steps, or a constant rate.
    augment : "auto", callable or None, default="auto"
        Batch augmentation during training. "auto": random shifts of about 7%
        of the image side for image input, none for vectors. A callable gets
        ``(batch, generator)`` and returns the augmented batch.
    sampler : {"shuffle", "balanced"}, default="shuffle"
        "balanced" draws each epoch uniformly over classes (DeepCluster's
        sampler for pseudo-labels with very unequal cluster sizes).
    label_smoothing : float, default=0.0
        Passed to the cross-entropy loss.
    preprocess : "auto", str, callable or None, default="auto"
        Applied to each float batch on the device, before augmentation, in
        training and inference. A callable; a torchvision weights name (e.g.
        ``"ResNet50_Weights.IMAGENET1K_V2"``) whose transforms to apply; None
        for nothing. "auto": nothing, except as ClusterFit's student, which
        then takes its teacher's preprocessing (e.g. the ImageNet resize,
        crop and normalisation of a pretrained torchvision teacher).
    num_workers : int, default=0
        DataLoader workers, used only for torch Dataset input.
    mixed_precision : bool, "bfloat16" or "float16", default=True
        True: autocast (bf16, or fp16 with loss scaling) on CUDA, float32 on
        the CPU. A dtype name forces that autocast on any device.
    device : str, default="auto"
        "auto" (CUDA when available), "cpu", "cuda", "cuda:N".
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling and augmentation.
    verbose : int, default=0
        A progress bar over epochs (with the loss) when > 0; also a line per
        epoch when > 1.

    Attributes
    ----------
    model_ : HeadedNetwork
        The trained network (``backbone`` + ``head``).
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    history_ : list of dict
        Mean training loss and seconds per epoch.
    input_shape_ : tuple
        Shape of one sample seen in fit.
    n_features_in_ : int
        ``X.shape[1]`` seen in fit (array input).
    n_features_out_ : int
        Dimension of the penultimate features.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skclusterfit import NetClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = NetClassifier(max_epochs=5, random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    >>> clf.transform(X[:2]).shape
    (2, 128)
    """

    _parameter_constraints = {
        "model": [str, nn.Module, callable],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "lr_schedule": [StrOptions({"cosine", "constant"})],
        "augment": [StrOptions({"auto"}), callable, None],
        "sampler": [StrOptions({"shuffle", "balanced"})],
        "label_smoothing": [Interval(Real, 0, 1, closed="left")],
        "preprocess": [callable, str, None],
        "num_workers": [Interval(Integral, 0, None, closed="left")],
        "mixed_precision": ["boolean", StrOptions({"bfloat16", "float16"})],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model="auto",
        *,
        max_epochs=30,
        batch_size=128,
        lr=0.05,
        weight_decay=5e-4,
        momentum=0.9,
        lr_schedule="cosine",
        augment="auto",
        sampler="shuffle",
        label_smoothing=0.0,
        preprocess="auto",
        num_workers=0,
        mixed_precision=True,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.model = model
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.lr_schedule = lr_schedule
        self.augment = augment
        self.sampler = sampler
        self.label_smoothing = label_smoothing
        self.preprocess = preprocess
        self.num_workers = num_workers
        self.mixed_precision = mixed_precision
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y, *, checkpoint=None):
        """Train the network from scratch on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or torch Dataset
            Images (n, C, H, W), (n, H, W, C), (n, H, W) or vectors (n, d).
        y : array-like of shape (n_samples,)
            Class labels (for ClusterFit's student: the pseudo-labels).
        checkpoint : str, path, EpochCheckpoint or None, default=None
            A file updated (atomically) after every epoch with the network,
            optimizer, scheduler and random-generator state. If it exists, a
            fit with the same data and parameters resumes from it and gives
            the same network as an uninterrupted fit; one from another fit is
            refused.

        Returns
        -------
        self : NetClassifier
        """
        self._validate_params()
        X, y = validate_input(self, X, y, reset=True)
        check_classification_targets(y)
        self.classes_, y_encoded = np.unique(y, return_inverse=True)
        source = make_source(X, self.num_workers)
        if len(y_encoded) != len(source):
            raise ValueError(
                f"y has {len(y_encoded)} labels but X has {len(source)} samples."
            )
        device = resolve_device(self.device)
        checkpoint = as_epoch_checkpoint(checkpoint, self, X, y_encoded)
        rng = check_random_state(self.random_state)
        with seeded(draw_seed(rng), device):
            module = build_module(self.model, source.sample_shape, len(self.classes_))
            check_channels(module, source.sample_shape, "student")
            network = with_new_head(module, len(self.classes_), f"model={self.model!r}")
            self.history_ = self._train(network, source, y_encoded, device, rng, checkpoint)
        self.model_ = network.eval()
        self.n_features_out_ = network.head.in_features
        return self

    @property
    def preprocess_(self):
        """The preprocessing callable applied to each batch (None: nothing)."""
        check_is_fitted(self)
        return preprocess_from_spec(None if self.preprocess == "auto" else self.preprocess)

    def _student_template(self):
        """ClusterFit's default student for this teacher: the same recipe, unfitted."""
        return clone(self)

    def _preprocess_spec(self):
        """The preprocessing as a parameter value (ClusterFit gives it to its student)."""
        return None if self.preprocess == "auto" else self.preprocess

    # -- persistence protocol (skclusterfit.persistence) ----------------------
    def _saved_networks(self):
        if not hasattr(self, "model_"):
            return {}
        return {"model_": {"build_shape": build_shape_of(self.model_)}}

    def _rebuild_network(self, name, info):
        n_classes = len(self.classes_)
        module = build_module(self.model, tuple(info["build_shape"] or ()), n_classes)
        return with_new_head(module, n_classes, f"model={self.model!r}")

    def _train(self, network, source, y, device, rng, checkpoint):
        n_samples = len(source)
        batch_size = min(self.batch_size, n_samples)
        steps_per_epoch = math.ceil(n_samples / batch_size)
        total_steps = self.max_epochs * steps_per_epoch
        prepare_network(network, device).train()
        optimizer = torch.optim.SGD(
            network.parameters(),
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            nesterov=self.momentum > 0,
        )
        if self.lr_schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total_steps))
            )
        else:
            scheduler = None
        criterion = nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)
        # Loss scaling only for fp16: bf16 keeps float32's exponent range.
        use_fp16 = autocast_dtype(device, self.mixed_precision) == torch.float16
        scaler = torch.amp.GradScaler(device.type, enabled=use_fp16)
        augment = (
            default_augmentation(source.sample_shape)
            if self.augment == "auto"
            else self.augment
        )
        preprocess = self.preprocess_
        generator = torch.Generator().manual_seed(draw_seed(rng))
        labels = torch.from_numpy(y.astype(np.int64))
        first_epoch, history = checkpoint.restore(
            network, optimizer, scheduler, scaler, rng, generator
        )
        epochs = progress(
            range(first_epoch, self.max_epochs), total=self.max_epochs,
            initial=first_epoch, desc="training", unit="epoch", verbose=self.verbose,
        )
        for epoch in epochs:
            start = time.perf_counter()
            network.train()
            if self.sampler == "balanced":
                order = balanced_order(y, rng)
            else:
                order = rng.permutation(n_samples)
            loss_sum = torch.zeros((), device=device)
            seen = 0
            batches = iter_batches(source, batch_size, order, pin_memory=device.type == "cuda")
            for x, index in batches:
                if len(x) < 2:
                    continue  # BatchNorm cannot train on a batch of one
                x = to_device(x, device)
                target = labels[index].to(device, non_blocking=True)
                if preprocess is not None:
                    x = preprocess(x)
                if augment is not None:
                    x = augment(x, generator)
                with autocast_context(device, self.mixed_precision):
                    loss = criterion(network(x), target)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if scheduler is not None:
                    scheduler.step()
                loss_sum += loss.detach().float() * len(x)
                seen += len(x)
            epoch_loss = float(loss_sum) / max(seen, 1)
            seconds = time.perf_counter() - start
            history.append({"epoch": epoch + 1, "loss": epoch_loss, "seconds": seconds})
            epochs.set_postfix_str(f"loss {epoch_loss:.4f}")
            log(
                "NetClassifier",
                f"epoch {epoch + 1}/{self.max_epochs} loss {epoch_loss:.4f} ({seconds:.1f}s)",
                self.verbose > 1,
            )
            checkpoint.save(
                epoch + 1, history, network, optimizer, scheduler, scaler, rng, generator
            )
        epochs.close()
        return history

    def _run(self, X, features):
        check_is_fitted(self)
        X = validate_input(self, X, reset=False)
        network = self.model_
        return run_network(
            network,
            make_source(X, self.num_workers),
            batch_size=self.batch_size,
            device=resolve_device(self.device),
            forward=network.features if features else network,
            preprocess=self.preprocess_,
            mixed_precision=self.mixed_precision,
        )

    def predict_proba(self, X):
        """Class probabilities (softmax of the logits).

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or torch Dataset

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        return softmax(self._run(X, features=False), axis=1)

    def predict(self, X):
        """Most probable class for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or torch Dataset

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self.classes_[np.argmax(self._run(X, features=False), axis=1)]

    def transform(self, X):
        """Penultimate-layer features (the input of the classification head).

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or torch Dataset

        Returns
        -------
        features : ndarray of shape (n_samples, ``n_features_out_``), float32
        """
        return self._run(X, features=True)

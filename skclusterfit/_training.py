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

from .runtime import _ddp
from ._base import (
    NetworkFeaturesMixin,
    TorchStateMixin,
    prepare_network,
    run_network,
    step_threads,
    to_device,
)
from .runtime._progress import log, progress
from .runtime._threads import torch_threads
from .runtime._torch_utils import (
    autocast_context,
    autocast_dtype,
    check_deterministic,
    draw_seed,
    resolve_device,
    seeded,
)
from ._validation import validate_input
from .data._augment import random_shift
from .networks._backbones import (
    build_module,
    build_shape_of,
    check_channels,
    preprocess_from_spec,
    with_new_head,
)
from .networks._libraries import library_build_info
from .storage._checkpoint import as_epoch_checkpoint
from .data._sources import iter_batches, make_source
from .runtime._distributed import process_group
from .storage._persistence import PersistenceMixin


def _has_batch_norm(network):
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in network.modules())


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


# The named optimizers and what lr="auto" / weight_decay="auto" mean for each.
# "sgd" is the paper's recipe, tuned for networks with normalisation layers.
# "adamw" also trains a plain network without them (the default init shrinks
# its signal layer by layer, and SGD barely moves it in the first epochs).
OPTIMIZERS = {
    "sgd": (torch.optim.SGD, {"lr": 0.05, "weight_decay": 5e-4}),
    "adamw": (torch.optim.AdamW, {"lr": 5e-3, "weight_decay": 0.05}),
}
_OPTIMIZER_PREFIX = "optimizer__"


def make_optimizer(estimator, parameters):
    """The torch optimizer of ``estimator``'s settings over ``parameters``.

    ``lr`` and ``weight_decay`` of "auto" take the named optimizer's recipe
    (or, for a class, its own defaults); ``momentum`` reaches SGD only;
    ``optimizer__*`` keywords are passed last and override the rest.
    """
    name = estimator.optimizer
    if isinstance(name, str):
        cls, recipe = OPTIMIZERS[name]
    else:
        cls, recipe = name, {}
    kwargs = {}
    for key in ("lr", "weight_decay"):
        value = getattr(estimator, key)
        if value != "auto":
            kwargs[key] = value
        elif key in recipe:
            kwargs[key] = recipe[key]
    if name == "sgd":
        kwargs["momentum"] = estimator.momentum
        kwargs["nesterov"] = estimator.momentum > 0
    extra = estimator._optimizer_kwargs()
    kwargs.update(extra)
    try:
        return cls(parameters, **kwargs)
    except TypeError as exc:
        given = ", ".join(f"{_OPTIMIZER_PREFIX}{key}" for key in sorted(extra))
        raise TypeError(
            f"optimizer={name!r} refused the keywords {sorted(kwargs)}"
            + (f" (set by {given})" if given else "")
            + f": {exc}"
        ) from exc


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
    of classes, then trained with cross-entropy under a cosine learning-rate
    schedule, by AdamW unless ``optimizer`` says otherwise. ``transform``
    returns the penultimate features (the input of that head).

    The defaults train the built-in networks and a user's plain network
    without normalisation layers alike (``benchmarks/trainer_defaults.py``);
    ``optimizer="sgd"`` is the paper's recipe (SGD with Nesterov momentum),
    suited to networks with batch normalisation and long schedules.

    Read more in :ref:`components` (the student) and :ref:`gpu`.

    Parameters
    ----------
    model : str, nn.Module or callable, default="auto"
        ``"auto"`` (a small CNN for images, an MLP for vectors), ``"cnn"``,
        ``"mlp"``, a torchvision model name or a model library's name
        (``"timm:resnet50"``, ``"timm:vit_tiny_patch16_224"``, also ``"hf:"``,
        ``"open_clip:"``, ``"hub:"``; randomly initialised, the library's
        head replaced through its own API, e.g. timm ``reset_classifier``),
        an ``nn.Module`` (copied; trained from its current weights) or a
        callable returning one.
    model_kwargs : dict or None, default=None
        Keyword arguments of the call that builds a network given by name
        (``timm.create_model``, ``torchvision.models.get_model``, the
        built-in networks' constructors, ...; see
        :class:`~skclusterfit.FeatureExtractor`), e.g.
        ``{"drop_path_rate": 0.1}`` for a timm ViT. Kept with a saved model.
    max_epochs : int, default=30
        Passes over the data.
    batch_size : int, default=32
        Samples per step (and per inference batch in ``predict``/``transform``).
        Distributed, it is still the global batch: each of the ``W``
        processes trains on ``batch_size // W`` samples per step, so a fit
        takes the same steps at the same learning rate with 1 process or many
        (to fill more GPUs, raise ``batch_size`` and ``lr`` together).
    optimizer : {"adamw", "sgd"} or torch.optim.Optimizer subclass, default="adamw"
        "adamw": ``torch.optim.AdamW``; "sgd": ``torch.optim.SGD`` with
        ``momentum`` (Nesterov when > 0); a class is called as
        ``optimizer(network.parameters(), lr=..., weight_decay=...,
        **optimizer__*)``. Keywords of the optimizer are given as
        ``optimizer__<name>=value`` (e.g. ``optimizer__betas=(0.9, 0.95)``),
        as in skorch; they are parameters like the others (``get_params``,
        ``set_params``, ``clone``, grid search) and override ``lr``,
        ``weight_decay`` and ``momentum``.
    lr : float or "auto", default="auto"
        Peak learning rate. "auto": 5e-3 for "adamw", 0.05 for "sgd", the
        class's own default for a class. It needs no change with the number
        of processes (``batch_size`` is the global batch); when raising
        ``batch_size``, scale ``lr`` with it (the linear scaling rule).
    weight_decay : float or "auto", default="auto"
        Weight decay. "auto": 0.05 for "adamw" (decoupled, as AdamW applies
        it), 5e-4 for "sgd" (an L2 penalty), the class's own default for a
        class.
    momentum : float, default=0.9
        Momentum of "sgd" (Nesterov when > 0); other optimizers ignore it
        (pass ``optimizer__momentum`` to a class that takes one).
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
        ``"ResNet50_Weights.IMAGENET1K_V2"``) whose transforms to apply; a
        dict of ``size``, ``crop``, ``mean``, ``std``, ``interpolation`` (a
        model library's preprocessing); None for nothing. "auto": nothing, except as ClusterFit's student, which
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
    distributed : "auto" or bool, default="auto"
        Under ``torchrun`` (or with torch.distributed initialised), train
        with DistributedDataParallel: every process passes the same ``X``
        and ``y`` and trains on its own, disjoint share of each epoch; after
        fit every process holds the same network. "auto" distributes when
        launched so and runs in one process otherwise; False never
        distributes; True requires it. See :mod:`skclusterfit.runtime`.
    **optimizer_params : dict
        ``optimizer__<name>`` keywords of the optimizer (see ``optimizer``).

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
        "model_kwargs": [dict, None],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "optimizer": [StrOptions(set(OPTIMIZERS)), type],
        "lr": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "weight_decay": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "lr_schedule": [StrOptions({"cosine", "constant"})],
        "augment": [StrOptions({"auto"}), callable, None],
        "sampler": [StrOptions({"shuffle", "balanced"})],
        "label_smoothing": [Interval(Real, 0, 1, closed="left")],
        "preprocess": [callable, str, dict, None],
        "num_workers": [Interval(Integral, 0, None, closed="left")],
        "mixed_precision": ["boolean", StrOptions({"bfloat16", "float16"})],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "distributed": [StrOptions({"auto"}), "boolean"],
    }

    def __init__(
        self,
        model="auto",
        *,
        model_kwargs=None,
        max_epochs=30,
        batch_size=32,
        optimizer="adamw",
        lr="auto",
        weight_decay="auto",
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
        distributed="auto",
        **optimizer_params,
    ):
        self.model = model
        self.model_kwargs = model_kwargs
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
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
        self.distributed = distributed
        # Stored untouched, as scikit-learn wants; fit refuses names without
        # the prefix.
        vars(self).update(optimizer_params)

    def _check_optimizer_params(self):
        known = set(self._get_param_names())
        unknown = [
            name
            for name in vars(self)
            if name not in known
            and not name.startswith("_")
            and not name.endswith("_")
            and (not name.startswith(_OPTIMIZER_PREFIX) or name == _OPTIMIZER_PREFIX)
        ]
        if unknown:
            raise TypeError(
                f"NetClassifier got unexpected keyword arguments {sorted(unknown)}; "
                f"keywords for the optimizer are named '{_OPTIMIZER_PREFIX}<name>'."
            )

    def _optimizer_kwargs(self):
        """The ``optimizer__*`` parameters, without their prefix."""
        return {
            name[len(_OPTIMIZER_PREFIX) :]: value
            for name, value in vars(self).items()
            if name.startswith(_OPTIMIZER_PREFIX)
        }

    def get_params(self, deep=True):
        """Get parameters for this estimator, ``optimizer__*`` keywords included.

        Parameters
        ----------
        deep : bool, default=True
            Also return the parameters of contained estimators.

        Returns
        -------
        params : dict
            Parameter names mapped to their values.
        """
        params = super().get_params(deep=deep)
        params.update(
            (name, value)
            for name, value in vars(self).items()
            if name.startswith(_OPTIMIZER_PREFIX)
        )
        return params

    def set_params(self, **params):
        """Set parameters, ``optimizer__*`` keywords included.

        Parameters
        ----------
        **params : dict
            Estimator parameters; ``optimizer__<name>`` sets (or adds) a
            keyword of the optimizer.

        Returns
        -------
        self : NetClassifier
        """
        # As in __init__, which takes them (and "optimizer_params", the name
        # of its **keywords, which fit then refuses) into **optimizer_params.
        for name in [
            n for n in params if n.startswith(_OPTIMIZER_PREFIX) or n == "optimizer_params"
        ]:
            setattr(self, name, params.pop(name))
        return super().set_params(**params)

    def fit(self, X, y, *, checkpoint=None, soft_targets=None, sample_weight=None):
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
        soft_targets : SoftTargets or None, default=None
            Knowledge distillation (how :class:`~skclusterfit.Distillation`
            trains its student): a teacher's class scores for every sample,
            softened at a temperature and mixed with the hard labels ``y``.
            The classes are then the teacher's (``soft_targets.classes``),
            which ``y`` must come from.
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Non-negative weights: each epoch draws ``n_samples`` rows with
            replacement, each with probability proportional to its weight
            (rows of weight 0 are never trained on), so the expected loss is
            the weighted one. How ``ClusterFit(curation=...)`` trains the
            student on the curated rows. Not with ``sampler="balanced"``.

        Returns
        -------
        self : NetClassifier
        """
        self._validate_params()
        self._check_optimizer_params()
        if not isinstance(self.optimizer, str) and not issubclass(
            self.optimizer, torch.optim.Optimizer
        ):
            raise TypeError(
                f"optimizer={self.optimizer!r} must be 'sgd', 'adamw' or a subclass "
                "of torch.optim.Optimizer."
            )
        X, y = validate_input(self, X, y, reset=True)
        check_classification_targets(y)
        if soft_targets is None:
            self.classes_, y_encoded = np.unique(y, return_inverse=True)
            targets = y_encoded
        else:
            self.classes_, y_encoded = soft_targets.classes, soft_targets.encode(y)
            targets = soft_targets.fingerprint_array(y_encoded)
            if len(soft_targets) != len(y_encoded):
                raise ValueError(
                    f"soft_targets has {len(soft_targets)} rows but y has "
                    f"{len(y_encoded)} labels."
                )
        source = make_source(X, self.num_workers)
        if len(y_encoded) != len(source):
            raise ValueError(
                f"y has {len(y_encoded)} labels but X has {len(source)} samples."
            )
        draw = self._draw_probabilities(sample_weight, len(y_encoded))
        if draw is not None:  # which rows train is part of what a checkpoint resumes
            targets = np.concatenate([np.asarray(targets, dtype=np.float64), draw])
        device = resolve_device(self.device)
        group = process_group(self.distributed, device)
        checkpoint = as_epoch_checkpoint(checkpoint, self, X, targets, group)
        rng = check_random_state(_ddp.shared_random_state(self.random_state, group))
        with seeded(draw_seed(rng), device):
            module = build_module(self.model, source.sample_shape, len(self.classes_),
                                  model_kwargs=self.model_kwargs)
            check_channels(module, source.sample_shape, "student")
            network = with_new_head(module, len(self.classes_), f"model={self.model!r}")
            # Small networks on small batches: the threads they can use, no more.
            threads = step_threads(network, source, self.batch_size, device,
                                   self.preprocess_, training=True)
            with torch_threads(threads):
                self.history_ = self._train(
                    network, source, y_encoded, device, rng, checkpoint, group, soft_targets,
                    draw,
                )
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

    # -- persistence protocol (skclusterfit.storage) ----------------------
    def _saved_networks(self):
        if not hasattr(self, "model_"):
            return {}
        return {"model_": {"build_shape": build_shape_of(self.model_),
                           **library_build_info(self.model, self.model_.backbone)}}

    def _rebuild_network(self, name, info):
        n_classes = len(self.classes_)
        module = build_module(self.model, tuple(info["build_shape"] or ()), n_classes,
                              library_info=info.get("library"), model_kwargs=self.model_kwargs)
        return with_new_head(module, n_classes, f"model={self.model!r}")

    def _draw_probabilities(self, sample_weight, n_samples):
        """``sample_weight`` checked and normalised to sum to 1 (None stays None)."""
        if sample_weight is None:
            return None
        if self.sampler == "balanced":
            raise ValueError(
                "sample_weight cannot be combined with sampler='balanced': both "
                "decide which rows each epoch draws."
            )
        weight = np.asarray(sample_weight, dtype=np.float64)
        if weight.shape != (n_samples,):
            raise ValueError(
                f"sample_weight has shape {weight.shape}; expected ({n_samples},)."
            )
        if not np.all(np.isfinite(weight)) or np.any(weight < 0) or weight.sum() <= 0:
            raise ValueError(
                "sample_weight must be finite and non-negative, and not all zero; "
                f"got min {weight.min()!r}, sum {weight.sum()!r}."
            )
        return weight / weight.sum()

    def _train(self, network, source, y, device, rng, checkpoint, group, soft_targets=None,
               draw=None):
        n_samples = len(source)
        # A batch of one sample trains a network with BatchNorm on nothing (and
        # raises in train mode): such batches are refused, or skipped at an
        # epoch's end, but only for such a network.
        min_batch = 2 if _has_batch_norm(network) else 1
        if min_batch > 1 and n_samples < min_batch * group.world_size:
            raise ValueError(
                f"a network with BatchNorm needs at least {min_batch} samples per "
                f"process to train; got n_samples={n_samples} for {group.world_size} "
                "process(es)."
            )
        batch_size = _ddp.local_batch_size(min(self.batch_size, n_samples), group, min_batch)
        check_deterministic(device, network)
        total_steps = self.max_epochs * _ddp.steps_per_epoch(n_samples, batch_size, group)
        prepare_network(network, device).train()
        model = _ddp.wrap(network, device, group)  # the network itself in one process
        optimizer = make_optimizer(self, network.parameters())
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
        generator = torch.Generator().manual_seed(_ddp.process_seed(draw_seed(rng), group))
        labels = torch.from_numpy(y.astype(np.int64))
        soft = None if soft_targets is None else soft_targets.probabilities()
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
            if draw is not None:
                order = rng.choice(n_samples, size=n_samples, p=draw)
            elif self.sampler == "balanced":
                order = balanced_order(y, rng)
            else:
                order = rng.permutation(n_samples)
            order = _ddp.epoch_share(order, batch_size, group)
            loss_sum = torch.zeros((), device=device)
            seen = 0
            batches = iter_batches(source, batch_size, order, pin_memory=device.type == "cuda")
            for x, index in batches:
                if len(x) < min_batch:
                    continue  # BatchNorm cannot train on a batch of one
                x = to_device(x, device)
                target = labels[index].to(device, non_blocking=True)
                if preprocess is not None:
                    x = preprocess(x)
                if augment is not None:
                    x = augment(x, generator)
                with autocast_context(device, self.mixed_precision):
                    logits = model(x)
                    if soft is None:
                        loss = criterion(logits, target)
                    else:
                        soft_batch = soft[index].to(device, non_blocking=True)
                        loss = soft_targets.loss(logits, soft_batch, target, criterion)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if scheduler is not None:
                    scheduler.step()
                loss_sum += loss.detach().float() * len(x)
                seen += len(x)
            epoch_loss, seconds = _ddp.end_epoch(
                network, loss_sum, seen, time.perf_counter() - start, group
            )
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

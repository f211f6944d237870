"""Judging frozen features: a linear probe (the paper's) and a kNN probe (DINO's)."""

import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def linear_probe(
    X_train, y_train, X_test, y_test, *args, transformer=None, C=1.0, max_iter=2000
):
    """Held-out accuracy of a logistic regression on frozen, standardised features.

    Parameters
    ----------
    X_train, X_test : array-like
        Inputs (or features) for fitting and scoring the probe.
    y_train, y_test : array-like of shape (n_samples,)
        Clean labels of the downstream task.
    transformer : fitted transformer or None, default=None
        Its ``transform`` gives the features (it is not refitted). None means
        ``X_train`` and ``X_test`` already are features.

        .. deprecated:: 0.2
           The order of 0.1, ``linear_probe(transformer, X_train, y_train,
           X_test, y_test)``, works with a FutureWarning until 0.3.
    C : float, default=1.0
        Inverse regularisation strength of the logistic regression.
    max_iter : int, default=2000
        Iterations of the solver.

    Returns
    -------
    accuracy : float

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skclusterfit.evaluation import linear_probe
    >>> X, y = load_digits(return_X_y=True)
    >>> round(linear_probe(X[:1000], y[:1000], X[1000:], y[1000:]), 2) > 0.85
    True
    """
    if args:
        if len(args) != 1:
            raise TypeError(
                f"linear_probe() takes 4 positional arguments (X_train, y_train, "
                f"X_test, y_test) but {4 + len(args)} were given."
            )
        warnings.warn(
            "skclusterfit.evaluation.linear_probe(transformer, X_train, y_train, X_test, "
            "y_test) is deprecated since 0.2 and will be removed in 0.3: call "
            "linear_probe(X_train, y_train, X_test, y_test, transformer=transformer), "
            "the order of knn_probe.",
            FutureWarning,
            stacklevel=2,
        )
        transformer, X_train, y_train, X_test, y_test = X_train, y_train, X_test, y_test, args[0]
    if transformer is not None:
        X_train = transformer.transform(X_train)
        X_test = transformer.transform(X_test)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    probe.fit(np.asarray(X_train), y_train)
    return float(probe.score(np.asarray(X_test), y_test))


# Above this many train x test pairs the exact search (a blocked matrix product)
# takes tens of seconds on a small CPU; the approximate graph search takes over.
_BRUTE_FORCE_PAIRS = 2_500_000_000


# knn_probe's random_state default until 0.3 changes it to None (scikit-learn's).
_WARN = "warn"


def knn_probe(
    X_train,
    y_train,
    X_test,
    y_test,
    k=20,
    temperature=0.07,
    *,
    transformer=None,
    algorithm="auto",
    random_state=_WARN,
):
    """Held-out top-1 accuracy of a weighted k-nearest-neighbour vote on features.

    DINO's protocol (Caron et al., 2021): features are L2-normalised, each test
    sample takes its ``k`` nearest training samples by cosine similarity
    ``s``, each neighbour votes for its label with weight ``exp(s / T)``, and
    the label with the largest total wins. Unlike :func:`linear_probe` nothing
    is trained, so it judges the geometry of the features as they are.

    Parameters
    ----------
    X_train : array-like of shape (n_train, n_features)
        Features of the labelled reference samples.
    y_train : array-like of shape (n_train,)
        Their labels (any hashable values).
    X_test : array-like of shape (n_test, n_features)
        Features of the samples to classify.
    y_test : array-like of shape (n_test,)
        Their true labels.
    transformer : fitted transformer or None, default=None
        Its ``transform`` gives the features (it is not refitted), as in
        :func:`linear_probe`. None means ``X_train`` and ``X_test`` already
        are features.
    k : int, default=20
        Neighbours per test sample (DINO uses 20); at most ``n_train``.
    temperature : float, default=0.07
        ``T`` of the vote weights ``exp(similarity / T)``.
    algorithm : {"auto", "brute", "nndescent"}, default="auto"
        "brute": exact search by blocked matrix products. "nndescent": the
        approximate neighbour graph of pynndescent (the neighbours found may
        differ from the exact ones for a small fraction of samples). "auto":
        exact up to 2.5e9 train x test pairs (about 50,000 x 50,000), graph
        search above.
    random_state : int, RandomState instance or None, default=0
        Seed of the graph construction (``algorithm="nndescent"`` only).

        .. versionchanged:: 0.2
           The default changes from 0 to None (scikit-learn's) in 0.3; until
           then a graph search without ``random_state`` warns and uses 0.

    Returns
    -------
    accuracy : float
        Fraction of test samples whose predicted label equals ``y_test``.

    See Also
    --------
    linear_probe : a logistic regression on the same features.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skclusterfit.evaluation import knn_probe
    >>> X, y = load_digits(return_X_y=True)
    >>> accuracy = knn_probe(X[:1000], y[:1000], X[1000:], y[1000:], k=20)
    >>> round(accuracy, 3)
    0.956
    """
    from numbers import Integral, Real

    if transformer is not None:
        X_train, X_test = transformer.transform(X_train), transformer.transform(X_test)
    X_train, X_test = _as_features(X_train, "X_train"), _as_features(X_test, "X_test")
    if X_train.shape[1] != X_test.shape[1]:
        raise ValueError(
            f"X_train has {X_train.shape[1]} features per sample but X_test has "
            f"{X_test.shape[1]}."
        )
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    for name, X, y in (("train", X_train, y_train), ("test", X_test, y_test)):
        if y.shape != (len(X),):
            raise ValueError(
                f"y_{name} has shape {y.shape} but X_{name} has {len(X)} samples."
            )
    if not isinstance(k, Integral) or isinstance(k, bool) or not 1 <= k <= len(X_train):
        raise ValueError(
            f"k={k!r} must be an integer from 1 to n_train={len(X_train)}."
        )
    if not isinstance(temperature, Real) or not temperature > 0:
        raise ValueError(f"temperature={temperature!r} must be a positive number.")
    if algorithm not in ("auto", "brute", "nndescent"):
        raise ValueError(
            f"algorithm={algorithm!r} must be 'auto', 'brute' or 'nndescent'."
        )
    if algorithm == "auto":
        pairs = len(X_train) * len(X_test)
        algorithm = "brute" if pairs <= _BRUTE_FORCE_PAIRS else "nndescent"
    if algorithm == "nndescent" and isinstance(random_state, str) and random_state == _WARN:
        warnings.warn(
            "knn_probe's default random_state changes from 0 to None (scikit-learn's) "
            "in 0.3; pass random_state=0 to keep this graph search's result, or None.",
            FutureWarning,
            stacklevel=2,
        )
    if isinstance(random_state, str) and random_state == _WARN:
        random_state = 0

    train, test = _l2_normalize(X_train), _l2_normalize(X_test)
    if algorithm == "brute":
        neighbours, similarities = _exact_neighbours(train, test, int(k))
    else:
        neighbours, similarities = _graph_neighbours(train, test, int(k), random_state)
    classes, train_codes = np.unique(y_train, return_inverse=True)
    weights = np.exp((similarities - 1.0) / temperature)  # shifted by 1: no overflow
    votes = np.zeros((len(test), len(classes)))
    np.add.at(votes, (np.arange(len(test))[:, None], train_codes[neighbours]), weights)
    predicted = classes[np.argmax(votes, axis=1)]
    return float(np.mean(predicted == y_test))


def _as_features(X, name):
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) == 0:
        raise ValueError(
            f"{name} must be a non-empty 2-D array of features; got shape {X.shape}."
        )
    if not np.isfinite(X).all():
        raise ValueError(f"{name} holds NaN or infinite values.")
    return X


def _l2_normalize(X):
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


def _exact_neighbours(train, test, k, block_rows=1024):
    """Top-``k`` cosine neighbours of each test row, by blocks of test rows."""
    neighbours = np.empty((len(test), k), dtype=np.int64)
    similarities = np.empty((len(test), k), dtype=np.float32)
    for start in range(0, len(test), block_rows):
        block = test[start : start + block_rows] @ train.T
        if k < block.shape[1]:
            top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(block.shape[1]), block.shape).copy()
        top_sims = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        neighbours[start : start + len(block)] = np.take_along_axis(top, order, axis=1)
        similarities[start : start + len(block)] = np.take_along_axis(top_sims, order, axis=1)
    return neighbours, similarities


def _graph_neighbours(train, test, k, random_state):
    """Approximate top-``k`` neighbours from pynndescent; similarities recomputed exactly."""
    from pynndescent import NNDescent

    index = NNDescent(
        train, metric="dot", n_neighbors=max(15, k), random_state=random_state,
        low_memory=True,
    )
    neighbours, _ = index.query(test, k=k)
    neighbours = neighbours.astype(np.int64)
    similarities = np.einsum("nd,nkd->nk", test, train[neighbours]).astype(np.float32)
    order = np.argsort(-similarities, axis=1, kind="stable")
    return (
        np.take_along_axis(neighbours, order, axis=1),
        np.take_along_axis(similarities, order, axis=1),
    )


def _network_of(estimator):
    """The torch network inside a fitted estimator (or the module itself)."""
    from sklearn.frozen import FrozenEstimator
    from torch import nn

    if isinstance(estimator, FrozenEstimator):
        estimator = estimator.estimator
    if isinstance(estimator, nn.Module):
        return estimator
    if hasattr(estimator, "student_"):  # ClusterFit: judge the student N_cf
        estimator = estimator.student_
    for name in ("model_", "network_"):
        network = getattr(estimator, name, None)
        if isinstance(network, nn.Module):
            return network
    raise TypeError(
        f"estimator={estimator!r} holds no fitted network: pass a fitted "
        "NetClassifier, FeatureExtractor, RotNet or ClusterFit, or an nn.Module."
    )


def _preprocess_of(estimator):
    """What the estimator applies to each batch before its network (None: nothing)."""
    from sklearn.frozen import FrozenEstimator

    if isinstance(estimator, FrozenEstimator):
        estimator = estimator.estimator
    estimator = getattr(estimator, "student_", estimator)
    try:
        return getattr(estimator, "preprocess_", None)
    except Exception:  # an nn.Module, or an estimator without the attribute
        return None


def layer_features(network, layers, X, *, batch_size=256, preprocess=None):
    """Global-average-pooled outputs of named layers for every sample of ``X``.

    Parameters
    ----------
    network : nn.Module
        Traced with ``torchvision.models.feature_extraction``; a network
        holding a model library's network (timm, transformers, open_clip,
        torch.hub) is read by forward hooks instead.
    layers : list of str
        Node names (see ``get_graph_node_names(network)``) or module names
        (their last node); for a library's network, module names (e.g.
        ``"blocks.3"`` of a timm ViT, also as ``"backbone.model.blocks.3"``).
        Token outputs (n, tokens, d) give their class token, or their mean
        where there is none.
    X : array-like or torch Dataset
        Inputs as the network's estimator takes them.
    batch_size : int, default=256
        Samples per forward pass.
    preprocess : callable or None, default=None
        Applied to each float batch first (``layerwise_probe`` passes the
        estimator's ``preprocess_``, e.g. a library teacher's resize and
        normalisation).

    Returns
    -------
    features : dict of str to ndarray of shape (n_samples, n_channels)

    See Also
    --------
    layerwise_probe : a linear probe on each of these layers.

    Examples
    --------
    >>> from skclusterfit import NetClassifier
    >>> from skclusterfit.data import load_digits_images
    >>> from skclusterfit.evaluation import layer_features
    >>> X, y = load_digits_images()
    >>> clf = NetClassifier(max_epochs=1, random_state=0).fit(X[:200], y[:200])
    >>> features = layer_features(clf.model_, ["backbone.features.0", "head"], X[:5])
    >>> {name: f.shape for name, f in features.items()}
    {'backbone.features.0': (5, 32), 'head': (5, 10)}
    """
    import torch
    from torchvision.models.feature_extraction import (
        create_feature_extractor,
        get_graph_node_names,
    )

    from .data._sources import is_dataset, iter_batches, make_source
    from .networks._libraries import is_library_network, library_layer_features, pool_output

    if is_library_network(network):
        # A model library's network (timm, transformers, ...) is not traced:
        # its modules' outputs are read by hooks, tokens pooled to the class token.
        def extract(x):
            return library_layer_features(network, layers, x)
    else:
        _, valid = get_graph_node_names(network)
        # A module's name (e.g. "layer4") stands for its last node, as in torchvision.
        unknown = [
            layer
            for layer in layers
            if layer not in valid and not any(v.startswith(layer + ".") for v in valid)
        ]
        if unknown:
            raise ValueError(
                f"layers {unknown} are not nodes of the network; valid names are "
                f"{valid}."
            )
        graph = create_feature_extractor(network, return_nodes=list(layers)).eval()
        n_prefix = 1 if getattr(network, "class_token", None) is not None else 0

        def extract(x):
            # Spatial maps are averaged over space (the paper pools each layer
            # before its linear probe); tokens give their class token (or their
            # mean); vectors pass as they are.
            outputs = graph(x)
            return {layer: pool_output(outputs[layer], "auto", n_prefix) for layer in layers}

    device = next(network.parameters()).device
    was_training = network.training
    network.eval()
    if not is_dataset(X):
        X = np.asarray(X)
    source = make_source(X)
    out = {layer: [] for layer in layers}
    try:
        with torch.inference_mode():
            for x, _ in iter_batches(source, batch_size):
                x = x.to(device)
                outputs = extract(preprocess(x) if preprocess is not None else x)
                for layer in layers:
                    out[layer].append(outputs[layer].float().cpu().numpy())
    finally:
        network.train(was_training)
    return {layer: np.concatenate(chunks) for layer, chunks in out.items()}


def layerwise_probe(estimator, layers, X_train, y_train, X_test, y_test, **probe_kwargs):
    """Linear-probe accuracy of several named layers of one network (paper Fig. 4).

    Each layer's output is global-average pooled over its spatial dimensions,
    standardised, and judged by :func:`linear_probe`.

    Parameters
    ----------
    estimator : fitted estimator or nn.Module
        A fitted :class:`~skclusterfit.NetClassifier`, ``FeatureExtractor``,
        :class:`~skclusterfit.pretext.RotNet` or ``ClusterFit`` (its student
        network), possibly wrapped in ``FrozenEstimator``; or an ``nn.Module``.
    layers : list of str
        Node names as in ``torchvision.models.feature_extraction``, or module
        names (the output of the module's last node, e.g. a conv block); an
        unknown name raises an error listing the valid ones. For the built-in
        CNN of a NetClassifier the blocks are ``"backbone.features.0"`` to
        ``"backbone.features.2"`` and the pooled features
        ``"backbone.features.4"``.
    X_train, X_test : array-like or torch Dataset
        Inputs for fitting and scoring the probes.
    y_train, y_test : array-like of shape (n_samples,)
        Clean labels of the downstream task.
    **probe_kwargs : dict
        Passed to :func:`linear_probe` (``C``, ``max_iter``).

    Returns
    -------
    accuracies : dict of str to float
        Held-out accuracy for each layer, in the order given.

    Examples
    --------
    >>> from torchvision.models.feature_extraction import get_graph_node_names
    >>> from skclusterfit import NetClassifier
    >>> from skclusterfit.data import load_digits_images
    >>> from skclusterfit.evaluation import layerwise_probe
    >>> X, y = load_digits_images()
    >>> clf = NetClassifier(max_epochs=2, random_state=0).fit(X[:1000], y[:1000])
    >>> layers = ["backbone.features.0", "backbone.features.2", "backbone.features.4"]
    >>> accuracies = layerwise_probe(clf, layers, X[:1000], y[:1000], X[1000:], y[1000:])
    >>> list(accuracies) == layers, all(0.5 < a <= 1 for a in accuracies.values())
    (True, True)
    """
    network = _network_of(estimator)
    preprocess = _preprocess_of(estimator)
    layers = [layers] if isinstance(layers, str) else list(layers)
    train = layer_features(network, layers, X_train, preprocess=preprocess)
    test = layer_features(network, layers, X_test, preprocess=preprocess)
    return {
        layer: linear_probe(train[layer], y_train, test[layer], y_test, **probe_kwargs)
        for layer in layers
    }


# From benchmarks/noisy_teacher_study.py: the cut that best separated the
# sweep's 25 teachers by the sign of ClusterFit's gain (0.057, rounded), then
# scored without refitting on the final grid's teachers (docs/paper_results.rst,
# "Predicting the gain"). The previous value, 0.1, missed most teachers that a
# default-trained student beats.
MEMORISATION_THRESHOLD = 0.05


def noise_fit(teacher, X, y, X_held_out, y_held_out):
    """How much a classifier memorised its labels: will ClusterFit help it?

    A teacher trained on noisy labels that fits them far better on its
    training images than on images it never saw has memorised the noise, and
    its features carry it; ClusterFit's clusters drop it, so the student
    gains. A teacher that fits both alike learned what the labels share
    (the clean signal, or a clean task) and a student trained on its
    clusters will at best match it. Cheap: two passes of inference, no
    clean labels. Keep 10-20% of the labelled images out of the teacher's
    training to have the held-out set.

    Parameters
    ----------
    teacher : fitted classifier
        Anything with ``predict``, e.g. a fitted
        :class:`~skclusterfit.NetClassifier` or ``FrozenEstimator`` of one.
    X : array-like of shape (n_samples, ...)
        Images the teacher was trained on.
    y : array-like of shape (n_samples,)
        The (possibly noisy) labels it was trained on.
    X_held_out : array-like of shape (n_held_out, ...)
        Images it was not trained on.
    y_held_out : array-like of shape (n_held_out,)
        Their labels, from the same (possibly noisy) source as ``y``.

    Returns
    -------
    result : sklearn.utils.Bunch
        ``train_fit`` and ``held_out_fit`` (accuracy on ``y`` and
        ``y_held_out``), ``memorisation`` (their difference) and
        ``likely_to_help``: ``memorisation > MEMORISATION_THRESHOLD``
        (0.05), the rule validated in ``docs/paper_results.rst``.

    Notes
    -----
    Measured on labels flipped uniformly at random (the paper's noise), the
    rule was right on 40 of 48 and 27 of 36 teachers. On labels flipped to
    the most confusable class (structured noise, as hashtags err) it said
    "likely to help" for all 36 teachers while ClusterFit helped 12: such a
    teacher memorises its flips, but they cost its features
    little. There, compare the student with its teacher on held-out images.

    Examples
    --------
    >>> from skclusterfit import NetClassifier
    >>> from skclusterfit.data import add_label_noise, load_digits_images
    >>> from skclusterfit.evaluation import noise_fit
    >>> X, y = load_digits_images()
    >>> y_noisy = add_label_noise(y, 0.75, random_state=0)
    >>> teacher = NetClassifier(max_epochs=20, augment=None, random_state=0)
    >>> teacher = teacher.fit(X[:600], y_noisy[:600])    # memorises the noise
    >>> result = noise_fit(teacher, X[:600], y_noisy[:600], X[1400:], y_noisy[1400:])
    >>> result.memorisation > 0.5, result.likely_to_help
    (True, True)
    """
    from sklearn.utils import Bunch

    scores = []
    for name, images, labels in (("y", X, y), ("y_held_out", X_held_out, y_held_out)):
        labels = np.asarray(labels)
        predicted = np.asarray(teacher.predict(images))
        if labels.shape != predicted.shape:
            raise ValueError(
                f"{name} has shape {labels.shape} but the teacher predicted "
                f"{predicted.shape} labels for its images."
            )
        scores.append(float(np.mean(predicted == labels)))
    train_fit, held_out_fit = scores
    memorisation = train_fit - held_out_fit
    return Bunch(
        train_fit=train_fit,
        held_out_fit=held_out_fit,
        memorisation=memorisation,
        likely_to_help=bool(memorisation > MEMORISATION_THRESHOLD),
    )


__all__ = ["knn_probe", "layer_features", "layerwise_probe", "linear_probe", "noise_fit"]

"""Judging representations as the paper does: a linear probe on frozen features."""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def linear_probe(
    transformer, X_train, y_train, X_test, y_test, *, C=1.0, max_iter=2000
):
    """Held-out accuracy of a logistic regression on frozen, standardised features.

    Parameters
    ----------
    transformer : fitted transformer or None
        Its ``transform`` gives the features (it is not refitted). None means
        ``X_train`` and ``X_test`` already are features.
    X_train, X_test : array-like
        Inputs (or features) for fitting and scoring the probe.
    y_train, y_test : array-like of shape (n_samples,)
        Clean labels of the downstream task.
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
    >>> round(linear_probe(None, X[:1000], y[:1000], X[1000:], y[1000:]), 2) > 0.85
    True
    """
    if transformer is not None:
        X_train = transformer.transform(X_train)
        X_test = transformer.transform(X_test)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    probe.fit(np.asarray(X_train), y_train)
    return float(probe.score(np.asarray(X_test), y_test))


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


def layer_features(network, layers, X, *, batch_size=256):
    """Global-average-pooled outputs of named layers for every sample of ``X``.

    Parameters
    ----------
    network : nn.Module
        Traced with ``torchvision.models.feature_extraction``.
    layers : list of str
        Node names (see ``get_graph_node_names(network)``) or module names
        (their last node).
    X : array-like or torch Dataset
        Inputs as the network's estimator takes them.
    batch_size : int, default=256
        Samples per forward pass.

    Returns
    -------
    features : dict of str to ndarray of shape (n_samples, n_channels)

    See Also
    --------
    layerwise_probe : a linear probe on each of these layers.

    Examples
    --------
    >>> from skclusterfit import NetClassifier
    >>> from skclusterfit.datasets import load_digits_images
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

    from .data import is_dataset, iter_batches, make_source

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
    extractor = create_feature_extractor(network, return_nodes=list(layers)).eval()
    device = next(network.parameters()).device
    if not is_dataset(X):
        X = np.asarray(X)
    source = make_source(X)
    out = {layer: [] for layer in layers}
    with torch.inference_mode():
        for x, _ in iter_batches(source, batch_size):
            outputs = extractor(x.to(device))
            for layer in layers:
                value = outputs[layer].float()
                # Spatial maps are averaged over space (the paper pools each
                # layer before its linear probe); vectors pass as they are.
                if value.ndim > 2:
                    value = value.mean(dim=tuple(range(2, value.ndim)))
                out[layer].append(value.cpu().numpy())
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
    >>> from skclusterfit.datasets import load_digits_images
    >>> from skclusterfit.evaluation import layerwise_probe
    >>> X, y = load_digits_images()
    >>> clf = NetClassifier(max_epochs=2, random_state=0).fit(X[:1000], y[:1000])
    >>> layers = ["backbone.features.0", "backbone.features.2", "backbone.features.4"]
    >>> accuracies = layerwise_probe(clf, layers, X[:1000], y[:1000], X[1000:], y[1000:])
    >>> list(accuracies) == layers, all(0.5 < a <= 1 for a in accuracies.values())
    (True, True)
    """
    network = _network_of(estimator)
    layers = [layers] if isinstance(layers, str) else list(layers)
    train = layer_features(network, layers, X_train)
    test = layer_features(network, layers, X_test)
    return {
        layer: linear_probe(None, train[layer], y_train, test[layer], y_test, **probe_kwargs)
        for layer in layers
    }

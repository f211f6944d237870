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

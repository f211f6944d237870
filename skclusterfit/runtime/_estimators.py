"""Small facts about scikit-learn estimators, written once: the final step of a
Pipeline, the estimator inside a FrozenEstimator."""

from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline


def final_step(estimator):
    """The last step of a Pipeline (recursively), else ``estimator`` itself.

    ClusterFit sets K on, and reads centres from, the estimator that does the
    clustering, which a Pipeline holds as its final step.
    """
    while isinstance(estimator, Pipeline):
        estimator = estimator.steps[-1][1]
    return estimator


def unfrozen(estimator):
    """The estimator a FrozenEstimator wraps, else ``estimator`` itself."""
    while isinstance(estimator, FrozenEstimator):
        estimator = estimator.estimator
    return estimator

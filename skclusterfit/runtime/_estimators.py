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


class DefaultComponentsMixin:
    """Nested parameters that reach components left at their default.

    A meta-estimator whose component parameter holds a default specification
    (``student=None``, ``clusterer="kmeans"``) has no object for scikit-learn's
    ``set_params`` to descend into, so ``set_params(student__max_epochs=5)``
    (a Pipeline's ``cf__student__max_epochs``, a GridSearchCV grid) would fail.
    Here the specification is first replaced by the concrete component that
    ``fit`` would build from it (``self._default_component(name)``, the one
    rule both use), then the nested parameter is set on that object.

    Subclasses list the parameter names in ``_component_parameters`` and
    implement ``_default_component(name)``, returning a new, unfitted
    estimator.
    """

    _component_parameters = ()

    def set_params(self, **params):
        plain = {k: v for k, v in params.items() if "__" not in k}
        nested = {k: v for k, v in params.items() if "__" in k}
        if plain:
            super().set_params(**plain)
        for name in {key.split("__", 1)[0] for key in nested}:
            if name in self._component_parameters and not hasattr(
                getattr(self, name, None), "set_params"
            ):
                setattr(self, name, self._default_component(name))
        if nested:
            super().set_params(**nested)
        return self

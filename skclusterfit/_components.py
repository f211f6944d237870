"""Estimator plumbing of the meta-estimators: components built at fit time.

A meta-estimator (ClusterFit, Distillation, RotNet, PerLabelKMeans) takes its
parts as parameters. A part given as an estimator object is scikit-learn's
usual case: nested parameters (``student__max_epochs``) go into that object.
A part given as a *specification* (``student=None``, ``clusterer="kmeans"``,
``teacher="resnet50"``: anything without ``get_params``) has no object to
descend into; the estimator builds the part from it at fit time. Here nested
parameters of such a part are kept as *overrides*, applied to the part when
it is built (skorch's ``get_params_for`` pattern), so that:

- a later change of another parameter is seen: ``set_params(student__max_epochs=1)``
  then ``set_params(teacher=...)`` trains a student of the new teacher;
- ``get_params(deep=True)`` lists them, ``clone`` keeps them, and a
  ``GridSearchCV`` over ``student__max_epochs`` works without side effects;
- a typo fails at ``set_params``, checked against the part the specification
  stands for.

Overrides apply while the parameter holds a specification; setting it to an
estimator object drops them (that object carries its own parameters).

The same module holds the one rule for the settings an owner shares with its
parts (:func:`push_settings`).
"""

import inspect

from sklearn.base import clone

from .runtime._estimators import final_step

_MISSING = object()


def is_specification(value):
    """Whether a component parameter holds a specification (built at fit time),
    not an estimator object."""
    return not hasattr(value, "get_params")


class ComponentsMixin:
    """Nested parameters of components left as specifications, kept as overrides.

    Subclasses list their component parameters in ``_component_parameters``
    and implement ``_default_component(name)``: the new, unfitted estimator
    the parameter's current specification stands for (without overrides).
    ``_component(name)`` is what ``fit`` uses: that estimator with the
    overrides applied, or a clone of the estimator object given.
    """

    _component_parameters = ()

    def _default_component(self, name):
        raise NotImplementedError(f"{type(self).__name__} builds no component {name!r}.")

    def _overrides(self, name):
        return dict(self.__dict__.get("_component_overrides", {}).get(name, {}))

    def _component(self, name):
        """The unfitted component ``name``: built from its specification, with
        the overrides, or a clone of the estimator given."""
        value = getattr(self, name)
        if not is_specification(value):
            return clone(value)
        component = self._default_component(name)
        overrides = self._overrides(name)
        return component.set_params(**overrides) if overrides else component

    def get_params(self, deep=True):
        params = super().get_params(deep=deep)
        if deep:
            for name, overrides in self.__dict__.get("_component_overrides", {}).items():
                params.update({f"{name}__{key}": value for key, value in overrides.items()})
        return params

    def set_params(self, **params):
        for_specifications = {}
        rest = {}
        for key, value in params.items():
            name, delim, sub_key = key.partition("__")
            current = params.get(name, getattr(self, name, None))
            if delim and name in self._component_parameters and is_specification(current):
                for_specifications.setdefault(name, {})[sub_key] = value
            else:
                rest[key] = value
        if rest:
            super().set_params(**rest)
        overrides = self.__dict__.setdefault("_component_overrides", {})
        for name in self._component_parameters:
            if name in rest and not is_specification(rest[name]):
                overrides.pop(name, None)  # the object given carries its own
        for name, sub_params in for_specifications.items():
            merged = {**overrides.get(name, {}), **sub_params}
            # Checked now against what the specification stands for: a
            # misspelt name fails here rather than after hours of fit.
            self._default_component(name).set_params(**merged)
            overrides[name] = merged
        if not overrides:
            del self.__dict__["_component_overrides"]
        return self

    def __sklearn_clone__(self):
        new = super().__sklearn_clone__()
        overrides = self.__dict__.get("_component_overrides")
        if overrides:
            new._component_overrides = {
                name: {key: clone(value, safe=False) for key, value in values.items()}
                for name, values in overrides.items()
            }
        return new


def push_settings(component, **settings):
    """Share the owner's settings with a component: the one rule.

    Each setting (``verbose``, ``distributed``, ``device``, ``random_state``)
    whose value is not None is set on the component (the final step of a
    Pipeline) where it has that parameter and left it at its default: a
    value the user gave the component is never overwritten.

    Returns
    -------
    component : the component, changed in place
    """
    updates = settings_to_push(component, **settings)
    if updates:
        final_step(component).set_params(**updates)
    return component


def settings_to_push(component, **settings):
    """The settings :func:`push_settings` would set on ``component``: ``{name: value}``."""
    target = final_step(component)
    params = target.get_params(deep=False)
    defaults = _init_defaults(type(target))
    return {
        name: value
        for name, value in settings.items()
        if value is not None
        and name in params
        and _is_default(params[name], defaults.get(name, _MISSING))
    }


def _init_defaults(cls):
    signature = inspect.signature(cls.__init__)
    return {
        name: parameter.default
        for name, parameter in signature.parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def _is_default(value, default):
    if value is default:
        return True
    if default is _MISSING or type(value) is not type(default):
        return False
    try:
        return bool(value == default)
    except (TypeError, ValueError):
        return False

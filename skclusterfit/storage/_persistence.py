"""Save and load fitted estimators without pickle.

``save(estimator, path)`` writes one `safetensors <https://huggingface.co/docs/safetensors>`_
file: every array and network weight is a tensor, and a small JSON document
in the file's header holds the class names, parameters and the other fitted
attributes. ``load(path)`` parses that JSON and those tensors and nothing
else: it never unpickles, so a file cannot run code when loaded, and it reads
tensors onto the CPU, so a model saved on a GPU machine loads on one without.

What can be stored: numbers, strings, lists, tuples and dicts of them, numpy
arrays and torch tensors, devices, RandomState instances, joblib.Memory
locations, and estimators of skclusterfit and scikit-learn (recursively, with
their fitted state). An object reached twice (a ClusterFit's ``teacher`` and
``teacher_``) is stored once and comes back as one object.

Fitted networks follow a protocol that any estimator can implement (the
package's own do; nothing here knows their classes): the estimator declares
which fitted attributes are networks, with what it needs to rebuild them, and
rebuilds the architecture on load; the weights come from the file::

    def _saved_networks(self):
        # {attribute name: JSON-able build information} of the fitted networks
        ...

    def _rebuild_network(self, name, info):
        # an nn.Module with the architecture of attribute `name`; called once
        # the parameters and the other fitted attributes are restored, and
        # the weights are loaded into it afterwards
        ...

A fitted ``nn.Module`` attribute that is not declared cannot be saved (the
error says so). Derived attributes that should not be stored are best
written as properties.

Code is not stored. A parameter holding an ``nn.Module`` or another callable
(a custom network, an augmentation function) is recorded by its class name
and weights, and must be given back when loading, by parameter path or class
name: ``load(path, custom_objects={"MyNet": MyNet()})``; its weights are then
loaded from the file into a copy of the object given. Estimator classes
outside skclusterfit and scikit-learn are given back the same way (the class
itself), and only then instantiated. The JSON can be read without loading:
``read_metadata(path)``.
"""

import copy
import importlib
import json
import os

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from ..runtime._atomic import atomic_write
from ..runtime._moved import current_module

FORMAT = "skclusterfit-model"
FORMAT_VERSION = 1
_METADATA_KEY = "skclusterfit"
# Only classes from these packages are ever instantiated on load: a file
# cannot name os.system or any other callable.
_ALLOWED_PACKAGES = ("skclusterfit", "sklearn")


class PersistenceMixin:
    """Adds :meth:`save`, the pickle-free counterpart of :func:`skclusterfit.load`."""

    def save(self, path):
        """Save the estimator (parameters, fitted state, weights) to ``path``.

        One safetensors file with a JSON header; read it back with
        :func:`skclusterfit.load`, which never unpickles.

        Parameters
        ----------
        path : str or path
            File to write (replaced atomically if it exists).

        Returns
        -------
        path : str or path
            The ``path`` given.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> import skclusterfit
        >>> from skclusterfit.cluster import KMeans
        >>> X = np.array([[1, 0], [1.1, 0], [0, 1], [0, 1.1]])
        >>> km = KMeans(n_clusters=2, random_state=0).fit(X)
        >>> path = os.path.join(tempfile.mkdtemp(), "kmeans.skcf")
        >>> loaded = skclusterfit.load(km.save(path))
        >>> bool((loaded.predict(X) == km.predict(X)).all())
        True
        """
        save(self, path)
        return path


def save(estimator, path):
    """Save a (fitted or unfitted) estimator to ``path`` without pickle.

    Parameters
    ----------
    estimator : estimator
        A skclusterfit or scikit-learn estimator.
    path : str or path
        File to write; replaced atomically.

    Returns
    -------
    None

    Raises
    ------
    TypeError
        If a value cannot be stored (the message names it).

    Notes
    -----
    Under torchrun, an estimator fitted across processes (its ``distributed``
    parameter is not False) is the same on every process, and only process 0
    writes the file: every process may call ``save``. Call
    ``torch.distributed.barrier()`` before another process reads it.

    See Also
    --------
    load : read the file back.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from skclusterfit import load, save
    >>> from skclusterfit.cluster import KMeans
    >>> X = np.array([[1, 0], [1.1, 0], [0, 1], [0, 1.1]])
    >>> km = KMeans(n_clusters=2, random_state=0).fit(X)
    >>> path = os.path.join(tempfile.mkdtemp(), "kmeans.skcf")
    >>> save(km, path)
    >>> load(path).cluster_centers_.shape
    (2, 2)
    """
    if not _writes_here(estimator):
        return
    encoder = _Encoder()
    document = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "estimator": encoder.encode(estimator, ""),
    }
    from safetensors.torch import save as to_bytes

    payload = to_bytes(encoder.tensors, metadata={_METADATA_KEY: json.dumps(document)})
    atomic_write(path, lambda file: file.write(payload))


def _writes_here(estimator):
    """False on processes other than 0 of a distributed fit (process 0 writes)."""
    params = estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
    if params.get("distributed", False) is False:
        return True
    from ..runtime._distributed import is_initialized  # torch.distributed state, no estimator

    if not is_initialized():
        return True
    import torch.distributed as dist

    return dist.get_rank() == 0


def read_metadata(path):
    """The JSON document of a saved estimator (no tensors are read).

    Parameters
    ----------
    path : str or path
        A file written by :func:`save`.

    Returns
    -------
    metadata : dict
        The parsed JSON header: format, version, and the estimator's class,
        parameters and fitted attributes (tensors appear by name only).

    Raises
    ------
    ValueError
        If ``path`` is not a file written by :func:`save`.

    Examples
    --------
    >>> import os, tempfile
    >>> from skclusterfit import save
    >>> from skclusterfit.cluster import KMeans
    >>> from skclusterfit.storage import read_metadata
    >>> path = os.path.join(tempfile.mkdtemp(), "kmeans.skcf")
    >>> save(KMeans(n_clusters=3), path)
    >>> isinstance(read_metadata(path), dict)
    True
    """
    from safetensors import safe_open

    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"path={path!r} is a directory; pass the model file itself (the file "
            "written by save(), e.g. os.path.join(directory, 'model.skcf'))."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path={path!r} does not exist.")
    try:
        with safe_open(path, framework="pt", device="cpu") as file:
            metadata = file.metadata() or {}
    except Exception as exc:
        raise ValueError(
            f"path={path!r} is not a skclusterfit model file (a safetensors file "
            f"written by save()): {exc}. load() never unpickles; a pickle or "
            "torch.save file is refused."
        ) from exc
    try:
        document = json.loads(metadata[_METADATA_KEY])
    except (KeyError, ValueError) as exc:
        raise ValueError(
            f"path={path!r} is a safetensors file but holds no skclusterfit model."
        ) from exc
    if document.get("format") != FORMAT or document.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"path={path!r} has format {document.get('format')!r} version "
            f"{document.get('version')!r}; this skclusterfit reads {FORMAT!r} "
            f"version {FORMAT_VERSION}."
        )
    return document


def load(path, *, custom_objects=None, device=None):
    """Load an estimator written by ``save``; never unpickles, always onto the CPU.

    Parameters
    ----------
    path : str or path
        A file written by :func:`save` or an estimator's ``save`` method.
    custom_objects : dict, default=None
        Objects that cannot be stored as data (``nn.Module`` and other
        callables given as parameters), keyed by parameter path (as in the
        error message, e.g. ``"teacher"`` or ``"student.model"``) or by class
        name. A module's weights are loaded from the file into a copy. An
        estimator class of your own (e.g. a clusterer) is given the same way,
        ``{"MyClusterer": MyClusterer}``; only classes of skclusterfit and
        scikit-learn are found without it.
    device : str or None, default=None
        If given, replaces the ``device`` parameter of the estimator and of
        every estimator inside it: ``device="cpu"`` runs a model saved with
        ``device="cuda"`` on a machine without a GPU.

    Returns
    -------
    estimator : estimator
        Equal in parameters and fitted state to the one saved; networks on
        the CPU (``device`` parameters are kept; "auto" picks a GPU if any).

    Raises
    ------
    ValueError
        If ``path`` is not a skclusterfit model file (a pickle is refused
        without being read as one), names a class outside skclusterfit and
        scikit-learn, or needs custom objects that were not given.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn.datasets import load_digits
    >>> import skclusterfit
    >>> X = load_digits().data.astype("float32")
    >>> extractor = skclusterfit.FeatureExtractor("mlp", random_state=0).fit(X)
    >>> path = os.path.join(tempfile.mkdtemp(), "extractor.skcf")
    >>> loaded = skclusterfit.load(extractor.save(path))
    >>> bool((loaded.transform(X[:5]) == extractor.transform(X[:5])).all())
    True
    """
    from safetensors.torch import load_file

    document = read_metadata(path)
    tensors = load_file(os.fspath(path), device="cpu")
    decoder = _Decoder(tensors, custom_objects or {}, device)
    decoder.check_custom_objects(document["estimator"], "")
    return decoder.decode(document["estimator"], "")


def _class_path(cls):
    return f"{cls.__module__}:{cls.__qualname__}"


def _join(path, name):
    return f"{path}.{name}" if path else name


class _Encoder:
    """Turns an estimator into JSON plus a flat dict of tensors."""

    def __init__(self):
        self.tensors = {}
        self.seen = {}  # id(object) -> first path, for objects stored by reference
        self.modules = []  # (module, path) of the nn.Modules stored so far

    def add_tensor(self, path, tensor):
        key = f"{len(self.tensors)}:{path}"
        # safetensors refuses views sharing storage; a contiguous CPU copy is safe.
        self.tensors[key] = tensor.detach().to("cpu").contiguous().clone()
        return key

    def encode(self, value, path):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (np.bool_, np.integer, np.floating)):
            return value.item()
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if isinstance(value, list):
            return [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise TypeError(f"cannot save {path}: a dict with non-string keys.")
            return {"__dict__": {k: self.encode(v, _join(path, k)) for k, v in value.items()}}
        if isinstance(value, np.ndarray):
            return self.encode_array(value, path)
        if isinstance(value, torch.Tensor):
            return {"__tensor__": self.add_tensor(path, value)}
        if isinstance(value, torch.device):
            return {"__device__": str(value)}
        if isinstance(value, np.dtype) or (
            isinstance(value, type) and issubclass(value, np.generic)
        ):
            return {"__dtype__": np.dtype(value).name}
        if isinstance(value, np.random.RandomState):
            _, keys, pos, has_gauss, cached = value.get_state()
            return {
                "__random_state__": [
                    self.add_tensor(path, torch.from_numpy(keys.astype(np.int64))),
                    int(pos),
                    int(has_gauss),
                    float(cached),
                ]
            }
        if type(value).__name__ == "Memory" and hasattr(value, "location"):
            return {"__memory__": value.location}
        if id(value) in self.seen:
            return {"__ref__": self.seen[id(value)]}
        if isinstance(value, BaseEstimator):
            self.seen[id(value)] = path
            return self.encode_estimator(value, path)
        if isinstance(value, nn.Module):
            # clone() deep-copies a module parameter: store the copy as a reference
            # so that load() asks for each user module once.
            for seen, seen_path in self.modules:
                if _same_module(seen, value):
                    return {"__ref__": seen_path}
            self.modules.append((value, path))
        if isinstance(value, nn.Module) or callable(value):
            self.seen[id(value)] = path
            stored = {"class": _class_path(type(value)), "path": path}
            if isinstance(value, nn.Module):
                stored["state"] = self.encode_state_dict(value, path)
            elif hasattr(value, "__qualname__"):
                stored["class"] = f"{value.__module__}:{value.__qualname__}"
            return {"__object__": stored}
        raise TypeError(
            f"cannot save {path or 'the estimator'}={value!r}: a "
            f"{type(value).__name__} is neither data nor an estimator."
        )

    def encode_array(self, value, path):
        if value.dtype.kind in "biuf":
            tensor = torch.from_numpy(np.ascontiguousarray(value))
            return {"__array__": self.add_tensor(path, tensor)}
        if value.dtype.kind in "US" or (
            value.dtype == object and all(isinstance(v, str) for v in value.ravel())
        ):
            return {"__str_array__": value.tolist(), "dtype": value.dtype.str}
        raise TypeError(
            f"cannot save {path}: an array of dtype {value.dtype} holds objects."
        )

    def encode_state_dict(self, module, path):
        return {
            name: self.add_tensor(_join(path, name), tensor)
            for name, tensor in module.state_dict().items()
        }

    def encode_estimator(self, estimator, path):
        params = estimator.get_params(deep=False)
        encoded = {
            "class": _class_path(type(estimator)),
            "params": {k: self.encode(v, _join(path, k)) for k, v in params.items()},
            "state": {},
            "networks": {},
        }
        networks = saved_networks(estimator)
        for name, value in vars(estimator).items():
            if name in params:
                continue
            attribute_path = _join(path, name)
            if name in networks:
                encoded["networks"][name] = {
                    "state": self.encode_state_dict(value, attribute_path),
                    "info": networks[name],
                }
            elif isinstance(value, nn.Module):
                raise TypeError(
                    f"cannot save {attribute_path}: a fitted {type(value).__name__} "
                    f"that {type(estimator).__name__} does not declare in "
                    "_saved_networks(), so it could not be rebuilt on load."
                )
            else:
                encoded["state"][name] = self.encode(value, attribute_path)
        return {"__estimator__": encoded}


def saved_networks(estimator):
    """The estimator's declared fitted networks: ``{name: JSON-able build info}``."""
    declare = getattr(estimator, "_saved_networks", None)
    if declare is None:
        return {}
    networks = declare()
    for name in networks:
        if not isinstance(getattr(estimator, name, None), nn.Module):
            raise TypeError(
                f"{type(estimator).__name__}._saved_networks() declares {name!r}, "
                "which is not a fitted nn.Module attribute."
            )
    return networks


def _same_module(a, b):
    if type(a) is not type(b):
        return False
    state_a, state_b = a.state_dict(), b.state_dict()
    return state_a.keys() == state_b.keys() and all(
        state_a[k].shape == state_b[k].shape and _equal_anywhere(state_a[k], state_b[k])
        for k in state_a
    )


def _equal_anywhere(a, b):
    # torch.equal refuses tensors on two devices (a GPU module and its CPU copy).
    if a.device != b.device:
        a, b = a.cpu(), b.cpu()
    return torch.equal(a, b)


def _resolve_class(class_path):
    module_name, _, qualname = class_path.partition(":")
    if module_name.split(".")[0] not in _ALLOWED_PACKAGES:
        raise ValueError(
            f"the file names class {class_path!r}; load() only builds estimators "
            f"from {', '.join(_ALLOWED_PACKAGES)} unless the class itself is given: "
            f"load(path, custom_objects={{{qualname.rpartition('.')[2]!r}: <the class>}})."
        )
    try:
        # Files of 0.1 name the module a class lived in then.
        target = importlib.import_module(current_module(module_name))
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"the file names class {class_path!r}, which does not exist.") from exc
    if not (isinstance(target, type) and issubclass(target, BaseEstimator)):
        raise ValueError(
            f"the file names {class_path!r}, which is not a scikit-learn estimator class."
        )
    return target


class _Decoder:
    def __init__(self, tensors, custom_objects, device=None):
        self.tensors = tensors
        self.custom_objects = custom_objects
        self.device = device
        self.objects = {}  # path -> object built, for references

    def tensor(self, key):
        try:
            return self.tensors[key]
        except KeyError:
            raise ValueError(f"the file lacks the tensor {key!r}; it is damaged.") from None

    def custom_object(self, stored):
        """The user's object for a stored module or callable, or None."""
        path, class_path = stored["path"], stored["class"]
        class_name = class_path.rpartition(":")[2]
        for key in (path, class_path, class_name, class_name.rpartition(".")[2]):
            if key in self.custom_objects:
                return self.custom_objects[key]
        return None

    def check_custom_objects(self, value, path):
        """Raise one error naming every code object the file needs and was not given."""
        missing = []

        def walk(node):
            if isinstance(node, dict):
                stored = node.get("__object__")
                if isinstance(stored, dict) and self.custom_object(stored) is None:
                    missing.append(stored)
                for child in node.values():
                    walk(child)
            elif isinstance(node, list):
                for child in node:
                    walk(child)

        walk(value)
        if missing:
            listing = ", ".join(
                f"{m['path']!r} (a {m['class'].rpartition(':')[2]})" for m in missing
            )
            example = ", ".join(
                f"{m['path']!r}: <{m['class'].rpartition(':')[2]} object>" for m in missing
            )
            raise ValueError(
                f"the saved estimator holds code that a file cannot store: {listing}. "
                f"Pass it when loading: load(path, custom_objects={{{example}}}); "
                "keys may also be class names."
            )

    def decode(self, value, path):
        if not isinstance(value, (dict, list)):
            return value
        if isinstance(value, list):
            return [self.decode(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if "__tuple__" in value:
            return tuple(self.decode(v, f"{path}[{i}]") for i, v in enumerate(value["__tuple__"]))
        if "__dict__" in value:
            return {k: self.decode(v, _join(path, k)) for k, v in value["__dict__"].items()}
        if "__array__" in value:
            return self.tensor(value["__array__"]).numpy()
        if "__str_array__" in value:
            return np.array(value["__str_array__"], dtype=np.dtype(value["dtype"]))
        if "__tensor__" in value:
            return self.tensor(value["__tensor__"])
        if "__device__" in value:
            return torch.device(value["__device__"])
        if "__dtype__" in value:
            return np.dtype(value["__dtype__"]).type
        if "__random_state__" in value:
            key, pos, has_gauss, cached = value["__random_state__"]
            keys = self.tensor(key).numpy().astype(np.uint32)
            rng = np.random.RandomState()
            rng.set_state(("MT19937", keys, pos, has_gauss, cached))
            return rng
        if "__memory__" in value:
            from joblib import Memory

            return Memory(value["__memory__"], verbose=0)
        if "__ref__" in value:
            return self.objects[value["__ref__"]]
        if "__object__" in value:
            return self.decode_object(value["__object__"])
        if "__estimator__" in value:
            return self.decode_estimator(value["__estimator__"], path)
        raise ValueError(f"the file holds an unknown value at {path!r}; it is damaged.")

    def state_dict(self, keys):
        return {name: self.tensor(key) for name, key in keys.items()}

    def decode_object(self, stored):
        obj = self.custom_object(stored)
        if "state" in stored:
            if not isinstance(obj, nn.Module):
                raise ValueError(
                    f"custom_objects gives {type(obj).__name__} for {stored['path']!r}, "
                    f"which was a {stored['class'].rpartition(':')[2]} nn.Module."
                )
            obj = copy.deepcopy(obj)
            try:
                obj.load_state_dict(self.state_dict(stored["state"]))
            except RuntimeError as exc:
                raise ValueError(
                    f"custom_objects[{stored['path']!r}] does not match the saved "
                    f"weights: {exc}"
                ) from exc
        self.objects[stored["path"]] = obj
        return obj

    def resolve_class(self, class_path):
        """An estimator class the user passed in custom_objects, else an allowed one."""
        name = class_path.rpartition(":")[2]
        for key in (class_path, name, name.rpartition(".")[2]):
            given = self.custom_objects.get(key)
            if isinstance(given, type) and issubclass(given, BaseEstimator):
                return given
        return _resolve_class(class_path)

    def decode_estimator(self, stored, path):
        cls = self.resolve_class(stored["class"])
        params = {k: self.decode(v, _join(path, k)) for k, v in stored["params"].items()}
        if self.device is not None and "device" in params:
            params["device"] = self.device
        estimator = cls(**params)
        self.objects[path] = estimator
        for name, value in stored["state"].items():
            setattr(estimator, name, self.decode(value, _join(path, name)))
        for name, network in stored["networks"].items():
            setattr(estimator, name, self.rebuild_network(estimator, name, network))
        return estimator

    def rebuild_network(self, estimator, name, stored):
        """The estimator rebuilds the architecture; the weights come from the file."""
        rebuild = getattr(estimator, "_rebuild_network", None)
        if rebuild is None:
            raise ValueError(
                f"the file holds the fitted network {name!r} of "
                f"{type(estimator).__name__}, which has no _rebuild_network() to "
                "rebuild it."
            )
        network = rebuild(name, stored["info"])
        try:
            network.load_state_dict(self.state_dict(stored["state"]))
        except RuntimeError as exc:
            raise ValueError(
                f"the saved {type(estimator).__name__}.{name} does not fit the network "
                f"that {type(estimator).__name__} rebuilt from its parameters: {exc}"
            ) from exc
        return network.eval()


__all__ = ["PersistenceMixin", "load", "read_metadata", "save"]

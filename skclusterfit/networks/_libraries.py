"""Networks from today's model libraries: timm, Hugging Face transformers, open_clip, torch.hub.

A model is named ``"timm:NAME"``, ``"hf:NAME_OR_DIR"``, ``"open_clip:NAME"``
or ``"hub:DIR:ENTRY"`` (or given as a module of one of these libraries). Each
library's own code builds it and loads its weights; each library's own way
of taking features from it is kept (:class:`LibraryFeatures`), and so is its
evaluation preprocessing (:func:`library_preprocessing`). One adapter class
per library says how; nothing else in the package knows the libraries.

The libraries are optional: a missing one is reported with the extra that
installs it (``pip install 'skclusterfit[timm]'``).
"""

import difflib
import importlib
import os
import sys

import torch
from torch import nn

from ._heads import read_state_dict, split_head
from ._preprocessing import make_settings, settings_from_transforms

# prefix -> (importable module, extra of setup.cfg, what to pip install)
LIBRARIES = {
    "timm": ("timm", "timm", "timm"),
    "hf": ("transformers", "hf", "transformers"),
    "open_clip": ("open_clip", "clip", "open_clip_torch"),
    "hub": (None, None, None),
}
POOLINGS = ("auto", "cls", "mean", "cls+mean")
SPEC_HELP = (
    "'timm:NAME' (e.g. timm:vit_small_patch14_dinov2), 'hf:NAME_OR_DIR' (a "
    "Hugging Face model id or a save_pretrained directory), 'open_clip:NAME' "
    "(e.g. open_clip:ViT-B-32) or 'hub:DIR:ENTRY' (a torch.hub repository "
    "directory with a hubconf.py)"
)


def parse_spec(model):
    """``(library, name)`` of a library specification string, else None."""
    if not isinstance(model, str):
        return None
    prefix, sep, name = model.partition(":")
    if not sep or prefix not in LIBRARIES:
        return None
    if not name:
        raise ValueError(f"model={model!r} names no model after {prefix + ':'!r}.")
    return prefix, name


def require(library, what):
    """Import the library's module, or raise an ImportError naming the extra to install."""
    module_name, extra, package = LIBRARIES[library]
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"{what} needs {package}, which is not installed: pip install "
            f"'skclusterfit[{extra}]' (or pip install {package})."
        ) from exc


def library_of(model):
    """The library of a specification string or of a module built by one, else None."""
    spec = parse_spec(model)
    if spec is not None:
        return spec[0]
    if not isinstance(model, nn.Module):
        return None
    module = type(model).__module__
    if module.startswith("timm.") and all(
        hasattr(model, a) for a in ("forward_features", "forward_head", "reset_classifier")
    ):
        return "timm"
    if module.startswith("transformers.") and hasattr(model, "config"):
        return "hf"
    if module.startswith("open_clip."):
        return "open_clip"
    return None


def is_local(weights):
    return isinstance(weights, (str, os.PathLike)) and os.path.exists(weights)


def _close(name, candidates, n=5):
    matches = difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.6)
    if not matches:  # difflib misses a long common prefix with a different tail
        lowered = name.lower()
        matches = [c for c in candidates if lowered[:6] and c.lower().startswith(lowered[:6])][:n]
    return matches


def _unknown(what, name, candidates, listing):
    matches = _close(name, candidates)
    hint = f" Close matches: {matches}." if matches else ""
    return ValueError(f"{what}: {name!r} is not a known model.{hint} See {listing}.")


def _offline_error(what, weights, exc, alternative):
    return RuntimeError(
        f"could not fetch the pretrained weights of {what} (weights={weights!r}): "
        f"{type(exc).__name__}: {exc}. Downloads are the library's job and need "
        f"network access or its cache. Offline: {alternative}"
    )


# -- token pooling, shared by every library ----------------------------------------
def pool_tokens(blocks, pooling):
    """Features from the tokens of the last blocks, as DINO's linear evaluation takes them.

    ``blocks``: one ``(prefix, patches)`` pair per block, oldest first, each
    ``(n, P, d)`` and ``(n, L, d)``. ``"cls"``: the class tokens of the
    blocks, concatenated; ``"mean"``: the means of their patch tokens;
    ``"cls+mean"``: the class tokens of the blocks and the mean of the last
    block's patch tokens (DINO's ``avgpool_patchtokens``).
    """
    parts = []
    if pooling in ("cls", "cls+mean"):
        for prefix, _ in blocks:
            if prefix is None or prefix.shape[1] == 0:
                raise ValueError(
                    f"pooling={pooling!r} takes the class token, but this network's "
                    "tokens have none; use pooling='mean'."
                )
            parts.append(prefix[:, 0])
    if pooling == "mean":
        parts.extend(patches.mean(dim=1) for _, patches in blocks)
    if pooling == "cls+mean":
        parts.append(blocks[-1][1].mean(dim=1))
    return torch.cat(parts, dim=1)


def pool_output(out, pooling, n_prefix):
    """One layer's output as ``(n, d)`` features: tokens pooled, maps averaged over space."""
    out = first_tensor(out)
    if out.ndim == 3:
        if pooling == "auto":
            pooling = "cls" if n_prefix > 0 else "mean"
        return pool_tokens([(out[:, :n_prefix], out[:, n_prefix:])], pooling)
    if pooling not in ("auto", "mean"):
        raise ValueError(
            f"pooling={pooling!r} applies to token outputs (n, tokens, d); this "
            f"layer's output has shape {tuple(out.shape)}."
        )
    if out.ndim > 2:
        out = out.mean(dim=tuple(range(2, out.ndim)))
    return out


def first_tensor(out):
    """The tensor of a layer's output: itself, or the first of a tuple or ModelOutput."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"the layer's output is a {type(out).__name__}, not a tensor.")


# -- one adapter per library ------------------------------------------------------------
class _Adapter:
    """How one library builds a network, loads weights and means its features."""

    library = None
    listing = ""

    def check_name(self, name):
        """Raise a ValueError with the library's close matches when ``name`` is unknown."""

    def build(self, name, weights, num_classes=None, kwargs=None):
        """The library's module; ``kwargs``: the user's keyword arguments of the
        library's own building call (``timm.create_model``, ``from_pretrained``...)."""
        raise NotImplementedError

    def build_info(self, module):
        """JSON-able information from which :meth:`rebuild` makes the architecture again."""
        return {}

    def rebuild(self, name, info, num_classes=None, kwargs=None):
        return self.build(name, None, num_classes, kwargs)

    def prepare(self, module):
        """The module as its features are taken (the head kept or dropped)."""
        return module

    def strip_head(self, module):
        """The module without its classification head (a student's new head replaces it)."""
        return self.prepare(module)

    def features(self, module, x, pooling, n_last_blocks):
        if pooling == "auto" and n_last_blocks == 1:
            return self.default_features(module, x)
        return pool_tokens(self.tokens(module, x, n_last_blocks), "cls" if pooling == "auto"
                           else pooling)

    def default_features(self, module, x):
        raise NotImplementedError

    def tokens(self, module, x, n):
        raise ValueError(
            f"this {self.library} network gives no tokens; pooling='auto' and "
            "n_last_blocks=1 are its only features (or choose a layer=)."
        )

    def n_prefix_tokens(self, module, x):
        return 0

    def input_size(self, module):
        """(C, H, W) the network takes by its configuration, or None."""
        return None

    def preprocessing(self, module, name, weights):
        """The settings of the evaluation preprocessing (see ``_preprocessing``), or None."""
        return None


class _Timm(_Adapter):
    library = "timm"
    listing = "timm.list_models()"

    def check_name(self, name):
        timm = require("timm", f"model='timm:{name}'")
        if name.startswith(("local-dir:", "hf-hub:")):
            return
        architecture = name.partition(".")[0]
        if not timm.is_model(architecture):
            raise _unknown("timm", architecture, timm.list_models(), self.listing)

    def build(self, name, weights, num_classes=None, kwargs=None):
        import timm

        self.check_name(name)
        kwargs = _with_classes(kwargs, num_classes)
        what = f"'timm:{name}'"
        if name.startswith(("local-dir:", "hf-hub:")):
            # timm reads the architecture, its arguments and the weights from there.
            return self._create(timm, name, what, weights, pretrained=weights is not None,
                                **kwargs)
        if weights is None:
            return timm.create_model(name, pretrained=False, **kwargs)
        if is_local(weights):
            weights = os.fspath(weights)
            if os.path.isdir(weights):
                return timm.create_model(f"local-dir:{weights}", pretrained=True, **kwargs)
            return timm.create_model(name, pretrained=True,
                                     pretrained_cfg_overlay={"file": weights}, **kwargs)
        full = name if weights == "auto" else f"{name.partition('.')[0]}.{weights}"
        return self._create(timm, full, what, weights, pretrained=True, **kwargs)

    @staticmethod
    def _create(timm, name, what, weights, **kwargs):
        try:
            return timm.create_model(name, **kwargs)
        except (RuntimeError, ValueError) as exc:
            if "Unknown model" in str(exc) or "Invalid pretrained tag" in str(exc):
                raise ValueError(f"{what}: {exc}") from exc
            raise _offline_error(what, weights, exc, _TIMM_OFFLINE) from exc
        except Exception as exc:  # network, proxy, missing cache entry
            raise _offline_error(what, weights, exc, _TIMM_OFFLINE) from exc

    def build_info(self, module):
        # Creation arguments timm does not keep: the head's size, and the
        # directory whose config.json holds the architecture's arguments.
        config = getattr(module, "pretrained_cfg", None) or {}
        local = config.get("file") if config.get("source") == "local-dir" else None
        return {"num_classes": int(getattr(module, "num_classes", 0)), "local_dir": local}

    def rebuild(self, name, info, num_classes=None, kwargs=None):
        import timm

        if info.get("local_dir"):
            name = f"local-dir:{info['local_dir']}"
        n = info.get("num_classes") if num_classes is None else num_classes
        return timm.create_model(name, pretrained=False, **_with_classes(kwargs, n))

    def strip_head(self, module):
        module.reset_classifier(0)
        return module

    def default_features(self, module, x):
        return module.forward_head(module.forward_features(x), pre_logits=True)

    def tokens(self, module, x, n):
        if not hasattr(module, "forward_intermediates") or not hasattr(module, "num_prefix_tokens"):
            super().tokens(module, x, n)
        blocks = module.forward_intermediates(
            x, indices=n, norm=True, return_prefix_tokens=True, output_fmt="NLC",
            intermediates_only=True,
        )
        return [(prefix, patches) for patches, prefix in blocks]

    def n_prefix_tokens(self, module, x):
        return int(getattr(module, "num_prefix_tokens", 0))

    def input_size(self, module):
        import timm.data

        size = tuple(timm.data.resolve_model_data_config(module)["input_size"])
        # A ViT built with img_size=/in_chans= keeps its pretrained config's size.
        patch_embed = getattr(module, "patch_embed", None)
        img_size = getattr(patch_embed, "img_size", None)
        proj = getattr(patch_embed, "proj", None)
        if img_size is not None and isinstance(proj, nn.Conv2d):
            size = (proj.in_channels, *tuple(img_size))
        return size

    def preprocessing(self, module, name, weights):
        import timm.data

        config = timm.data.resolve_model_data_config(module)
        # A ViT built at another img_size (model_kwargs) takes that size; timm's
        # config still gives its pretrained one. The crop fraction stays.
        config["input_size"] = self.input_size(module)
        settings = settings_from_transforms(
            timm.data.create_transform(**config, is_training=False), f"'timm:{name}'"
        )
        settings["mode"] = "L" if config["input_size"][0] == 1 else "RGB"
        return settings


def _with_classes(kwargs, num_classes):
    """The user's creation keywords with the head's size, when one is asked for."""
    return {**(kwargs or {}), **({} if num_classes is None else {"num_classes": num_classes})}


_TIMM_OFFLINE = (
    "download the weights file elsewhere (e.g. model.safetensors of the Hugging "
    "Face repository timm/NAME.TAG) and pass weights='/path/to/model.safetensors', "
    "or a directory written by timm.models.save_for_hf (weights='/path/to/dir')."
)
_HF_OFFLINE = (
    "save the model elsewhere with model.save_pretrained(dir) and "
    "image_processor.save_pretrained(dir), copy the directory here and pass "
    "model='hf:/path/to/dir' (or weights='/path/to/dir')."
)
_CLIP_OFFLINE = (
    "download the checkpoint file elsewhere and pass weights='/path/to/"
    "open_clip_model.safetensors', or model='open_clip:local-dir:/path/to/dir' "
    "for a directory with open_clip_config.json and the weights."
)


class _HuggingFace(_Adapter):
    library = "hf"
    listing = "the Hugging Face Hub (offline: a local save_pretrained directory)"

    def check_name(self, name):
        require("hf", f"model='hf:{name}'")
        if os.path.isdir(name):
            if not os.path.isfile(os.path.join(name, "config.json")):
                raise ValueError(
                    f"model='hf:{name}': the directory has no config.json; pass a "
                    "directory written by save_pretrained."
                )
            return
        if os.sep in name.strip("/") and name.count("/") > 1 or name.startswith((".", "/")):
            raise ValueError(f"model='hf:{name}': no such directory.")

    def build(self, name, weights, num_classes=None, kwargs=None):
        from transformers import AutoConfig, AutoModel

        self.check_name(name)
        what = f"'hf:{name}'"
        kwargs = dict(kwargs or {})
        try:
            if weights == "auto" or (is_local(weights) and os.path.isdir(weights)):
                source = name if weights == "auto" else os.fspath(weights)
                return AutoModel.from_pretrained(source, **kwargs)
            if weights is None or is_local(weights):
                # from_pretrained's rule: keywords that name configuration
                # attributes override them, the others go to the model.
                config, kwargs = AutoConfig.from_pretrained(name, return_unused_kwargs=True,
                                                            **kwargs)
                model = AutoModel.from_config(config, **kwargs)
                if weights is not None:
                    _load_state(model, os.fspath(weights), what)
                return model
            return AutoModel.from_pretrained(name, revision=weights, **kwargs)
        except (OSError, EnvironmentError) as exc:
            if os.path.isdir(name):
                raise
            raise _offline_error(what, weights, exc, _HF_OFFLINE) from exc

    def build_info(self, module):
        return {"config": module.config.to_dict()}

    def rebuild(self, name, info, num_classes=None, kwargs=None):
        from transformers import AutoConfig, AutoModel

        # The saved configuration holds the keywords that overrode it; the
        # others (e.g. attn_implementation) go to the model again.
        config = dict(info["config"])
        config = AutoConfig.for_model(config.pop("model_type"), **config)
        kwargs = {k: v for k, v in (kwargs or {}).items() if not hasattr(config, k)}
        return AutoModel.from_config(config, **kwargs)

    def default_features(self, module, x):
        if _is_image_text(module):
            # CLIP, SigLIP, ALIGN...: the image embedding that is compared with text.
            out = module.get_image_features(pixel_values=x)
            if not torch.is_tensor(out):  # transformers >= 5 returns the vision outputs
                out = out.pooler_output
            return torch.flatten(out, 1)
        out = module(pixel_values=x)
        pooled = getattr(out, "pooler_output", None)
        if pooled is not None:
            return torch.flatten(pooled, 1)
        return self._blocks(module, out, x, 1)[-1][0][:, 0]

    def tokens(self, module, x, n):
        tower = _image_tower(module)
        out = tower(pixel_values=x, output_hidden_states=n > 1)
        return self._blocks(tower, out, x, n)

    def _blocks(self, module, out, x, n):
        last = out.last_hidden_state
        if last.ndim != 3:
            raise ValueError(
                f"this Hugging Face model ({type(module).__name__}) gives feature maps "
                "(n, C, H, W), not tokens; use pooling='auto'."
            )
        hidden = [last]
        if n > 1:
            # The last block's tokens are normalised by the model; normalise the
            # earlier ones the same way (DINO's get_intermediate_layers(norm=True)).
            # SigLIP names that norm post_layernorm; CLIP's post_layernorm acts on
            # the pooled token only, and its last block comes out unnormalised.
            norm = getattr(module, "layernorm", None)
            if norm is None and not torch.equal(out.hidden_states[-1], last):
                norm = getattr(module, "post_layernorm", None)
            norm = norm or nn.Identity()
            hidden = [norm(h) for h in out.hidden_states[-n:-1]] + hidden
        p = self.n_prefix_tokens(module, x, n_tokens=last.shape[1])
        return [(h[:, :p], h[:, p:]) for h in hidden]

    def n_prefix_tokens(self, module, x, n_tokens=None):
        config = _vision_config(module)
        patch = getattr(config, "patch_size", None)
        if patch is None or n_tokens is None:
            return 1 if getattr(config, "model_type", "") in _HF_CLS_MODELS else 0
        ph, pw = (patch, patch) if isinstance(patch, int) else patch
        return max(0, n_tokens - (x.shape[-2] // ph) * (x.shape[-1] // pw))

    def input_size(self, module):
        config = _vision_config(module)
        size = getattr(config, "image_size", None)
        if size is None:
            return None
        h, w = (size, size) if isinstance(size, int) else size
        return (getattr(config, "num_channels", 3), h, w)

    def preprocessing(self, module, name, weights):
        from transformers import AutoImageProcessor

        source = os.fspath(weights) if is_local(weights) and os.path.isdir(weights) else name
        try:
            processor = AutoImageProcessor.from_pretrained(source)
        except (OSError, ValueError):
            return None  # no preprocessor_config.json: nothing to apply
        return hf_processor_settings(processor, f"'hf:{name}'")


_HF_CLS_MODELS = ("vit", "dinov2", "dinov2_with_registers", "deit", "beit", "data2vec-vision",
                  "clip_vision_model", "vit_msn", "vit_mae", "ijepa", "dinov3_vit")
_PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def _is_image_text(module):
    """Whether a Hugging Face model has an image tower and a text tower (CLIP, SigLIP...)."""
    return callable(getattr(module, "get_image_features", None)) and hasattr(module,
                                                                               "vision_model")


def _image_tower(module):
    """The vision model of an image-text model; any other model itself."""
    return module.vision_model if _is_image_text(module) else module


def _vision_config(module):
    """The configuration of the part that sees images (CLIPConfig.vision_config...)."""
    return getattr(module.config, "vision_config", None) or module.config


def hf_processor_settings(processor, what):
    """The settings of a Hugging Face image processor (size, crop, mean/std, resampling)."""
    settings = {}
    if getattr(processor, "do_resize", True):
        size = getattr(processor, "size", None) or {}
        size = dict(size) if not isinstance(size, int) else {"shortest_edge": size}
        if "shortest_edge" in size and size.get("shortest_edge"):
            settings["size"] = int(size["shortest_edge"])
        elif "height" in size and "width" in size:
            settings["size"] = (int(size["height"]), int(size["width"]))
        elif size:
            raise ValueError(
                f"the image processor of {what} resizes by {sorted(size)}, which "
                "skclusterfit cannot reproduce; pass preprocess= explicitly."
            )
        resample = getattr(processor, "resample", 2)
        resample = getattr(resample, "value", resample)
        if hasattr(resample, "name") and not isinstance(resample, int):
            resample = str(resample.name).lower()
        settings["interpolation"] = _PIL_RESAMPLE.get(resample, resample)
    if getattr(processor, "do_center_crop", False):
        crop = dict(processor.crop_size)
        settings["crop"] = (int(crop["height"]), int(crop["width"]))
    if getattr(processor, "do_normalize", False):
        settings["mean"] = [float(v) for v in processor.image_mean]
        settings["std"] = [float(v) for v in processor.image_std]
    return make_settings(**settings)


class _OpenClip(_Adapter):
    library = "open_clip"
    listing = "open_clip.list_models()"

    def check_name(self, name):
        open_clip = require("open_clip", f"model='open_clip:{name}'")
        if name.startswith(("local-dir:", "hf-hub:")):
            return
        if name not in open_clip.list_models():
            raise _unknown("open_clip", name, open_clip.list_models(), self.listing)

    def build(self, name, weights, num_classes=None, kwargs=None):
        import open_clip

        self.check_name(name)
        what = f"'open_clip:{name}'"
        kwargs = dict(kwargs or {})
        try:
            if name.startswith(("local-dir:", "hf-hub:")):
                model = open_clip.create_model(name, load_weights=weights is not None, **kwargs)
            elif weights is None:
                model = open_clip.create_model(name, pretrained=None, **kwargs)
            else:
                if weights == "auto":
                    tags = open_clip.list_pretrained_tags_by_model(name)
                    if not tags:
                        raise ValueError(
                            f"{what} has no pretrained weights known to open_clip; pass "
                            "weights='/path/to/checkpoint' or weights=None."
                        )
                    weights = tags[0]
                elif not is_local(weights) and weights not in (
                    open_clip.list_pretrained_tags_by_model(name)
                ):
                    tags = open_clip.list_pretrained_tags_by_model(name)
                    raise ValueError(
                        f"weights={weights!r} is neither a local file nor a pretrained "
                        f"tag of {what}; its tags are {tags}."
                    )
                model = open_clip.create_model(
                    name, pretrained=os.fspath(weights), require_pretrained=True, **kwargs
                )
        except (FileNotFoundError, ValueError):
            raise
        except Exception as exc:
            if is_local(weights) or name.startswith("local-dir:"):
                raise
            raise _offline_error(what, weights, exc, _CLIP_OFFLINE) from exc
        return model.visual  # encode_image(x) is visual(x): the image tower is the network

    def default_features(self, module, x):
        return module(x)

    def tokens(self, module, x, n):
        if not hasattr(module, "forward_intermediates"):
            super().tokens(module, x, n)
        out = module.forward_intermediates(
            x, indices=n, normalize_intermediates=True, intermediates_only=True,
            output_fmt="NLC", output_extra_tokens=True,
        )
        prefixes = out.get("image_intermediates_prefix") or [None] * n
        return list(zip(prefixes, out["image_intermediates"]))

    def n_prefix_tokens(self, module, x):
        return 1 if getattr(module, "class_embedding", None) is not None else 0

    def input_size(self, module):
        size = getattr(module, "image_size", None)
        if size is None:
            return None
        h, w = (size, size) if isinstance(size, int) else size
        return (3, h, w)

    def preprocessing(self, module, name, weights):
        from open_clip.transform import PreprocessCfg, image_transform_v2

        config = getattr(module, "preprocess_cfg", None)
        if config is None:
            return None
        transform = image_transform_v2(PreprocessCfg(**config), is_train=False)
        return settings_from_transforms(transform, f"'open_clip:{name}'")


class _Hub(_Adapter):
    """A torch.hub repository directory: its entry builds the network.

    What the entry returns decides the rest: a timm, Hugging Face or open_clip
    module is taken as that library means it; any other module gives its
    output as features once its linear head is split off (only when that
    head is its last module), and DINO's ``get_intermediate_layers`` gives its
    tokens.
    """

    library = "hub"
    listing = "torch.hub.list(DIR, source='local')"

    @staticmethod
    def _split(name):
        directory, sep, entry = name.rpartition(":")
        if not sep or not directory or not entry:
            raise ValueError(
                f"model='hub:{name}' must be 'hub:DIR:ENTRY', a torch.hub repository "
                "directory (with hubconf.py) and the name of one of its entries."
            )
        return directory, entry

    def check_name(self, name):
        directory, entry = self._split(name)
        if not os.path.isfile(os.path.join(directory, "hubconf.py")):
            raise ValueError(
                f"model='hub:{name}': {directory!r} is not a torch.hub repository "
                "directory (no hubconf.py). Downloading a repository is torch.hub's "
                "job: torch.hub.load('owner/repo', ...) once where a network is "
                "reachable, then pass its directory in torch.hub.get_dir()."
            )
        entries = _hub_entries(directory)
        if entry not in entries:
            raise _unknown(f"hub:{directory}", entry, entries, self.listing)

    def build(self, name, weights, num_classes=None, kwargs=None):
        self.check_name(name)
        directory, entry = self._split(name)
        what = f"'hub:{name}'"
        user = dict(kwargs or {})
        kwargs = {} if weights == "auto" else {"pretrained": False}
        if num_classes is not None:
            kwargs["num_classes"] = num_classes
        try:
            module = _hub_load(directory, entry, kwargs, keep=user)
        except TypeError:
            raise
        except Exception as exc:
            if weights != "auto":
                raise
            raise _offline_error(
                what, weights, exc,
                "pass weights='/path/to/weights.pth' (a state dict the entry's "
                "network takes), and the entry is called with pretrained=False.",
            ) from exc
        if not isinstance(module, nn.Module):
            raise TypeError(f"{what} returned a {type(module).__name__}, not an nn.Module.")
        if weights not in (None, "auto"):
            _load_state(module, os.fspath(weights), what)
        return module

    def prepare(self, module):
        return split_head(module, f"the network of this torch.hub entry")[0]

    def default_features(self, module, x):
        out = module(x)
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"the torch.hub network ({type(module).__name__}) returns a "
                f"{type(out).__name__}, not a tensor, and skclusterfit knows no rule "
                "to pool it; choose the feature layer by name with layer=... "
                "(a module name of the network)."
            )
        return out

    def tokens(self, module, x, n):
        if not hasattr(module, "get_intermediate_layers"):
            super().tokens(module, x, n)
        # DINO / DINOv2's own API: normalised (patch tokens, class token) per block.
        blocks = module.get_intermediate_layers(x, n, return_class_token=True, norm=True)
        return [(cls[:, None], patches) for patches, cls in blocks]

    def n_prefix_tokens(self, module, x):
        has_cls = getattr(module, "cls_token", None) is not None
        return int(has_cls) + int(getattr(module, "num_register_tokens", 0) or 0)


def _hub_entries(directory):
    """The entries of a local hubconf.py, as ``torch.hub.list`` gives them for a GitHub one."""
    import importlib.util

    path = os.path.join(directory, "hubconf.py")
    spec = importlib.util.spec_from_file_location("hubconf", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, directory)  # as torch.hub.load(source="local"): its own imports resolve
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(directory)
    return [name for name in dir(module)
            if callable(getattr(module, name)) and not name.startswith("_")]


def _hub_load(directory, entry, kwargs, keep=None):
    """torch.hub's local loading, without the keywords of ``kwargs`` the entry does
    not take; those of ``keep`` (the user's) always go, an error if it refuses them."""
    keep = dict(keep or {})
    while True:
        try:
            return torch.hub.load(directory, entry, source="local", trust_repo=True,
                                  **{**kwargs, **keep})
        except TypeError as exc:
            unexpected = [k for k in kwargs if f"'{k}'" in str(exc) and k not in keep]
            if not unexpected or "unexpected keyword" not in str(exc):
                raise
            kwargs = {k: v for k, v in kwargs.items() if k not in unexpected}


def _load_state(module, path, what):
    state = read_state_dict(path)
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"weights={path!r} do not fit {what}: {exc}") from exc


ADAPTERS = {a.library: a for a in (_Timm(), _HuggingFace(), _OpenClip(), _Hub())}


def adapter_of(module):
    """The adapter that takes features from a built module (a hub entry's own library, if any)."""
    return ADAPTERS[library_of(module) or "hub"]


# -- building ---------------------------------------------------------------------------------
def build_library_network(model, weights, num_classes=None, info=None, kwargs=None):
    """The library's module for the specification ``model``, with ``weights`` loaded.

    ``weights``: None (random initialisation), "auto" (the library's
    pretrained default, downloaded by the library or read from its cache), a
    local file or directory, or a pretrained tag of the library. With
    ``info`` (from :func:`library_build_info`), the architecture is rebuilt
    from it without weights. ``kwargs``: keyword arguments of the library's
    building call (``timm.create_model(name, **kwargs)``, ``from_pretrained``,
    ``open_clip.create_model``, the hub entry).
    """
    library, name = parse_spec(model)
    if library != "hub":
        require(library, f"model={model!r}")
    adapter = ADAPTERS[library]
    if info is not None:
        return adapter.rebuild(name, info, num_classes, kwargs)
    return adapter.build(name, weights, num_classes, kwargs)


def library_build_info(model, network):
    """``{"library": info}`` from which :func:`build_library_network` rebuilds the
    library's network inside ``network``, or ``{}`` when ``model`` names no library."""
    spec = parse_spec(model)
    inner = next((m for m in network.modules() if isinstance(m, (LibraryFeatures, LayerFeatures))),
                 None)
    if spec is None or inner is None:
        return {}
    return {"library": ADAPTERS[spec[0]].build_info(inner.model)}


def check_library_spec(model):
    """Raise (extra missing, unknown name) before any work; nothing is built."""
    library, name = parse_spec(model)
    if library != "hub":
        require(library, f"model={model!r}")
    ADAPTERS[library].check_name(name)


class LibraryFeatures(nn.Module):
    """A library's network whose forward returns its features, as the library means them.

    ``pooling="auto"`` with ``n_last_blocks=1``: timm ``forward_head(
    forward_features(x), pre_logits=True)``; Hugging Face ``pooler_output``
    (the class token of ``last_hidden_state`` where the model has no pooler;
    ``get_image_features`` for image-text models such as CLIP and SigLIP,
    whose tokens come from their ``vision_model``);
    open_clip ``encode_image``; a torch.hub network's output, its linear head
    split off. Otherwise tokens of the last ``n_last_blocks`` blocks,
    normalised as the model normalises its last one: ``"cls"`` class tokens,
    ``"mean"`` patch-token means, ``"cls+mean"`` both (DINO's linear
    evaluation).

    Parameters
    ----------
    model : nn.Module
        Built by the library (stored as the attribute ``model``: node names
        of ``layerwise_probe`` start with ``model.``).
    pooling : {"auto", "cls", "mean", "cls+mean"}, default="auto"
    n_last_blocks : int, default=1
    """

    def __init__(self, model, pooling="auto", n_last_blocks=1):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r} must be one of {POOLINGS}.")
        self.model = adapter_of(model).prepare(model)
        self.pooling = pooling
        self.n_last_blocks = int(n_last_blocks)
        self._adapter = adapter_of(model)

    def forward(self, x):
        return self._adapter.features(self.model, x, self.pooling, self.n_last_blocks)

    def output_dim(self):
        """The feature width, from one forward pass of the network's configured input size."""
        size = self._adapter.input_size(self.model)
        if size is None:
            raise ValueError(
                f"cannot tell the feature width of this {self._adapter.library} network "
                "without an input size in its configuration."
            )
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return int(torch.flatten(self(torch.zeros(1, *size)), 1).shape[1])
        finally:
            self.train(was_training)


class _Stop(Exception):
    """Raised by a hook once the chosen layer has run: the rest of the network is not needed."""


class LayerFeatures(nn.Module):
    """The output of one named module of a library's network, pooled to ``(n, d)``.

    Transformer blocks give tokens (pooled by ``pooling``: "auto" is the
    class token where the network has one, else the mean of the tokens);
    feature maps are averaged over space. The forward pass stops once the
    layer has run.
    """

    def __init__(self, model, layer, pooling="auto"):
        super().__init__()
        self._adapter = adapter_of(model)
        self.model = self._adapter.prepare(model)
        self.layer = resolve_layer(self.model, layer)
        self.pooling = pooling

    def forward(self, x):
        outputs = run_hooked(self.model, [self.layer], x, self._adapter, stop=True)
        n_prefix = _n_prefix(self._adapter, self.model, x, outputs[self.layer])
        return pool_output(outputs[self.layer], self.pooling, n_prefix)


def _n_prefix(adapter, module, x, out):
    if isinstance(adapter, _HuggingFace):
        return adapter.n_prefix_tokens(module, x, n_tokens=first_tensor(out).shape[1])
    return adapter.n_prefix_tokens(module, x)


def resolve_layer(network, layer):
    """The module name ``layer`` stands for in ``network``, or a ValueError with close names."""
    names = [n for n, _ in network.named_modules() if n]
    if layer in names:
        return layer
    for prefix in _library_prefixes(network):
        if f"{prefix}{layer}" in names:
            return f"{prefix}{layer}"
    raise ValueError(
        f"layer={layer!r} is not a module of the network. Close matches: "
        f"{_close(layer, names)}; all names: network.named_modules()."
    )


def _library_prefixes(network):
    return [f"{n}.model." if n else "model." for n, m in network.named_modules()
            if isinstance(m, (LibraryFeatures, LayerFeatures))]


def run_hooked(network, layers, x, adapter=None, stop=False):
    """Outputs of the named modules for the batch ``x`` (one forward pass)."""
    captured = {}
    handles = []
    for layer in layers:
        def hook(module, inputs, output, layer=layer):
            captured.setdefault(layer, output)
            if stop and len(captured) == len(layers):
                raise _Stop
        handles.append(network.get_submodule(layer).register_forward_hook(hook))
    try:
        if adapter is not None:
            adapter.default_features(network, x)
        else:
            network(x)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [layer for layer in layers if layer not in captured]
    if missing:
        raise ValueError(f"layers {missing} are modules the forward pass never ran.")
    return captured


def is_library_network(network):
    return any(isinstance(m, (LibraryFeatures, LayerFeatures)) for m in network.modules())


def library_layer_features(network, layers, x):
    """Pooled outputs of named modules of a network holding a library's network."""
    names = [resolve_layer(network, layer) for layer in layers]
    outputs = run_hooked(network, names, x)
    inner = next(m for m in network.modules() if isinstance(m, (LibraryFeatures, LayerFeatures)))
    return {
        layer: pool_output(outputs[name], "auto",
                           _n_prefix(inner._adapter, inner.model, x, outputs[name]))
        for layer, name in zip(layers, names)
    }


def library_preprocessing(model, module, weights):
    """The evaluation preprocessing settings of a library's network, or None."""
    spec = parse_spec(model)
    name = spec[1] if spec else type(module).__name__
    adapter = ADAPTERS[spec[0]] if spec else adapter_of(module)
    if spec and spec[0] == "hub":
        adapter = adapter_of(module)
    return adapter.preprocessing(module, name, weights)


def library_student(module):
    """``module`` (built by a library) as a student's backbone and its feature width."""
    adapter = adapter_of(module)
    backbone = LibraryFeatures(adapter.strip_head(module))
    return backbone, backbone.output_dim()

"""Teachers and students from timm, Hugging Face transformers, open_clip and torch.hub, offline.

Each library builds a small model with random weights, saved the way the
library saves it; the named specification loads it; the features must equal
what calling the library directly gives on the same images after the
library's own preprocessing.
"""

import json
import os
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import skclusterfit
from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
from skclusterfit.data import ImageFiles
from skclusterfit.evaluation import layerwise_probe

timm = pytest.importorskip("timm", reason="timm not installed: pip install 'skclusterfit[timm]'")

RNG = np.random.RandomState(0)
IMAGES = RNG.rand(6, 3, 40, 48).astype(np.float32)  # not the models' size: resize and crop run
# Hugging Face image processors place a centre crop at floor((h - crop) / 2), torchvision
# (and so timm, open_clip and skclusterfit) at round(...): the same pixels where the
# margin is even, as for these 40x40 images resized to 36 and cropped to 32.
HF_IMAGES = RNG.rand(6, 3, 40, 40).astype(np.float32)


def _close(a, b, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=atol)


# -- the models, saved the libraries' ways ------------------------------------------------
@pytest.fixture(scope="module")
def timm_vit(tmp_path_factory):
    """timm's smallest ViT (random; 160 px, 6 blocks of width 64), saved as a state-dict file."""
    torch.manual_seed(0)
    model = timm.create_model("test_vit", num_classes=0).eval()
    path = tmp_path_factory.mktemp("timm") / "vit_tiny.pth"
    torch.save(model.state_dict(), path)
    return model, str(path)


@pytest.fixture(scope="module")
def timm_dir(tmp_path_factory):
    """A small timm CNN written by timm's own save_for_hf (config.json + safetensors)."""
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", num_classes=7).eval()
    directory = tmp_path_factory.mktemp("timm_dir") / "resnet10t"
    timm.models.save_for_hf(model, str(directory), model_args={"num_classes": 7},
                            safe_serialization=True)
    return model, str(directory)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    transformers = pytest.importorskip(
        "transformers", reason="transformers not installed: pip install 'skclusterfit[hf]'"
    )
    torch.manual_seed(0)
    config = transformers.Dinov2Config(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
        image_size=32, patch_size=8,
    )
    model = transformers.Dinov2Model(config).eval()
    processor = transformers.BitImageProcessor(
        size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32},
        do_center_crop=True, resample=3, image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    directory = tmp_path_factory.mktemp("hf") / "dinov2-tiny"
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return model, processor, str(directory)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    open_clip = pytest.importorskip(
        "open_clip", reason="open_clip not installed: pip install 'skclusterfit[clip]'"
    )
    from safetensors.torch import save_file

    directory = tmp_path_factory.mktemp("clip") / "tiny-clip"
    directory.mkdir()
    config = {
        "model_cfg": {
            "embed_dim": 16,
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8,
                           "head_width": 16},
            "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 1,
                         "layers": 1},
        },
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                           "std": [0.26862954, 0.26130258, 0.27577711]},
    }
    (directory / "open_clip_config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{directory}", load_weights=False).eval()
    save_file(model.state_dict(), str(directory / "open_clip_model.safetensors"))
    _, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{directory}")
    return model, preprocess, str(directory)


HUBCONF = '''
import torch
from torch import nn

dependencies = ["torch"]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class DictNet(Net):
    def forward(self, x):
        return {"features": torch.relu(self.conv(x)).mean(dim=(2, 3))}


class InnerLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.proj = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)

    def forward(self, x):
        return self.norm(self.proj(torch.relu(self.conv(x)).mean(dim=(2, 3))))


def small_net(pretrained=True):
    """A small CNN; pretrained=True would download its weights."""
    if pretrained:
        raise RuntimeError("no network: cannot download the weights of small_net")
    return Net()


def dict_net(pretrained=False):
    return DictNet()


def inner_linear(pretrained=False):
    return InnerLinear()
'''


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hub") / "repo"
    directory.mkdir()
    (directory / "hubconf.py").write_text(textwrap.dedent(HUBCONF))
    torch.manual_seed(0)
    sys.path.insert(0, str(directory))
    try:
        import hubconf

        net = hubconf.Net().eval()
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop("hubconf", None)
    path = str(directory / "small_net.pth")
    torch.save(net.state_dict(), path)
    return net, str(directory), path


# -- features equal the library's own call ------------------------------------------------
def test_timm_features_equal_forward_head_pre_logits(timm_vit):
    model, path = timm_vit
    extractor = FeatureExtractor("timm:test_vit", weights=path, device="cpu")
    features = extractor.fit(IMAGES).transform(IMAGES)
    config = timm.data.resolve_model_data_config(model)
    transform = timm.data.create_transform(**config, is_training=False)
    with torch.no_grad():
        x = torch.stack([transform(torch.from_numpy(image)) for image in IMAGES])
        expected = model.forward_head(model.forward_features(x), pre_logits=True)
    _close(features, expected)
    assert extractor.preprocess_settings_["crop"] == (160, 160)
    assert extractor.preprocess_settings_["interpolation"] == config["interpolation"]
    assert not extractor.random_init_


def test_timm_tokens_as_dino_linear_eval(timm_vit):
    """cls+mean over the last 4 blocks: class tokens of 4 normed blocks + mean patch token."""
    model, path = timm_vit
    extractor = FeatureExtractor("timm:test_vit", weights=path, pooling="cls+mean",
                                 n_last_blocks=4, device="cpu").fit(IMAGES)
    features = extractor.transform(IMAGES[:2])
    x = extractor.preprocess_(torch.from_numpy(IMAGES[:2]))
    with torch.no_grad():
        blocks = model.forward_intermediates(x, indices=4, norm=True, return_prefix_tokens=True,
                                             output_fmt="NLC", intermediates_only=True)
    expected = torch.cat([prefix[:, 0] for _, prefix in blocks] + [blocks[-1][0].mean(1)], 1)
    assert features.shape == (2, 5 * 64)
    _close(features, expected)
    # One block, class token: the library's forward_features' first token.
    cls = FeatureExtractor("timm:test_vit", weights=path, pooling="cls",
                           device="cpu").fit(IMAGES).transform(IMAGES[:2])
    with torch.no_grad():
        _close(cls, model.forward_features(x)[:, 0])


def test_timm_layer_by_block_name(timm_vit):
    model, path = timm_vit
    extractor = FeatureExtractor("timm:test_vit", weights=path, layer="blocks.2",
                                 device="cpu").fit(IMAGES)
    x = extractor.preprocess_(torch.from_numpy(IMAGES[:2]))
    captured = {}
    handle = model.blocks[2].register_forward_hook(lambda m, i, o: captured.setdefault("o", o))
    with torch.no_grad():
        model(x)
    handle.remove()
    _close(extractor.transform(IMAGES[:2]), captured["o"][:, 0])  # the class token
    with pytest.raises(ValueError, match="blocks.2"):
        FeatureExtractor("timm:test_vit", weights=path, layer="block.2",
                         device="cpu").fit(IMAGES)


def test_timm_directory_and_image_files(timm_dir, tmp_path):
    """A save_for_hf directory; image files read with timm's own PIL transforms."""
    model, directory = timm_dir
    paths = []
    for i, image in enumerate((IMAGES * 255).astype(np.uint8)):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image.transpose(1, 2, 0)).save(paths[-1])
    extractor = FeatureExtractor("timm:resnet10t", weights=directory, device="cpu",
                                 preprocess=None)
    from skclusterfit.cli._image_folder import reader_settings

    settings = reader_settings("timm:resnet10t", directory)
    files = ImageFiles(paths, **settings)
    features = extractor.fit(files).transform(files)
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    with torch.no_grad():
        x = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
        expected = model.forward_head(model.forward_features(x), pre_logits=True)
    _close(features, expected, atol=1e-4)
    assert settings["interpolation"] == "bicubic"


def test_hf_pooler_and_cls_and_layer(hf_dir):
    model, processor, directory = hf_dir
    extractor = FeatureExtractor(f"hf:{directory}", device="cpu").fit(HF_IMAGES)
    inputs = processor(images=list(torch.from_numpy(HF_IMAGES)), return_tensors="pt",
                       do_rescale=False)
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    # the image processor's resize and ours differ by resampling kernels' rounding
    _close(extractor.transform(HF_IMAGES), out.pooler_output, atol=1e-4)
    settings = extractor.preprocess_settings_
    assert (settings["size"], settings["crop"], settings["interpolation"]) == (
        36, (32, 32), "bicubic")
    # "cls": the class token of last_hidden_state (the same as Dinov2's pooler).
    cls = FeatureExtractor(f"hf:{directory}", pooling="cls", device="cpu").fit(HF_IMAGES)
    _close(cls.transform(HF_IMAGES), out.last_hidden_state[:, 0], atol=1e-4)
    mean = FeatureExtractor(f"hf:{directory}", pooling="mean", device="cpu").fit(HF_IMAGES)
    _close(mean.transform(HF_IMAGES), out.last_hidden_state[:, 1:].mean(1), atol=1e-4)
    layer = FeatureExtractor(f"hf:{directory}", layer="encoder.layer.1", device="cpu").fit(HF_IMAGES)
    _close(layer.transform(HF_IMAGES), out.hidden_states[2][:, 0], atol=1e-4)


def test_hf_features_exact_on_the_same_pixels(hf_dir):
    """With preprocessing done once, by the processor, the model's features are bit-exact."""
    model, processor, directory = hf_dir
    pixels = processor(images=list(torch.from_numpy(HF_IMAGES)), return_tensors="pt",
                       do_rescale=False)["pixel_values"].numpy()
    extractor = FeatureExtractor(f"hf:{directory}", preprocess=None, device="cpu").fit(pixels)
    with torch.no_grad():
        expected = model(pixel_values=torch.from_numpy(pixels)).pooler_output
    _close(extractor.transform(pixels), expected)


@pytest.fixture(scope="module", params=["clip", "siglip"])
def hf_image_text_dir(request, tmp_path_factory):
    """A tiny Hugging Face CLIP or SigLIP (image and text towers), saved by save_pretrained."""
    transformers = pytest.importorskip(
        "transformers", reason="transformers not installed: pip install 'skclusterfit[hf]'"
    )
    torch.manual_seed(0)
    vision = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                  intermediate_size=64, image_size=32, patch_size=8)
    text = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=1,
                intermediate_size=32, vocab_size=64, max_position_embeddings=16,
                bos_token_id=0, eos_token_id=1, pad_token_id=1)
    if request.param == "clip":
        config = transformers.CLIPConfig(vision_config=vision, text_config=text,
                                         projection_dim=24)
        model = transformers.CLIPModel(config).eval()
        processor = transformers.CLIPImageProcessor(
            size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32})
    else:
        config = transformers.SiglipConfig(vision_config=vision, text_config=text)
        model = transformers.SiglipModel(config).eval()
        processor = transformers.SiglipImageProcessor(size={"height": 32, "width": 32})
    directory = tmp_path_factory.mktemp("hf_image_text") / request.param
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return request.param, model, processor, str(directory)


def _image_embedding(model, pixels):
    out = model.get_image_features(pixel_values=pixels)
    return out if torch.is_tensor(out) else out.pooler_output


def test_hf_image_text_models_give_their_image_features(hf_image_text_dir, tmp_path):
    """CLIP and SigLIP need input_ids in forward: their features are get_image_features'."""
    kind, model, processor, directory = hf_image_text_dir
    pixels = processor(images=list(torch.from_numpy(HF_IMAGES)), return_tensors="pt",
                       do_rescale=False)["pixel_values"]
    with torch.no_grad():
        expected = _image_embedding(model, pixels)
        tower = model.vision_model(pixel_values=pixels, output_hidden_states=True)
    extractor = FeatureExtractor(f"hf:{directory}", device="cpu").fit(HF_IMAGES)
    assert extractor.n_features_out_ == expected.shape[1] == (24 if kind == "clip" else 32)
    _close(extractor.transform(HF_IMAGES), expected, atol=1e-4)  # resize kernels round apart
    exact = FeatureExtractor(f"hf:{directory}", preprocess=None, device="cpu").fit(pixels.numpy())
    _close(exact.transform(pixels.numpy()), expected)
    # tokens from the vision tower; a block chosen by its name in the full model
    mean = FeatureExtractor(f"hf:{directory}", pooling="mean", preprocess=None,
                            device="cpu").fit(pixels.numpy())
    n_prefix = 1 if kind == "clip" else 0  # SigLIP has no class token
    _close(mean.transform(pixels.numpy()), tower.last_hidden_state[:, n_prefix:].mean(1))
    layer = FeatureExtractor(f"hf:{directory}", layer="vision_model.encoder.layers.1",
                             preprocess=None, device="cpu").fit(pixels.numpy())
    block = tower.hidden_states[2]
    _close(layer.transform(pixels.numpy()), block[:, 0] if kind == "clip" else block.mean(1))
    if kind == "siglip":
        with pytest.raises(ValueError, match="class token"):
            FeatureExtractor(f"hf:{directory}", pooling="cls", device="cpu").fit(HF_IMAGES)
    path = extractor.save(tmp_path / "fe.skcf")
    _close(skclusterfit.load(path).transform(HF_IMAGES), extractor.transform(HF_IMAGES))


def test_hf_siglip_blocks_normalised_as_its_last(hf_image_text_dir):
    """SigLIP's post_layernorm normalises its last block; DINO-style earlier blocks get it too."""
    kind, model, _, directory = hf_image_text_dir
    if kind != "siglip":
        pytest.skip("CLIP's last block comes out unnormalised: nothing to check")
    pixels = torch.from_numpy(RNG.rand(3, 3, 32, 32).astype(np.float32))
    with torch.no_grad():
        tower = model.vision_model(pixel_values=pixels, output_hidden_states=True)
        norm = model.vision_model.post_layernorm
        expected = torch.cat([norm(tower.hidden_states[-2]).mean(1),
                              tower.last_hidden_state.mean(1)], 1)
    extractor = FeatureExtractor(f"hf:{directory}", pooling="mean", n_last_blocks=2,
                                 preprocess=None, device="cpu").fit(pixels.numpy())
    _close(extractor.transform(pixels.numpy()), expected)


def test_open_clip_encode_image_arrays_and_files(clip_dir, tmp_path):
    model, preprocess, directory = clip_dir
    spec = f"open_clip:local-dir:{directory}"
    extractor = FeatureExtractor(spec, device="cpu").fit(IMAGES)
    tensor_steps = [t for t in preprocess.transforms
                    if type(t).__name__ not in ("MaybeConvertMode", "MaybeToTensor")]
    with torch.no_grad():
        x = torch.stack([
            torch.nn.Sequential(*tensor_steps)(torch.from_numpy(image)) for image in IMAGES
        ])
        expected = model.encode_image(x)
    _close(extractor.transform(IMAGES), expected)
    # Files: open_clip's own PIL preprocess against ImageFiles with the read settings.
    paths = []
    for i, image in enumerate((IMAGES * 255).astype(np.uint8)):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image.transpose(1, 2, 0)).save(paths[-1])
    files = ImageFiles(paths, **extractor.preprocess_settings_)
    on_files = FeatureExtractor(spec, preprocess=None, device="cpu").fit(files).transform(files)
    with torch.no_grad():
        expected = model.encode_image(torch.stack([preprocess(Image.open(p)) for p in paths]))
    _close(on_files, expected, atol=1e-4)


def test_hub_entry_with_weights_file(hub_dir):
    net, directory, path = hub_dir
    extractor = FeatureExtractor(f"hub:{directory}:small_net", weights=path, device="cpu")
    features = extractor.fit(IMAGES).transform(IMAGES)
    with torch.no_grad():  # the head (last module, fc) is split off: its input
        expected = torch.relu(net.conv(torch.from_numpy(IMAGES))).mean(dim=(2, 3))
    _close(features, expected)
    assert extractor.n_features_out_ == 8


# -- students by name, ClusterFit, persistence ---------------------------------------------
def test_timm_student_by_name_trains_and_round_trips(tmp_path):
    X = RNG.rand(24, 3, 32, 32).astype(np.float32)
    y = np.arange(24) % 3
    clf = NetClassifier("timm:resnet10t", max_epochs=1, batch_size=8, device="cpu",
                        random_state=0).fit(X, y)
    assert clf.model_.head.out_features == 3
    # the head went through timm's reset_classifier: no 1000-way head left inside
    assert clf.model_.backbone.model.num_classes == 0
    loaded = skclusterfit.load(clf.save(tmp_path / "clf.skcf"))
    _close(loaded.transform(X), clf.transform(X))
    assert (loaded.predict(X) == clf.predict(X)).all()


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
@pytest.mark.parametrize("library", ["timm", "hf", "open_clip", "hub"])
def test_clusterfit_fit_save_load(library, request, tmp_path):
    if library == "timm":
        directory = request.getfixturevalue("timm_dir")[1]
        teacher = FeatureExtractor("timm:resnet10t", weights=directory, device="cpu")
    elif library == "hf":
        teacher = FeatureExtractor(f"hf:{request.getfixturevalue('hf_dir')[2]}", device="cpu")
    elif library == "open_clip":
        directory = request.getfixturevalue("clip_dir")[2]
        teacher = FeatureExtractor(f"open_clip:local-dir:{directory}", device="cpu")
    else:
        _, directory, path = request.getfixturevalue("hub_dir")
        teacher = FeatureExtractor(f"hub:{directory}:small_net", weights=path, device="cpu")
    X = RNG.rand(16, 3, 32, 32).astype(np.float32)
    student = NetClassifier("cnn", max_epochs=1, batch_size=8)
    cf = ClusterFit(teacher, K=3, student=student, random_state=0, device="cpu").fit(X)
    # the student takes the teacher's preprocessing, as settings it can store
    if library != "hub":
        assert cf.student_.preprocess == cf.teacher_.preprocess_settings_
    path = tmp_path / "cf.skcf"
    loaded = skclusterfit.load(cf.save(path))
    _close(loaded.transform(X), cf.transform(X))
    _close(loaded.teacher_.transform(X), cf.teacher_.transform(X))


def test_hf_rebuilt_from_the_saved_config_without_the_directory(hf_dir, tmp_path):
    import shutil

    _, _, directory = hf_dir
    copy = str(tmp_path / "copy")
    shutil.copytree(directory, copy)
    extractor = FeatureExtractor(f"hf:{copy}", device="cpu").fit(IMAGES)
    path = extractor.save(tmp_path / "fe.skcf")
    shutil.rmtree(copy)
    _close(skclusterfit.load(path).transform(IMAGES), extractor.transform(IMAGES))


def test_layerwise_probe_on_transformer_blocks(timm_vit):
    _, path = timm_vit
    X = RNG.rand(40, 3, 24, 24).astype(np.float32)
    y = np.arange(40) % 2
    extractor = FeatureExtractor("timm:test_vit", weights=path,
                                 device="cpu").fit(X[:1])
    scores = layerwise_probe(extractor, ["blocks.0", "blocks.5"], X[:30], y[:30], X[30:],
                             y[30:], max_iter=50)
    assert list(scores) == ["blocks.0", "blocks.5"]
    assert all(0 <= s <= 1 for s in scores.values())


# -- errors ---------------------------------------------------------------------------------
def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ImportError, match=r"skclusterfit\[timm\]"):
        FeatureExtractor("timm:resnet18", weights=None, device="cpu").fit(IMAGES)
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(ImportError, match=r"skclusterfit\[clip\]"):
        NetClassifier("open_clip:ViT-B-32", max_epochs=1).fit(IMAGES, [0, 1] * 3)


def test_unknown_names_give_close_matches(hub_dir):
    with pytest.raises(ValueError, match="vit_small_patch16_224"):
        FeatureExtractor("timm:vit_smal_patch16_224", weights=None).fit(IMAGES)
    pytest.importorskip("open_clip")
    with pytest.raises(ValueError, match="ViT-B-32"):
        FeatureExtractor("open_clip:ViT-B-3", weights=None).fit(IMAGES)
    _, directory, _ = hub_dir
    with pytest.raises(ValueError, match="small_net"):
        FeatureExtractor(f"hub:{directory}:small_nett", weights=None).fit(IMAGES)


def test_non_tensor_output_without_a_rule_names_layer(hub_dir):
    _, directory, _ = hub_dir
    with pytest.raises(TypeError, match="layer="):
        FeatureExtractor(f"hub:{directory}:dict_net", weights=None, device="cpu").fit(IMAGES)
    # the layer by name works where the output does not
    extractor = FeatureExtractor(f"hub:{directory}:dict_net", weights=None, layer="conv",
                                 device="cpu").fit(IMAGES)
    assert extractor.transform(IMAGES).shape == (6, 8)


def test_inner_linear_is_never_split(hub_dir):
    """The last nn.Linear inside a network is not its head: refused, naming layer=."""
    _, directory, _ = hub_dir
    with pytest.raises(ValueError, match=r"layer=.*'norm'|'norm'.*layer="):
        FeatureExtractor(f"hub:{directory}:inner_linear", weights=None).fit(IMAGES)
    block = nn.Sequential(nn.Flatten(), nn.Linear(3 * 40 * 48, 16), nn.LayerNorm(16))
    with pytest.raises(ValueError, match="layer="):
        FeatureExtractor(block).fit(IMAGES)
    # timm with its head removed: the library's API, not the MLP's fc2 inside the last block
    vit = timm.create_model("test_vit", num_classes=0)
    extractor = FeatureExtractor(vit, device="cpu", preprocess=None).fit(
        RNG.rand(2, 3, 160, 160).astype(np.float32))
    assert extractor.n_features_out_ == 64


def test_download_fails_offline_naming_the_alternative(monkeypatch, hub_dir):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match="weights='/path/to/model.safetensors'"):
        FeatureExtractor("timm:resnet10t", device="cpu").fit(IMAGES)  # weights="auto"
    _, directory, _ = hub_dir
    with pytest.raises(RuntimeError, match="weights='/path/to/weights.pth'"):
        FeatureExtractor(f"hub:{directory}:small_net", device="cpu").fit(IMAGES)


def test_pooling_needs_tokens():
    with pytest.raises(ValueError, match="n_last_blocks"):
        FeatureExtractor("mlp", pooling="cls", n_last_blocks=2).fit(IMAGES.reshape(6, -1))


def test_cli_help_lists_the_prefixes_and_checks_names(capsys):
    from skclusterfit.cli._main import build_parser, parse_args

    text = build_parser()._subparsers._group_actions[0].choices["fit"].format_help()
    for prefix in ("timm:NAME", "hf:NAME_OR_DIR", "open_clip:NAME", "hub:DIR:ENTRY"):
        assert prefix in text
    with pytest.raises(SystemExit):
        parse_args(["fit", os.getcwd(), "--out", "x", "--teacher", "timm:resnet1800"])
    assert "Close matches" in capsys.readouterr().err


def test_cli_fit_with_a_library_teacher_reads_files_its_way(clip_dir, tmp_path):
    """`skclusterfit fit --teacher open_clip:...`: images read with open_clip's settings."""
    sys.path.insert(0, os.path.dirname(__file__))
    from _image_folders import write_digit_folder

    from skclusterfit import cli

    images = str(tmp_path / "images")
    write_digit_folder(images, range(12), bad_files=False)
    out = str(tmp_path / "out")
    spec = f"open_clip:local-dir:{clip_dir[2]}"
    assert cli.main(["fit", images, "--teacher", spec, "--student", "cnn", "--K", "3",
                     "--max-epochs", "1", "--batch-size", "8", "--num-workers", "0",
                     "--device", "cpu", "--out", out, "--quiet"]) == 0
    model = skclusterfit.load(os.path.join(out, "model"))
    reader = model.named_steps["images"]
    assert (reader.interpolation, reader.crop) == ("bicubic", (32, 32))
    assert reader.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))


# -- model_kwargs: the keywords of the library's own building call ---------------------------
def test_model_kwargs_reach_timm_and_its_preprocessing(tmp_path):
    torch.manual_seed(0)
    direct = timm.create_model("test_vit", img_size=64, num_classes=0).eval()
    path = tmp_path / "vit64.pth"
    torch.save(direct.state_dict(), path)
    extractor = FeatureExtractor("timm:test_vit", weights=str(path),
                                 model_kwargs={"img_size": 64}, device="cpu").fit(IMAGES)
    # timm's data config keeps the pretrained 160 px; the network takes 64
    assert extractor.preprocess_settings_["crop"] == (64, 64)
    x = extractor.preprocess_(torch.from_numpy(IMAGES))
    with torch.no_grad():
        expected = direct.forward_head(direct.forward_features(x), pre_logits=True)
    _close(extractor.transform(IMAGES), expected)
    loaded = skclusterfit.load(extractor.save(tmp_path / "fe.skcf"))
    _close(loaded.transform(IMAGES), extractor.transform(IMAGES))
    # ClusterFit's default student: the same name, built with the same keywords
    from skclusterfit._teachers import student_from

    student = student_from(None, extractor)
    assert (student.model, student.model_kwargs) == ("timm:test_vit", {"img_size": 64})
    # a feature extractor may pick the head it reads through; a classifier's is y's
    with pytest.raises(ValueError, match=r"sets \['num_classes'\], which skclusterfit sets "
                                         r"for model='timm:test_vit'"):
        NetClassifier("timm:test_vit", model_kwargs={"num_classes": 5, "img_size": 32},
                      max_epochs=1, device="cpu").fit(IMAGES, np.arange(len(IMAGES)) % 2)


def test_model_kwargs_override_a_hugging_face_config(hf_dir, tmp_path):
    import shutil

    _, _, directory = hf_dir
    copy = str(tmp_path / "copy")
    shutil.copytree(directory, copy)
    extractor = FeatureExtractor(f"hf:{copy}", model_kwargs={"hidden_act": "relu"},
                                 device="cpu").fit(HF_IMAGES)
    assert extractor.network_.model.config.hidden_act == "relu"
    default = FeatureExtractor(f"hf:{copy}", device="cpu").fit(HF_IMAGES)
    assert not np.allclose(extractor.transform(HF_IMAGES), default.transform(HF_IMAGES))
    path = extractor.save(tmp_path / "fe.skcf")
    shutil.rmtree(copy)  # rebuilt from the saved configuration, overrides included
    _close(skclusterfit.load(path).transform(HF_IMAGES), extractor.transform(HF_IMAGES))


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_cli_teacher_kwargs_build_the_teacher_and_its_reading(tmp_path):
    """`--teacher-kwargs '{"img_size": 32}'`: a timm ViT built, read and saved at 32 px."""
    sys.path.insert(0, os.path.dirname(__file__))
    from _image_folders import write_digit_folder

    from skclusterfit import cli

    torch.manual_seed(0)
    path = str(tmp_path / "vit32.pth")
    torch.save(timm.create_model("test_vit", img_size=32).state_dict(), path)
    images = str(tmp_path / "images")
    write_digit_folder(images, range(12), bad_files=False)
    out = str(tmp_path / "out")
    assert cli.main(["fit", images, "--teacher", "timm:test_vit", "--weights", path,
                     "--teacher-kwargs", '{"img_size": 32}', "--student", "cnn",
                     "--student-kwargs", '{"width": 8}', "--K", "3", "--max-epochs", "1",
                     "--batch-size", "8", "--num-workers", "0", "--device", "cpu",
                     "--out", out, "--quiet"]) == 0
    model = skclusterfit.load(os.path.join(out, "model"))
    assert model.named_steps["images"].crop == (32, 32)
    cf = model.named_steps["clusterfit"]
    assert cf.teacher_.model_kwargs == {"img_size": 32}
    assert cf.student_.model_kwargs == {"width": 8}
    with open(os.path.join(out, "run.json")) as f:
        assert json.load(f)["settings"]["teacher_kwargs"] == {"img_size": 32}


@pytest.mark.parametrize("value, message", [
    ("{img_size: 32}", "is not JSON"), ("[32]", "is a JSON list, not an object"),
])
def test_cli_kwargs_must_be_a_json_object(value, message, capsys, tmp_path):
    from skclusterfit import cli

    with pytest.raises(SystemExit) as info:
        cli.main(["fit", str(tmp_path), "--teacher", "cnn", "--teacher-kwargs", value,
                  "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--teacher-kwargs" in err and message in err

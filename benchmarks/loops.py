"""Student training and teacher extraction: NetClassifier / FeatureExtractor vs a bare PyTorch loop.

Same network (SmallCNN, the same initial weights), same uint8 images, same
batch size and optimiser (SGD, Nesterov momentum, weight decay), in this one
process, interleaved over ``--repeats`` rounds. Printed: median images/s of
each, the median of the per-round ratios ours / bare (>= 1 means no
overhead; a round runs both back to back, under the same load), and the peak RSS
above the baseline while each ran.

The bare loops are what a user would write for in-memory data: the images as
one uint8 tensor, a random permutation split into batches, ``x.float() / 255``
per batch; for extraction ``torch.inference_mode`` over ``model.features``.
Augmentation is off on both sides (NetClassifier's ``augment=None``).

With ``--device cuda`` both sides run on the GPU as a PyTorch user would
write it: mixed precision (bf16 autocast on compute capability 8.0 or more,
fp16 with a GradScaler before), channels-last batches and network, batches
copied from pinned host memory without blocking; each timed run ends with
its results on the host (``torch.cuda.synchronize``). The warm-up (CUDA
context, cuDNN's algorithm search) is untimed.

``--libraries`` (on ``--device`` too, with the GPU settings above) instead
compares extraction through each model-library
adapter (``FeatureExtractor("timm:...")``, ``"hf:DIR"``, ``"open_clip:..."``,
``"hub:DIR:ENTRY"``; small random models saved to a temporary directory, and
ViT-S/14 = ``timm:vit_small_patch14_dinov2`` at 224 px) with a bare loop over
the same module: the same float images, the same preprocessing callable, the
library's own call (timm ``forward_head(forward_features(x), pre_logits=True)``,
transformers ``pooler_output``, open_clip ``encode_image``), the same batch size
and the same torch threads: the bare loop runs with the thread count
skclusterfit picks for the batch (one thread for a batch under
``FLOPS_PER_THREAD``, see ``skclusterfit.runtime._threads``), so the ratio is
the adapters' cost plus scikit-learn's checks of ``X`` (one pass over it for
non-finite values), which the bare loop skips: that check is timed on its
own, and the ratio is also given without it. Ratios are the median of the
per-round ratios and the ratio of the best rounds (the least disturbed by
other load, as ``timeit`` reports). The last columns give the bare
loop with all the process's threads: what the thread rule costs or saves on
an idle machine.
The two 224-px models extract ``--large-samples`` images (a ViT-S/14 takes
about a second per image on two cores), the small ones ``--n-samples``.

Usage::

    python benchmarks/loops.py --n-samples 4096 --epochs 2 --repeats 3
    python benchmarks/loops.py --device cuda --n-samples 50000 --batch-size 256
    python benchmarks/loops.py --libraries --n-samples 512 --large-samples 8 --extract-batch-size 16 --repeats 9
"""

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _conditions import header  # noqa: E402
from _memory import PeakMemory, peak_rss  # noqa: E402

from skclusterfit import FeatureExtractor, NetClassifier  # noqa: E402
from skclusterfit.networks import SmallCNN  # noqa: E402


def make_images(n_samples, side, n_classes, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(n_samples, 1, side, side), dtype=np.uint8)
    y = rng.integers(n_classes, size=n_samples)
    return X, y


DEVICE = torch.device("cpu")


def amp_dtype():
    """The bare loop's autocast dtype: what a user picks for this GPU (None on the CPU)."""
    if DEVICE.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.get_device_capability(DEVICE) >= (8, 0) else torch.float16


def on_device(x):
    x = x.to(DEVICE, non_blocking=True)
    if DEVICE.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def synchronize():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def train_ours(model, X, y, epochs, batch_size):
    NetClassifier(
        copy.deepcopy(model), max_epochs=epochs, batch_size=batch_size, lr=0.05,
        augment=None, lr_schedule="constant", device=DEVICE, random_state=0,
        optimizer="sgd", weight_decay=5e-4,
    ).fit(X, y)
    synchronize()


def train_bare(model, X, y, epochs, batch_size):
    model = copy.deepcopy(model).to(DEVICE).train()
    if DEVICE.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    X_t = torch.from_numpy(X)
    y_t = torch.from_numpy(y.astype(np.int64))
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True
    )
    criterion = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    dtype = amp_dtype()
    scaler = torch.amp.GradScaler(DEVICE.type, enabled=dtype == torch.float16)
    pin = DEVICE.type == "cuda"
    for _ in range(epochs):
        for index in torch.randperm(len(X_t), generator=generator).split(batch_size):
            x, target = X_t[index], y_t[index]
            if pin:
                x, target = x.pin_memory(), target.pin_memory()
            x = on_device(x).float().div_(255)
            with torch.autocast(DEVICE.type, dtype=dtype, enabled=dtype is not None):
                loss = criterion(model(x), target.to(DEVICE, non_blocking=True))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
    synchronize()


def fitted_extractor(model, X, batch_size):
    """Built outside the timing: fit only wraps the network (one sample through it)."""
    return FeatureExtractor(model, batch_size=batch_size, device=DEVICE).fit(X[:1])


def extract_bare(model, X, batch_size):
    model = copy.deepcopy(model).to(DEVICE).eval()
    if DEVICE.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    X_t = torch.from_numpy(X)
    dtype = amp_dtype()
    out = []
    with torch.inference_mode():
        for start in range(0, len(X_t), batch_size):
            x = X_t[start : start + batch_size]
            x = on_device(x.pin_memory() if DEVICE.type == "cuda" else x).float().div_(255)
            with torch.autocast(DEVICE.type, dtype=dtype, enabled=dtype is not None):
                out.append(model.features(x).float())
    return torch.cat(out).cpu().numpy()


def _library_models(folder):
    """name -> (FeatureExtractor kwargs, bare call on the built module), each library installed."""
    import importlib.util
    import json

    import timm

    models = {}
    torch.manual_seed(0)
    torch.save(timm.create_model("test_vit").state_dict(), f"{folder}/test_vit.pth")
    bare_timm = lambda m, x: m.forward_head(m.forward_features(x), pre_logits=True)  # noqa: E731
    models["timm:test_vit (160 px)"] = ({"model": "timm:test_vit",
                                         "weights": f"{folder}/test_vit.pth"}, bare_timm)
    models["timm:vit_small_patch14_dinov2 (ViT-S/14, 224 px, random)"] = (
        {"model": "timm:vit_small_patch14_dinov2", "weights": None}, bare_timm, "large")
    if importlib.util.find_spec("transformers"):
        import transformers

        config = transformers.Dinov2Config(hidden_size=64, num_hidden_layers=4,
                                           num_attention_heads=2, intermediate_size=128,
                                           image_size=64, patch_size=8)
        transformers.Dinov2Model(config).save_pretrained(f"{folder}/dinov2")
        transformers.BitImageProcessor(size={"shortest_edge": 72},
                                       crop_size={"height": 64, "width": 64}
                                       ).save_pretrained(f"{folder}/dinov2")
        models["hf:dinov2 (64 px, 4 blocks)"] = (
            {"model": f"hf:{folder}/dinov2"},
            lambda m, x: m(pixel_values=x).pooler_output)
    if importlib.util.find_spec("open_clip"):
        import open_clip
        from safetensors.torch import save_file

        os.makedirs(f"{folder}/clip", exist_ok=True)
        with open(f"{folder}/clip/open_clip_config.json", "w") as f:
            json.dump({"model_cfg": {
                "embed_dim": 64,
                "vision_cfg": {"image_size": 64, "layers": 4, "width": 64, "patch_size": 8,
                               "head_width": 32},
                "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16,
                             "heads": 1, "layers": 1}}}, f)
        clip = open_clip.create_model(f"local-dir:{folder}/clip", load_weights=False)
        save_file(clip.state_dict(), f"{folder}/clip/open_clip_model.safetensors")
        models["open_clip:local-dir (64 px, 4 blocks)"] = (
            {"model": f"open_clip:local-dir:{folder}/clip"}, lambda m, x: m(x))
    os.makedirs(f"{folder}/hub", exist_ok=True)
    with open(f"{folder}/hub/hubconf.py", "w") as f:
        f.write("import torchvision\ndependencies = ['torch']\n"
                "def resnet18(pretrained=False):\n"
                "    return torchvision.models.resnet18()\n")
    models["hub:resnet18 (torchvision inside, 224 px)"] = (
        {"model": f"hub:{folder}/hub:resnet18", "weights": None,
         "preprocess": {"size": 224, "crop": 224}}, lambda m, x: m(x), "large")
    return models


def library_loops(args):
    import tempfile

    from skclusterfit._base import step_threads
    from skclusterfit._validation import validate_input
    from skclusterfit.data._sources import make_source
    from skclusterfit.runtime._threads import torch_threads

    rng = np.random.default_rng(0)
    X_all = rng.random((max(args.n_samples, args.large_samples), 3, 224, 224), dtype=np.float32)
    batch = args.extract_batch_size
    print(header())
    gpu = f", {torch.cuda.get_device_name()}" if DEVICE.type == "cuda" else ""
    print(f"{args.n_samples} float images 3x224x224 ({args.large_samples} for the 224-px "
          f"models), extraction batch {batch}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {DEVICE}{gpu}, autocast {amp_dtype()}; "
          "the machine is shared with other users: the load average above is the load "
          "when it started")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for name, (kwargs, call, *size) in _library_models(folder).items():
            X = X_all[:args.large_samples if size else args.n_samples]
            extractor = FeatureExtractor(**kwargs, batch_size=batch, device=DEVICE).fit(X[:1])
            module, prep = extractor.network_.model, extractor.preprocess_
            # the count FeatureExtractor.transform runs with, by its own rule
            threads = step_threads(extractor.network_, make_source(X), batch, DEVICE, prep,
                                   training=False)
            dtype = amp_dtype()

            def bare(n_threads, module=module, prep=prep, call=call, X=X):
                out = []
                with torch.inference_mode(), torch_threads(n_threads), torch.autocast(
                        DEVICE.type, dtype=dtype, enabled=dtype is not None):
                    for start in range(0, len(X), batch):
                        x = torch.from_numpy(X[start:start + batch])
                        if DEVICE.type == "cuda":
                            x = x.pin_memory().to(DEVICE, non_blocking=True)
                        out.append(torch.flatten(call(module, prep(x)), 1).float())
                return torch.cat(out).cpu().numpy()

            # bf16 autocast on a GPU rounds both sides alike but not to float32's digits
            tolerance = 1e-4 if dtype is None else 5e-2
            np.testing.assert_allclose(extractor.transform(X[:4]), bare(threads)[:4],
                                       rtol=tolerance, atol=tolerance)
            runs = {"ours": lambda: extractor.transform(X),
                    "bare": lambda: bare(threads),
                    "bare, all threads": lambda: bare(torch.get_num_threads()),
                    # scikit-learn's checks of X (finite values...), which the bare loop skips
                    "input check": lambda: validate_input(extractor, X, reset=False)}
            seconds = {key: [] for key in runs}
            order = list(runs)
            for round_ in range(args.repeats):
                # each run takes each place in the round in turn: none always runs first
                for key in order[round_ % 4:] + order[:round_ % 4]:
                    start = time.perf_counter()
                    runs[key]()
                    seconds[key].append(time.perf_counter() - start)
            rate = {key: len(X) / np.median(values) for key, values in seconds.items()}
            ratios = [b / a for a, b in zip(seconds["ours"], seconds["bare"])]
            without_check = [b / (a - c) for a, b, c in
                             zip(seconds["ours"], seconds["bare"], seconds["input check"])]
            all_threads = [b / a for a, b in zip(seconds["ours"], seconds["bare, all threads"])]
            line = (f"| {name} | {len(X)} | {threads} | {rate['ours']:.1f} | "
                    f"{rate['bare']:.1f} | **{np.median(ratios):.3f}** (per round: "
                    f"{', '.join(f'{r:.2f}' for r in ratios)}) | "
                    f"{min(seconds['bare']) / min(seconds['ours']):.3f} | "
                    f"{np.median(seconds['input check']) / np.median(seconds['ours']):.1%} | "
                    f"{np.median(without_check):.3f} | "
                    f"{rate['bare, all threads']:.1f} | {np.median(all_threads):.3f} |")
            print(line, flush=True)
            results.append(line)
    print("\n| adapter | images | threads (both) | ours images/s | bare images/s | "
          "ours / bare, median of rounds | best of rounds | input check, share of ours | "
          "ours less the input check / bare | bare, all threads, images/s | "
          "ours / bare, all threads |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(results))
    print(f"load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=4096)
    parser.add_argument("--side", type=int, default=28)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--extract-batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--large-samples", type=int, default=16,
                        help="images for the 224-px models of --libraries")
    parser.add_argument("--libraries", action="store_true",
                        help="compare extraction through the model-library adapters instead")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)
    if args.libraries:
        return library_loops(args)
    gpu = f", {torch.cuda.get_device_name()}" if DEVICE.type == "cuda" else ""
    torch.manual_seed(0)
    X, y = make_images(args.n_samples, args.side, args.classes)
    model = SmallCNN(in_channels=1, num_classes=args.classes)
    print(
        f"{args.n_samples} images 1x{args.side}x{args.side} uint8, SmallCNN, "
        f"batch {args.batch_size} (extraction {args.extract_batch_size}), "
        f"{args.epochs} epochs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {DEVICE}{gpu}, autocast {amp_dtype()}"
    )
    extractor = fitted_extractor(model, X, args.extract_batch_size)
    runs = {
        "train ours": lambda: train_ours(model, X, y, args.epochs, args.batch_size),
        "train bare": lambda: train_bare(model, X, y, args.epochs, args.batch_size),
        "extract ours": lambda: extractor.transform(X),
        "extract bare": lambda: extract_bare(model, X, args.extract_batch_size),
    }
    images = {
        "train ours": args.n_samples * args.epochs,
        "train bare": args.n_samples * args.epochs,
        "extract ours": args.n_samples,
        "extract bare": args.n_samples,
    }
    # Same output from both extractors (the comparison is of equal work; to
    # the autocast dtype's precision on a GPU).
    tolerance = 1e-4 if amp_dtype() is None else 3e-2
    np.testing.assert_allclose(
        extractor.transform(X[:64]), extract_bare(model, X[:64], 64), rtol=tolerance,
        atol=tolerance,
    )
    # Untimed warm-up: the first forward/backward pass of a process builds
    # oneDNN kernels, which would otherwise be charged to whichever runs first.
    train_ours(model, X[:256], y[:256], 1, args.batch_size)
    train_bare(model, X[:256], y[:256], 1, args.batch_size)
    rates = {key: [] for key in runs}
    memory = {key: 0 for key in runs}
    for _ in range(args.repeats):
        for key, run in runs.items():
            with PeakMemory() as peak:
                start = time.perf_counter()
                run()
                seconds = time.perf_counter() - start
            rates[key].append(images[key] / seconds)
            memory[key] = max(memory[key], peak.above_base)
            print(f"  {key}: {rates[key][-1]:.0f} images/s", flush=True)
    median = {key: float(np.median(value)) for key, value in rates.items()}
    print("\n| loop | ours images/s | bare images/s | ours / bare | peak RSS above base (ours, bare) |")
    print("|---|---|---|---|---|")
    for task in ("train", "extract"):
        ours, bare = median[f"{task} ours"], median[f"{task} bare"]
        # The ratio is the median of per-round ratios: both loops of a round
        # ran back to back, under the same load from other processes.
        ratios = [a / b for a, b in zip(rates[f"{task} ours"], rates[f"{task} bare"])]
        print(
            f"| {task} | {ours:.0f} | {bare:.0f} | {float(np.median(ratios)):.3f} "
            f"(per round: {', '.join(f'{r:.2f}' for r in ratios)}) | "
            f"{memory[f'{task} ours'] / 2**20:.0f} MiB, "
            f"{memory[f'{task} bare'] / 2**20:.0f} MiB |"
        )
    print(f"process peak RSS: {peak_rss() / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

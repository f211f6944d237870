"""What the gallery's checked quantities are, over seeds and thread counts.

Every ``examples/**/plot_*.py`` ends its claims with ``assert`` statements on
quantities of its run (a spread of accuracies, a gain, a ratio of times).
Floating-point results move with the CPU (vector width, BLAS kernels), the
thread count (summation order) and the seed, and a few thousand SGD steps
amplify a last-bit difference into whole test images. So a threshold must
lie outside the variation of its quantity, not at one run's value. This
script measures that variation: it runs the chosen examples with each seed
(``SKCLUSTERFIT_EXAMPLE_SEED``) under ``python -O`` (asserts stripped, so a
run outside a threshold still reports its values) and prints one JSON line
per run with the quantities the example asserts on::

    OMP_NUM_THREADS=1 python benchmarks/example_spread.py --seeds 0 1 2 3 4
    OMP_NUM_THREADS=2 python benchmarks/example_spread.py plot_grid_search_k --seeds 0
    python benchmarks/example_spread.py --summarize benchmarks/results/example_spread/*.txt

Raw output: ``benchmarks/results/example_spread/``, with the command, the CPU
model and the thread count in each file's header. The thresholds the
examples use, and the spreads they were drawn from, are listed in
``docs/user_guide/time_and_hardware.rst``.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _conditions import ROOT, header  # noqa: E402


def _grid_search_k(ns):
    Ks = [int(k) for k in ns["Ks"]]
    mean, std = ns["mean"], ns["std"]
    i100 = Ks.index(100)
    return {
        "mean": [round(float(m), 2) for m in mean],
        "std": [round(float(s), 2) for s in std],
        "k10_minus_k100": round(float(mean[0] - mean[i100]), 2),
        "plateau_range": round(float(mean[i100:].max() - mean[i100:].min()), 2),
        "max_std": round(float(std.max()), 2),
        "spread": round(float(ns["spread"]), 2),
        "best_K": int(Ks[mean.argmax()]),
    }


def _label_noise(ns):
    ps = ns["noise_levels"]
    return {
        "n_pre": {str(p): round(v, 6) for p, v in zip(ps, ns["results"]["N_pre"])},
        "n_cf": {str(p): round(v, 6) for p, v in zip(ps, ns["results"]["N_cf"])},
        "gain": {str(p): round(float(g), 2) for p, g in ns["gain"].items()},
    }


def _cluster_gallery(ns):
    nmi, purity = ns["nmi"], ns["purity"]
    return {
        "nmi_teacher": round(float(sum(nmi["teacher features"]) / len(nmi["teacher features"])), 4),
        "nmi_pixels": round(float(sum(nmi["raw pixels"]) / len(nmi["raw pixels"])), 4),
        "purity_k50": round(float(purity(ns["y"], ns["labels"])), 4),
    }


def _feature_preprocessing(ns):
    results = ns["results"]
    return {
        "nmi": {k: round(float(v[0]), 4) for k, v in results.items()},
        "probe": {k: round(float(v[1]), 4) for k, v in results.items()},
        "teacher_probe": round(float(ns["pre"]), 4),
        "probe_spread": round(float(ns["spread"]), 2),
        "nmi_spread": round(float(ns["nmi_spread"]), 4),
        "whiten_lead": round(float(ns["whitened"]
                                   - max(results["raw"][0], results["L2"][0])), 4),
    }


def _swap_clusterer(ns):
    runs = ns["runs"]
    nmi = [runs[n]["nmi"] for n in runs]
    probe = [runs[n]["probe"] for n in runs]
    return {
        "nmi": [round(float(v), 4) for v in nmi],
        "probe": [round(float(v), 4) for v in probe],
        "teacher_probe": round(float(ns["pre"]), 4),
        "nmi_spread": round(float(max(nmi) - min(nmi)), 4),
        "probe_spread": round(float(max(probe) - min(probe)), 4),
        "weakest_minus_teacher": round(float(min(probe) - ns["pre"]), 4),
    }


def _frozen_pipeline(ns):
    return {
        "lead": [round(float(v), 2) for v in ns["lead"]],
        "scores": {k: [round(float(v), 4) for v in s.mean(1)] for k, s in ns["scores"].items()},
    }


def _layerwise_probe(ns):
    layers = list(ns["layers"])
    return {
        "teacher": [round(float(ns["teacher_acc"][lay]), 4) for lay in layers],
        "student": [round(float(ns["student_acc"][lay]), 4) for lay in layers],
        "blocks_diff": [round(float(d), 4) for d in ns["blocks_diff"]],
    }


def _rotnet_teacher(ns):
    return {k: round(float(v), 4) for k, v in ns["scores"].items()}


def _video(ns):
    return {
        **{k: {p: round(float(v), 4) for p, v in s.items()} for k, s in ns["scores"].items()},
        "teacher_fit_noisy": round(float(ns["teacher"].score(ns["X_train"], ns["y_noisy"])), 4),
    }


def _large_k(ns):
    sweep, results = ns["sweep"], ns["results"]
    times = [t for t, _ in results.values()]
    inertias = [i for _, i in results.values()]
    return {
        "ann_over_exact_time": [round(a[0] / e[0], 3) for a, e in zip(sweep["ann"], sweep["exact"])],
        "ann_over_exact_inertia": [round(a[1] / e[1], 5)
                                   for a, e in zip(sweep["ann"], sweep["exact"])],
        "seconds_k3000": [round(t, 2) for t in times],
        "inertia_k3000": [round(i, 6) for i in inertias],
        "init_over_all_time": round(times[1] / times[0], 3),
        "init_over_all_inertia": round(inertias[1] / inertias[0], 5),
    }


def _resume_and_save(ns):
    return {"saved_epochs": int(ns["saved_epochs"]), "same": bool(ns["same"])}


def _torchvision_teacher(ns):
    return {
        "check": {k: round(float(v), 4) for k, v in ns["check"].items()},
        "by_layer": {k: round(float(v), 4) for k, v in ns["by_layer"].items()},
        "student_probe": round(float(ns["student_probe"]), 4),
    }


def _image_folder_cli(ns):
    return {"probes": {str(k): round(float(v), 4) if isinstance(v, float) else v
                       for k, v in ns["probes"].items()}}


def _torchrun(ns):
    return {
        "same_labels": round(float(ns["same"]), 4),
        "accuracy": {k.replace("\n", " "): round(float(v), 4)
                     for k, v in ns["accuracy"].items()},
    }


def _timm_vit_teacher(ns):
    return {"teacher_probe": round(float(ns["pre"]), 4),
            "student_probe": round(float(ns["post"]), 4),
            "blocks": {k: round(float(v), 4) for k, v in ns["by_block"].items()}}


def _long_tail_curation(ns):
    return {"scores": {name: {third: round(float(v), 4) for third, v in by_third.items()}
                       for name, by_third in ns["scores"].items()},
            "curated_per_digit": [int(k) for k in ns["kept"]]}


EXTRACT = {
    "plot_grid_search_k": _grid_search_k,
    "plot_frozen_pipeline": _frozen_pipeline,
    "plot_label_noise": _label_noise,
    "plot_layerwise_probe": _layerwise_probe,
    "plot_rotnet_teacher": _rotnet_teacher,
    "plot_video_clusterfit": _video,
    "plot_cluster_gallery": _cluster_gallery,
    "plot_feature_preprocessing": _feature_preprocessing,
    "plot_swap_clusterer": _swap_clusterer,
    "plot_torchrun": _torchrun,
    "plot_large_k": _large_k,
    "plot_resume_and_save": _resume_and_save,
    "plot_torchvision_teacher": _torchvision_teacher,
    "plot_image_folder_cli": _image_folder_cli,
    "plot_timm_vit_teacher": _timm_vit_teacher,
    "plot_long_tail_curation": _long_tail_curation,
}


def example_path(name):
    (path,) = glob.glob(str(ROOT / "examples" / "*" / f"{name}.py"))
    return path


def run_one(name):
    """Child process: run one example (asserts stripped) and print its quantities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.show = lambda *args, **kwargs: plt.close("all")
    path = example_path(name)
    os.chdir(os.path.dirname(path))  # as sphinx-gallery runs it
    namespace = {"__name__": "__main__", "__file__": path}
    with open(path) as file:
        code = compile(file.read(), path, "exec")
    exec(code, namespace)
    import torch

    print("RESULT " + json.dumps({"torch_threads": torch.get_num_threads(),
                                  **EXTRACT[name](namespace)}), flush=True)


def _flatten(record, prefix=""):
    """(name, number) pairs of a result record, nested keys joined by '/'."""
    items = record.items() if isinstance(record, dict) else enumerate(record)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, (dict, list)):
            yield from _flatten(value, name + "/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield name, value


def summarize(paths):
    """Lowest and highest value of every quantity, per example and thread count."""
    ranges = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if "error" in record:
                print(f"{path}: {record['example']} seed {record['seed']} failed", file=sys.stderr)
                continue
            key = (record.pop("example"), record.pop("torch_threads"))
            seed = record.pop("seed")
            record.pop("wall_seconds")
            entry = ranges.setdefault(key, {"seeds": set(), "values": {}})
            entry["seeds"].add(seed)
            for name, value in _flatten(record):
                entry["values"].setdefault(name, []).append(value)
    for (example, threads), entry in sorted(ranges.items()):
        seeds = ",".join(map(str, sorted(entry["seeds"])))
        print(f"{example}, {threads} torch thread(s), seeds {seeds}:")
        for name, values in entry["values"].items():
            print(f"    {name}: {min(values):g} to {max(values):g}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("examples", nargs="*", default=list(EXTRACT),
                        help="example names (default: all executed ones)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--summarize", nargs="+", metavar="FILE",
                        help="print the range of every quantity in these raw files; run nothing")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return
    if args.one:
        run_one(args.one)
        return
    print("\n".join("# " + line for line in header().splitlines()), flush=True)
    for name in args.examples:
        for seed in args.seeds:
            env = dict(os.environ, SKCLUSTERFIT_EXAMPLE_SEED=str(seed), MPLBACKEND="Agg",
                       PYTHONPATH=os.pathsep.join(
                           [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(
                               os.pathsep) if p]))
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-O", __file__, "--one", name], env=env,
                capture_output=True, text=True,
            )
            seconds = time.perf_counter() - start
            result = [line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode or not result:
                record = {"error": (proc.stdout + proc.stderr)[-2000:]}
            else:
                record = json.loads(result[0])
            print(json.dumps({"example": name, "seed": seed,
                              "wall_seconds": round(seconds, 1), **record}), flush=True)


if __name__ == "__main__":
    main()

"""The digits demonstration behind ``skclusterfit demo`` (and ``python -m skclusterfit``).

Trains a teacher on noisy labels, applies ClusterFit to its features, and
prints the linear-probe accuracy of both on clean held-out labels.
"""

import sys
import time

import torch
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

from .. import ClusterFit, NetClassifier
from ..data._datasets import add_label_noise, load_digits_images, load_mnist_images
from ..runtime._torch_utils import resolve_device
from ..evaluation import linear_probe

_LOADERS = {"digits": load_digits_images, "mnist": load_mnist_images}


def run(args, out=sys.stdout):
    """Run the demonstration for parsed ``args``; return a dict of probe accuracies."""
    X, y = _LOADERS[args.dataset]()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=args.random_state
    )
    y_noisy = add_label_noise(y_train, args.noise, random_state=args.random_state)
    timings = {}

    start = time.perf_counter()
    teacher = NetClassifier(
        max_epochs=args.teacher_epochs, device=args.device, random_state=args.random_state,
        verbose=max(args.verbose - 1, 0),
    ).fit(X_train, y_noisy)
    timings["teacher"] = time.perf_counter() - start

    start = time.perf_counter()
    cf = ClusterFit(
        teacher=FrozenEstimator(teacher),
        K=args.K,
        student=NetClassifier(max_epochs=args.student_epochs),
        device=args.device,
        random_state=args.random_state,
        verbose=args.verbose,
    ).fit(X_train)
    timings["clusterfit"] = time.perf_counter() - start

    results = {
        "N_pre": linear_probe(X_train, y_train, X_test, y_test, transformer=teacher),
        "N_cf": linear_probe(X_train, y_train, X_test, y_test, transformer=cf),
    }
    print(
        f"dataset={args.dataset} ({len(X_train)} train / {len(X_test)} test), "
        f"label noise p={args.noise}, K={args.K}, seed={args.random_state}",
        file=out,
    )
    # CPU float32 kernels split their sums by thread, so the last digits of the
    # figures depend on the thread count: print it beside them.
    print(f"device={_device_name(args.device)}, torch threads={torch.get_num_threads()}",
          file=out)
    print(f"{'network':<10}{'linear-probe accuracy':>24}{'train time (s)':>16}", file=out)
    print(f"{'N_pre':<10}{results['N_pre']:>24.4f}{timings['teacher']:>16.1f}", file=out)
    print(f"{'N_cf':<10}{results['N_cf']:>24.4f}{timings['clusterfit']:>16.1f}", file=out)
    gain = results["N_cf"] - results["N_pre"]
    print(f"ClusterFit gain: {gain:+.4f}", file=out)
    return results


def _device_name(device):
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(resolved)})"
    return resolved.type

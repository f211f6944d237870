"""ClusterFit on data that looks like the web (issue 26): structured noise, long tails.

Two plans, each a grid of teachers ``NetClassifier()`` (every default) trained
on noisy labels, and of networks built from them, judged by the linear probe
and the kNN probe (k=20, T=0.07) on clean labels of held-out images:

- ``structured``: labels flipped, at rate p in {0.25, 0.5, 0.75}, either to
  a uniformly drawn other class (``uniform``, the paper's noise and
  ``noisy_teacher_study.py``'s) or always to the class a clean model confuses
  each class with most (``structured``: the largest off-diagonal entry of the
  confusion matrix of a logistic regression on the pixels, 5-fold
  cross-validated on the clean training labels; the map is in every row).
  Networks: N_pre (the teacher), N_cf (``ClusterFit`` with every default),
  Distill (``Distillation``, T=4, alpha=0.5, as ``paper_baselines.py``) and
  N_pre 2x (the teacher trained for teacher + student epochs). Each teacher
  also gets ``evaluation.noise_fit`` on the held-out images with labels
  corrupted the same way (another seed), to check ``likely_to_help``.
  Datasets as ``noisy_teacher_study.py``: digits 8x8 and 16x16, MNIST-5k at
  14x14 and 28x28, 70/30 stratified splits.
- ``longtail``: the training split subsampled to a Zipf profile (class sizes
  n_max * ratio^(-r/9) for the classes in a seeded order, r = 0..9; ratio 10
  or 100 head to tail), teacher on labels with uniform noise p=0.5. Networks:
  N_pre, N_cf, N_cf with the class-balanced sampler of the student
  (``sampler="balanced"``) and N_cf with ``curation=HierarchicalCuration()``.
  The probes are fitted on the long-tailed training rows (clean labels) and
  scored on the balanced held-out split, per class; the row keeps the mean
  accuracy of the head (3 largest classes), middle (4) and tail (3 smallest)
  thirds.

Every run is one CSV row appended as it ends (``_runlog.RunLog``: commit, CPU
seconds, load), so a cut-short grid resumes. Usage::

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/web_data_study.py \\
        --plan structured --n-jobs 2
    python benchmarks/web_data_study.py --report    # tables only
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _runlog import RunLog, cpu_seconds  # noqa: E402
from noisy_teacher_study import DATASETS, commit, defaults_tag, load_dataset  # noqa: E402

N_CLASSES = 10
STRUCTURED_NETWORKS = ["N_pre", "N_cf", "Distill", "N_pre 2x"]
LONGTAIL_NETWORKS = ["N_pre", "N_cf", "N_cf balanced", "N_cf curated"]
PLANS = {
    "structured": {"datasets": DATASETS, "noise": [0.25, 0.5, 0.75],
                   "kinds": ["uniform", "structured"], "seeds": [0, 1, 2]},
    "longtail": {"datasets": ["mnist14"], "noise": [0.5], "kinds": ["zipf10", "zipf100"],
                 "seeds": [0, 1, 2]},
}
FIELDS = [
    "plan", "dataset", "kind", "p", "seed", "network", "n_train", "linear", "knn",
    "linear_head", "linear_middle", "linear_tail", "knn_head", "knn_middle", "knn_tail",
    "train_fit", "held_out_fit", "memorisation", "likely_to_help", "fit_clean",
    "curated_rows", "curation_s", "confusion_map", "commit",
]
KEY = ["plan", "dataset", "kind", "p", "seed", "network"]
HEAD, TAIL = 3, 3  # classes in the head and tail thirds (the middle has the rest)


def confusion_map(X_train, y_train, seed):
    """Each class's most confused other class, by a clean pixel logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pixels = X_train.reshape(len(X_train), -1).astype(np.float32) / 255.0
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=300))
    predicted = cross_val_predict(model, pixels, y_train, cv=5)
    confusion = confusion_matrix(y_train, predicted, labels=np.arange(N_CLASSES))
    np.fill_diagonal(confusion, -1)
    return confusion.argmax(1)


def structured_noise(y, p, mapping, random_state):
    """``round(p * n)`` labels, chosen at random, replaced by ``mapping[label]``."""
    rng = np.random.RandomState(random_state)
    chosen = rng.choice(len(y), size=int(round(p * len(y))), replace=False)
    y_noisy = np.array(y, copy=True)
    y_noisy[chosen] = mapping[y[chosen]]
    return y_noisy


def noisy_labels(kind, y, p, seed, mapping):
    from skclusterfit.data import add_label_noise

    if kind == "structured":
        return structured_noise(y, p, mapping, seed)
    return add_label_noise(y, p, random_state=seed)


def zipf_rows(y, ratio, seed):
    """Rows of ``y`` kept for a Zipf profile: class of rank r keeps n_max * ratio^(-r/9)."""
    rng = np.random.RandomState(seed)
    order = rng.permutation(N_CLASSES)  # which digit is the head, which the tail
    n_max = np.bincount(y).min()
    keep = []
    for rank, c in enumerate(order):
        size = max(1, int(round(n_max * ratio ** (-rank / (N_CLASSES - 1)))))
        keep.append(rng.choice(np.flatnonzero(y == c), size=size, replace=False))
    return np.sort(np.concatenate(keep)), order


def probes(model, X_train, y_train, X_test, y_test, order=None):
    """Linear and kNN probes; with ``order`` (classes, largest first) also by thirds."""
    from skclusterfit.evaluation import knn_probe, linear_probe

    train, test = model.transform(X_train), model.transform(X_test)
    out = {"linear": linear_probe(train, y_train, test, y_test),
           "knn": knn_probe(train, y_train, test, y_test, k=min(20, len(train)),
                            temperature=0.07)}
    if order is not None:
        thirds = {"head": order[:HEAD], "middle": order[HEAD:-TAIL], "tail": order[-TAIL:]}
        for name, classes in thirds.items():
            rows = np.isin(y_test, classes)
            # The same probe refitted (deterministic) and scored on the third's rows.
            out[f"linear_{name}"] = linear_probe(train, y_train, test[rows], y_test[rows])
            out[f"knn_{name}"] = knn_probe(train, y_train, test[rows], y_test[rows],
                                           k=min(20, len(train)), temperature=0.07)
    return out


def teacher_for(dataset, kind, p, seed, X_train, y_noisy, cache, epochs=None):
    """A NetClassifier() on the noisy labels, from ``cache`` when trained before."""
    from skclusterfit import NetClassifier, load

    tag = "" if epochs is None else f"-e{epochs}"
    path = os.path.join(cache, f"teacher-{dataset}-{kind}-p{p}-s{seed}{tag}-"
                               f"{defaults_tag()}.skcf")
    if os.path.exists(path):
        return load(path)
    params = {} if epochs is None else {"max_epochs": epochs}
    teacher = NetClassifier(device="cpu", random_state=seed, **params).fit(X_train, y_noisy)
    os.makedirs(cache, exist_ok=True)
    teacher.save(path)
    return teacher


def job(plan, dataset, kind, p, seed, out, cache, only=None):
    """Every network of one teacher (or those of ``only``); each row written as it ends."""
    import torch

    torch.set_num_threads(1)
    from sklearn.frozen import FrozenEstimator

    from skclusterfit import ClusterFit, Distillation, NetClassifier
    from skclusterfit.evaluation import noise_fit

    log = RunLog(out, FIELDS, KEY)
    networks = STRUCTURED_NETWORKS if plan == "structured" else LONGTAIL_NETWORKS
    key = {"plan": plan, "dataset": dataset, "kind": kind, "p": p, "seed": seed}
    todo = [n for n in networks if not log.done(**key, network=n)
            and (only is None or n in only or n == "N_pre")]
    if not todo:
        return 0
    X_train, X_test, y_train, y_test = load_dataset(dataset, seed)
    mapping, order, extra = None, None, {}
    if plan == "structured":
        if kind == "structured":
            mapping = confusion_map(X_train, y_train, seed)
            extra["confusion_map"] = "".join(map(str, mapping))
    else:
        rows, order = zipf_rows(y_train, float(kind[4:]), seed)
        X_train, y_train = X_train[rows], y_train[rows]
        kind_noise = "uniform"
    y_noisy = noisy_labels(kind if plan == "structured" else kind_noise, y_train, p, seed,
                           mapping)
    code = commit()
    start_cpu, start = cpu_seconds(), time.perf_counter()
    teacher = teacher_for(dataset, kind, p, seed, X_train, y_noisy, cache)
    frozen = FrozenEstimator(teacher)

    def write(network, model, start_cpu, start, **more):
        row = {**key, "network": network, "n_train": len(X_train),
               **probes(model, X_train, y_train, X_test, y_test, order), **extra, **more,
               "commit": code, "cpu_s": cpu_seconds() - start_cpu,
               "wall_s": time.perf_counter() - start, "load1": os.getloadavg()[0]}
        row = {k: round(float(v), 4) if isinstance(v, (float, np.floating)) else v
               for k, v in row.items()}
        log.write(row)
        print(f"{plan} {dataset} {kind} p={p} seed={seed} {network:14} "
              f"linear {row['linear']:.4f} knn {row['knn']:.4f} "
              f"cpu {row['cpu_s']:.0f}s load {row['load1']:.1f}", flush=True)

    if "N_pre" in todo:
        y_test_noisy = noisy_labels(kind if plan == "structured" else kind_noise, y_test, p,
                                    seed + 1000, mapping)
        fit = noise_fit(teacher, X_train, y_noisy, X_test, y_test_noisy)
        write("N_pre", teacher, start_cpu, start, train_fit=fit.train_fit,
              held_out_fit=fit.held_out_fit, memorisation=fit.memorisation,
              likely_to_help=int(fit.likely_to_help),
              fit_clean=float(np.mean(teacher.predict(X_train) == y_train)))
    for network in todo:
        start_cpu, start = cpu_seconds(), time.perf_counter()
        more = {}
        if network == "N_pre":
            continue
        if network == "N_cf":
            model = ClusterFit(frozen, device="cpu", random_state=seed).fit(X_train)
        elif network == "N_cf balanced":
            model = ClusterFit(frozen, device="cpu", random_state=seed).set_params(
                student__sampler="balanced").fit(X_train)
        elif network == "N_cf curated":
            from skclusterfit.cluster import HierarchicalCuration

            model = ClusterFit(frozen, device="cpu", random_state=seed,
                               curation=HierarchicalCuration()).fit(X_train)
            more = {"curated_rows": len(model.curation_.sample_indices_),
                    "curation_s": model.stage_seconds_["curation"]}
        elif network == "Distill":
            model = Distillation(frozen, temperature=4.0, alpha=0.5, device="cpu",
                                 random_state=seed).fit(X_train, y_noisy)
        elif network == "N_pre 2x":
            epochs = 2 * NetClassifier().max_epochs  # teacher + student epochs
            model = teacher_for(dataset, kind, p, seed, X_train, y_noisy, cache,
                                epochs=epochs)
        write(network, model, start_cpu, start, **more)
    return len(todo)


def plan_jobs(plan, args):
    spec = {name: getattr(args, name) or value for name, value in PLANS[plan].items()}
    # Dataset-major, cheapest first: a grid cut short has whole datasets, all seeds.
    return [(plan, d, kind, p, seed) for d in spec["datasets"] for seed in spec["seeds"]
            for p in spec["noise"] for kind in spec["kinds"]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", choices=sorted(PLANS), default="structured")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS)
    parser.add_argument("--noise", type=float, nargs="+")
    parser.add_argument("--kinds", nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--networks", nargs="+",
                        choices=sorted(set(STRUCTURED_NETWORKS + LONGTAIL_NETWORKS)),
                        help="run only these networks (N_pre always runs first)")
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--out", default=None,
                        help="CSV of runs (default benchmarks/results/webdata_<plan>.csv)")
    parser.add_argument("--cache", default="benchmarks/.study_cache/webdata",
                        help="trained teachers, reused by a rerun")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: print the tables from the CSV files")
    args = parser.parse_args(argv)
    if args.report:
        from web_data_report import report

        report("benchmarks/results")
        return 0
    from joblib import Parallel, delayed

    out = args.out or f"benchmarks/results/webdata_{args.plan}.csv"
    jobs = plan_jobs(args.plan, args)
    print(f"{len(jobs)} jobs, plan {args.plan}, load {os.getloadavg()}", flush=True)
    for _ in Parallel(n_jobs=args.n_jobs, return_as="generator_unordered")(
        delayed(job)(*j, out, args.cache, args.networks) for j in jobs
    ):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

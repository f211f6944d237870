"""ANN inertia when every cluster has its own mode (the hard case for a centroid graph) vs K/10 modes."""
import sys, time, numpy as np
sys.path.insert(0, __import__('os').path.dirname(__file__))
from kmeans import make_data, run_ours, run_sklearn, inertia_of
for n, d, K, modes in [(50_000, 128, 1000, 1000), (50_000, 128, 1000, 100)]:
    X = make_data(n, d, modes)
    init = X[np.sort(np.random.default_rng(1).choice(n, K, replace=False))].copy()
    res = {}
    for name, f in [("sklearn", lambda: run_sklearn(X, init, 10)), ("ann", lambda: run_ours(X, init, 10, "ann"))]:
        t = time.perf_counter(); c, l = f(); res[name] = (time.perf_counter() - t, inertia_of(X, c, l))
    print(f"{n}x{d} K={K} modes={modes}: sklearn {res['sklearn'][0]:.1f}s ann {res['ann'][0]:.1f}s inertia ann/sklearn {res['ann'][1]/res['sklearn'][1]:.4f}", flush=True)

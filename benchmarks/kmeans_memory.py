"""Peak memory that skclusterfit's KMeans adds on top of the features it clusters.

For docs/user_guide/troubleshooting.rst ("Out of memory"). With
``normalize=True`` (the default) the L2-normalised rows are a float32 copy of
the features; without it the features are clustered in place. Run each
setting in its own process (ru_maxrss is a process-wide high-water mark):

    OMP_NUM_THREADS=1 python benchmarks/kmeans_memory.py 1
    OMP_NUM_THREADS=1 python benchmarks/kmeans_memory.py 0
"""

import os
import resource
import sys

import numpy as np

from skclusterfit.cluster import KMeans

n, d = 400_000, 256
X = np.random.RandomState(0).standard_normal((n, d)).astype(np.float32)
KMeans(n_clusters=10, n_iter=1, random_state=0).fit(X[:2000])  # imports, compiled code
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(f"{n} x {d} float32 features: {X.nbytes / 2**30:.2f} GiB; load average "
      f"{os.getloadavg()[0]:.2f}; process peak before fit {base:.2f} GiB")
normalize = sys.argv[1] == "1"
KMeans(n_clusters=100, n_iter=2, init="random", normalize=normalize, random_state=0).fit(X)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(f"normalize={normalize}: process peak after fit {peak:.2f} GiB, +{peak - base:.2f} GiB "
      f"= {(peak - base) / (X.nbytes / 2**30):.2f} x the features")

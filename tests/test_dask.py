"""A grid search over K on a dask.distributed cluster (2 worker processes).

joblib's dask backend sends each (K, fold) fit to a worker; ``memory=`` on
storage both workers see shares the teacher features between them.
"""

import glob
import os

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier

distributed = pytest.importorskip("dask.distributed")

pytestmark = pytest.mark.slow


def search(memory):
    pipe = Pipeline(
        [
            ("cf", ClusterFit(
                teacher=FeatureExtractor("cnn", random_state=0),
                K=10,
                student=NetClassifier(max_epochs=3),
                memory=memory,
                random_state=0,
            )),
            ("clf", LogisticRegression(max_iter=1000)),
        ]
    )
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    return GridSearchCV(pipe, {"cf__K": [5, 20, 60]}, cv=cv, n_jobs=-1)


def test_grid_search_on_a_dask_cluster_matches_the_sequential_search(digits_images, tmp_path):
    X, y = digits_images
    X, y = X[:900], y[:900]
    sequential = search(memory=None).set_params(n_jobs=None).fit(X, y)

    shared = str(tmp_path / "features")  # storage every worker sees
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"},
    ) as cluster, distributed.Client(cluster) as client:
        with joblib.parallel_backend("dask"):
            on_dask = search(memory=shared).fit(X, y)
        workers = client.run(os.getpid)
    assert len(set(workers.values())) == 2 and os.getpid() not in workers.values()

    assert on_dask.best_params_ == sequential.best_params_
    np.testing.assert_allclose(
        on_dask.cv_results_["mean_test_score"], sequential.cv_results_["mean_test_score"],
        atol=0.02,
    )
    # The workers filled one cache: teacher features once per training fold and
    # once for the refit on all data, not once per (K, fold).
    entries = glob.glob(os.path.join(shared, "joblib", "**", "output.pkl"), recursive=True)
    assert len(entries) == 3 + 1, entries

"""scikit-learn's estimator checks over every public estimator, with fast settings."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
from skclusterfit.cluster import KMeans


def fast_estimators():
    return [
        KMeans(n_clusters=3, random_state=0),
        FeatureExtractor("mlp", random_state=0),
        NetClassifier(max_epochs=20, lr=0.1, random_state=0),
        ClusterFit(
            teacher=FeatureExtractor("mlp", random_state=0),
            K=3,
            student=NetClassifier(max_epochs=2),
            random_state=0,
        ),
        # An unseeded teacher that ClusterFit builds: its random_state seeds it.
        ClusterFit(
            teacher=FeatureExtractor("mlp"),
            K=3,
            student=NetClassifier(max_epochs=2),
            random_state=0,
        ),
        # RotNet is not here: it takes images only (rotations of a vector mean
        # nothing) and every scikit-learn check feeds 2-D vectors; its
        # scikit-learn behaviour is tested in test_experiments.py.
    ]


# Checks that cannot pass, with the reason.
_BATCH_SIZE_DEPENDENT = (
    "float32 convolutions and matrix products give results that depend on the "
    "batch's size (BLAS/oneDNN blocking): transforming one sample at a time "
    "differs from the whole batch by float32 rounding, measured 6e-7 to 1e-6 on "
    "the check's data (seeds 0-4, 1 and 2 threads) and up to 2.4e-6 in review, "
    "above the check's atol=1e-7."
)
EXPECTED_FAILED_CHECKS = {
    name: {"check_methods_subset_invariance": _BATCH_SIZE_DEPENDENT}
    for name in ("NetClassifier", "FeatureExtractor", "ClusterFit")
}


@parametrize_with_checks(
    fast_estimators(),
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS.get(type(est).__name__, {}),
)
def test_sklearn_compatible(estimator, check):
    check(estimator)

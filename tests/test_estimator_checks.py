"""scikit-learn's estimator checks over every public estimator, with fast settings."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skclusterfit import (
    ClusterFit,
    ConcatTeachers,
    Distillation,
    FeatureExtractor,
    NetClassifier,
)
from skclusterfit.cluster import (
    HierarchicalCuration,
    KMeans,
    PerLabelKMeans,
    PrototypeClusterer,
)


def fast_estimators():
    return [
        KMeans(n_clusters=3, random_state=0),
        PrototypeClusterer(),
        PerLabelKMeans(n_clusters=4, random_state=0),
        HierarchicalCuration(n_clusters=(3, 2), random_state=0),
        FeatureExtractor("mlp", random_state=0),
        NetClassifier(max_epochs=20, random_state=0),
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
        Distillation(
            teacher=FeatureExtractor("mlp", random_state=0),
            student=NetClassifier(max_epochs=2),
            random_state=0,
        ),
        ConcatTeachers(
            [FeatureExtractor("mlp", random_state=0), FeatureExtractor("mlp", random_state=1)]
        ),
    ]


# Checks that cannot pass, with the reason.
_FITS_WITHOUT_LABELS = (
    "check_clustering fits without y, but this clusterer's clusters are defined "
    "by labels (it is tagged target_tags.required, so the other checks pass y)."
)
_FEWER_CLUSTERS_THAN_LABELS = (
    "the check sets n_clusters to 1 or 2 on data with 3 or 4 labels; "
    "PerLabelKMeans needs at least one cluster per label and says so."
)
# check_methods_subset_invariance passes for the networks (NetClassifier,
# FeatureExtractor, ClusterFit, Distillation, ConcatTeachers): it was expected
# to fail by float32 rounding of batch-size dependent kernels, and passed in
# every run since; it now runs as a plain check.
EXPECTED_FAILED_CHECKS = {
    "PrototypeClusterer": {"check_clustering": _FITS_WITHOUT_LABELS},
    "PerLabelKMeans": {
        "check_clustering": _FITS_WITHOUT_LABELS,
        **{
            check: _FEWER_CLUSTERS_THAN_LABELS
            for check in (
                "check_dont_overwrite_parameters",
                "check_methods_sample_order_invariance",
                "check_methods_subset_invariance",
                "check_fit2d_1feature",
                "check_fit2d_predict1d",
            )
        },
    },
}
EXPECTED_FAILED_CHECKS["NetClassifier"] = {
    "check_sample_weight_equivalence_on_dense_data": (
        "sample_weight draws each epoch's rows in proportion to the weights (a random "
        "draw): a row of weight 2 gives the same expected loss as the row repeated, "
        "not the same network."
    ),
}


@parametrize_with_checks(
    fast_estimators(),
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS.get(type(est).__name__, {}),
)
def test_sklearn_compatible(estimator, check):
    check(estimator)

"""
ClusterFit in a Pipeline, and a grid search over K
==================================================

The shortest useful program with skclusterfit: ClusterFit as the feature step
of a scikit-learn :class:`~sklearn.pipeline.Pipeline`, a logistic regression
on top, and :class:`~sklearn.model_selection.GridSearchCV` choosing the
number of clusters ``K``.

The teacher is a small CNN trained on digits whose labels are 80% wrong,
a stand-in for the weak supervision (hashtags, noisy tags) of the paper.
ClusterFit never trains the teacher, so it enters frozen.
"""

# %%
# The teacher, trained once on noisy labels.
import os
from tempfile import mkdtemp

import matplotlib.pyplot as plt
import numpy as np
from joblib import Memory
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline

from skclusterfit import ClusterFit, NetClassifier
from skclusterfit.data import add_label_noise, load_digits_images

# Every random step of this page is seeded with ``seed``; the slow tests rerun
# the page with another one (tests/test_examples.py) so that its claims are
# not one lucky draw.
seed = int(os.environ.get("SKCLUSTERFIT_EXAMPLE_SEED", "0"))

X, y = load_digits_images()
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=seed
)
y_noisy = add_label_noise(y_train, 0.8, random_state=seed)
teacher = NetClassifier(max_epochs=40, random_state=seed).fit(X_train, y_noisy)

# %%
# The pipeline. ``memory`` caches the teacher's features: they do not depend
# on ``K``, so the grid search extracts them once per fold, not once per
# candidate. The student trains for 15 epochs to keep this page quick.
pipe = Pipeline(
    [
        (
            "cf",
            ClusterFit(
                teacher=FrozenEstimator(teacher),
                student=NetClassifier(max_epochs=15),
                memory=Memory(mkdtemp(), verbose=0),
                random_state=seed,
            ),
        ),
        ("clf", LogisticRegression(max_iter=2000)),
    ]
)

# %%
# The search: the score of each candidate is the accuracy of the logistic
# regression on the held-out fold, with clean labels. That is the linear
# probe of the paper, inside cross-validation.
search = GridSearchCV(pipe, {"cf__K": [10, 30, 100, 300]}, cv=3)
search.fit(X_train, y_train)
Ks = np.array(search.cv_results_["param_cf__K"], dtype=int)
mean = 100 * search.cv_results_["mean_test_score"]
std = 100 * search.cv_results_["std_test_score"]
for K, m, s in zip(Ks, mean, std):
    print(f"K={K:>3}: 3-fold accuracy {m:.1f} +- {s:.1f} %")
print("best K:", search.best_params_["cf__K"])
print(f"test accuracy of the refitted pipeline: {search.score(X_test, y_test):.3f}")

# %%
# The teacher's own features, probed the same way, are the baseline
# ``N_pre``.
baseline = Pipeline(
    [("teacher", FrozenEstimator(teacher)), ("clf", LogisticRegression(max_iter=2000))]
)
baseline_scores = GridSearchCV(baseline, {"clf__C": [1.0]}, cv=3).fit(X_train, y_train)
pre_mean = baseline_scores.cv_results_["mean_test_score"][0]

# %%
# Accuracy against ``K``, with one standard deviation over the three folds.

fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
ax.errorbar(Ks, mean, yerr=std, fmt="o-", capsize=4, label="ClusterFit student")
ax.axhline(100 * pre_mean, color="tab:red", linestyle="--", label="teacher (80% noisy labels)")
ax.axvline(10, color="gray", linestyle=":", linewidth=1)
ax.annotate("number of classes", (10, ax.get_ylim()[0]), xytext=(4, 4),
            textcoords="offset points", color="gray")
ax.set_xscale("log")
ax.set_xticks(Ks, [str(k) for k in Ks])
ax.minorticks_off()
ax.set(xlabel="K (clusters)", ylabel="3-fold CV accuracy (%)",
       title="Linear-probe accuracy against the number of clusters")
ax.legend(loc="lower right")
ax.grid(alpha=0.3)
plt.show()

# %%
# What the search found. Accuracy rises by a few points from ``K`` = 10
# (the number of classes) to ``K`` = 100 and then levels off: from 100 on,
# the means are closer to each other than the folds' standard deviation, so
# 100 and 300 are tied, and the whole curve spans a few points (this run's
# figures are printed below). That is the paper's observation -- past a minimum of
# several clusters per class, accuracy depends little on ``K`` -- and the
# reason its advice of about ten times the number of classes (``K="auto"``
# for a classifier teacher) is a safe default: it leaves each class several
# clusters, so a class that the teacher's features split is not merged with
# another, and more clusters buy little.
i100 = list(Ks).index(100)
rise = mean[i100] - mean[0]
spread = mean.max() - mean.min()
plateau = mean[i100:]
print(f"best mean: K={Ks[mean.argmax()]}; from K=10 to K=100 {rise:+.1f} points; "
      f"from K=100 on the means span {plateau.max() - plateau.min():.1f} points, "
      f"largest fold standard deviation {std.max():.1f}; whole curve {spread:.1f} points")
# The claims above, checked on this run. Each bound lies outside what seeds 0
# to 4 gave with one torch thread (benchmarks/example_spread.py;
# raw output in benchmarks/results/example_spread/): a rise of 2.6 to 3.0
# points, a plateau of 0.2 to 0.7 points against a largest standard deviation
# of 1.0 to 1.7, a whole curve of 2.7 to 3.7 points.
assert 1.5 <= rise <= 4.5, "a few points from K = 10 to K = 100"
assert plateau.max() - plateau.min() <= std.max(), "from K = 100 on, within fold noise"
assert spread <= 5.0, "the whole curve should span a few points"

# %%
# The refitted best pipeline is an ordinary scikit-learn estimator: it
# predicts, pickles and clones like any other. See
# :ref:`sphx_glr_auto_examples_getting_started_plot_frozen_pipeline.py` for
# fitting ClusterFit once on unlabelled data and reusing it.
print("predicted:", search.best_estimator_.predict(X_test[:10]))
print("true:     ", y_test[:10])

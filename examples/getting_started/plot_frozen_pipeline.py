"""
Fit once on unlabelled images, reuse everywhere with FrozenEstimator
====================================================================

ClusterFit needs no labels: it can be fitted once on a large pool of
unlabelled images, and its features then serve any number of small labelled
tasks. Wrapping the fitted transformer in
:class:`sklearn.frozen.FrozenEstimator` lets it sit in a
:class:`~sklearn.pipeline.Pipeline` that is cross-validated or grid-searched
without ever refitting it.

Here the unlabelled pool is 1,300 digits; the labelled tasks use from 2 to 40
labelled images per class taken from the other 497.
"""

# %%
# Split the data into an unlabelled pool and a labelled set. The labelled set
# is never seen by the teacher or by ClusterFit.
import os
import matplotlib.pyplot as plt
import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import FunctionTransformer, make_pipeline
from sklearn.preprocessing import StandardScaler

from skclusterfit import ClusterFit, NetClassifier
from skclusterfit.data import add_label_noise, load_digits_images

# Every random step of this page is seeded with ``seed``; the slow tests rerun
# the page with another one (tests/test_examples.py) so that its claims are
# not one lucky draw.
seed = int(os.environ.get("SKCLUSTERFIT_EXAMPLE_SEED", "0"))

X, y = load_digits_images()
X_pool, X_labelled, y_pool, y_labelled = train_test_split(
    X, y, train_size=1300, stratify=y, random_state=seed
)

# %%
# The teacher learned from weak labels on the pool (70% of them wrong), and
# ClusterFit is fitted on the pool's images alone.
y_weak = add_label_noise(y_pool, 0.7, random_state=seed)
teacher = NetClassifier(max_epochs=40, random_state=seed).fit(X_pool, y_weak)
cf = ClusterFit(
    teacher=FrozenEstimator(teacher),
    K=100,
    student=NetClassifier(max_epochs=30),
    random_state=seed,
).fit(X_pool)

# %%
# Three pipelines for the labelled task, identical but for their features:
# raw pixels, the frozen teacher, the frozen ClusterFit student.
# ``FrozenEstimator`` makes ``fit`` a no-op for the wrapped step, so fitting a
# pipeline trains only its scaler and logistic regression.
def probe_pipeline(features):
    return make_pipeline(features, StandardScaler(), LogisticRegression(max_iter=2000))


pipelines = {
    "raw pixels": probe_pipeline(FunctionTransformer(lambda X: X.reshape(len(X), -1))),
    "teacher": probe_pipeline(FrozenEstimator(teacher)),
    "ClusterFit": probe_pipeline(FrozenEstimator(cf)),
}

# %%
# A learning curve in labels: for each budget, draw that many labelled images
# per class (five draws), fit each pipeline, score it on the remaining
# labelled images.
budgets = [2, 5, 10, 20, 40]
rng = np.random.RandomState(seed)
scores = {name: np.zeros((len(budgets), 5)) for name in pipelines}
for i, per_class in enumerate(budgets):
    for draw in range(5):
        chosen = np.concatenate(
            [rng.choice(np.flatnonzero(y_labelled == c), per_class, replace=False)
             for c in range(10)]
        )
        rest = np.setdiff1d(np.arange(len(y_labelled)), chosen)
        for name, pipe in pipelines.items():
            pipe.fit(X_labelled[chosen], y_labelled[chosen])
            scores[name][i, draw] = pipe.score(X_labelled[rest], y_labelled[rest])

for name, s in scores.items():
    print(f"{name:>11}: " + "  ".join(f"{100 * m:5.1f}" for m in s.mean(1)))

# %%
# Features learned without labels pay off most when labels are scarce: the
# ClusterFit student is ahead of its teacher at every budget here, by more
# with 2 or 5 labels per class than with 20 or 40.
lead = 100 * (scores["ClusterFit"].mean(1) - scores["teacher"].mean(1))
print("ClusterFit minus teacher, by budget (points):", np.round(lead, 1))
# The claim, checked on this run. Over seeds 0 to 2 with one and two torch
# threads (benchmarks/example_spread.py) the smallest lead at any budget was
# 4.7 points, and the mean lead at 2 and 5 labels per class exceeded the one
# at 20 and 40 by 4.0 to 14.6 points: both bounds leave that room.
assert (lead > 0).all(), f"the student should be ahead at every budget: {lead}"
assert lead[:2].mean() > lead[-2:].mean(), f"more so with few labels: {lead}"
fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
for (name, s), marker in zip(scores.items(), "^os"):
    mean, std = 100 * s.mean(1), 100 * s.std(1)
    ax.plot(budgets, mean, marker=marker, label=name)
    ax.fill_between(budgets, mean - std, mean + std, alpha=0.15)
ax.set_xscale("log")
ax.set_xticks(budgets, [str(b) for b in budgets])
ax.minorticks_off()
ax.set(xlabel="labelled images per class", ylabel="accuracy on the other images (%)",
       title="Few labels on top of frozen features")
ax.legend(loc="lower right")
ax.grid(alpha=0.3)
plt.show()

# %%
# The frozen step really is frozen: fitting the pipeline left the student's
# weights untouched, and cloning the pipeline (as cross-validation does)
# keeps the fitted ClusterFit inside.
from sklearn.base import clone

weights_before = cf.student_.model_.state_dict()["head.weight"].clone()
clone(pipelines["ClusterFit"]).fit(X_labelled[:100], y_labelled[:100])
print("student unchanged:", bool((cf.student_.model_.state_dict()["head.weight"] == weights_before).all()))

"""
Where the better features live: a layer-wise probe of teacher and student
=========================================================================

The paper's Figure 4 probes every layer of a self-supervised network, not
just the last: a RotNet or Jigsaw teacher keeps good features in its middle
layers and specialises its top layers in the pretext task. ClusterFit's
student, trained on clusters of the teacher's features instead of on the
pretext task, should hold up better at the top.

:func:`skclusterfit.evaluation.layerwise_probe` global-average-pools the
output of named layers and fits a linear probe on each.
"""

# %%
# A RotNet teacher (rotation prediction, no labels) on the digits, and
# ClusterFit with ``K=100`` on its features. The student is the same small
# CNN, so the layers of the two networks line up.
import os
import textwrap

import matplotlib.pyplot as plt
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split
from torchvision.models.feature_extraction import get_graph_node_names

from skclusterfit import ClusterFit, NetClassifier
from skclusterfit.data import load_digits_images
from skclusterfit.evaluation import layerwise_probe
from skclusterfit.pretext import RotNet

# Every random step of this page is seeded with ``seed``; the slow tests rerun
# the page with another one (tests/test_examples.py) so that its claims are
# not one lucky draw.
seed = int(os.environ.get("SKCLUSTERFIT_EXAMPLE_SEED", "0"))

X, y = load_digits_images()
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=seed
)
teacher = RotNet(NetClassifier(max_epochs=15), random_state=seed).fit(X_train)
cf = ClusterFit(
    teacher=FrozenEstimator(teacher),
    K=100,
    student=NetClassifier(max_epochs=30),
    random_state=seed,
).fit(X_train)

# %%
# The layers: the three convolution blocks of the built-in CNN (each output
# average-pooled over space; the pooled third block is what ``transform``
# returns), and the output layer -- RotNet's 4 rotation logits, the student's
# 100 cluster logits. The blocks have the same width in both networks, so
# their probes compare like with like; the output layers do not (4 numbers
# against 100), see below. Any node name that
# ``torchvision.models.feature_extraction`` reports works:
_, nodes = get_graph_node_names(teacher.model_)
print(textwrap.fill(", ".join(nodes), 78))
layers = {
    "backbone.features.0": "block 1",
    "backbone.features.1": "block 2",
    "backbone.features.2": "block 3\n(features)",
    "head": "output",
}

# %%
# Probe both networks, layer by layer, with the clean digit labels.
teacher_acc = layerwise_probe(teacher, list(layers), X_train, y_train, X_test, y_test)
student_acc = layerwise_probe(cf, list(layers), X_train, y_train, X_test, y_test)
for layer, short in layers.items():
    print(f"{short.splitlines()[0]:>8}: RotNet {teacher_acc[layer]:.3f}  "
          f"ClusterFit {student_acc[layer]:.3f}")

# %%
# Left, the convolution blocks; right, the output layer, on its own scale.
blocks = list(layers)[:3]
fig, (ax1, ax2) = plt.subplots(
    1, 2, figsize=(10, 4), layout="constrained", gridspec_kw={"width_ratios": [2, 1]}
)
names = [layers[l] for l in blocks]
ax1.plot(names, [100 * teacher_acc[l] for l in blocks], "o-", color="tab:orange",
         label="RotNet teacher $N_{pre}$")
ax1.plot(names, [100 * student_acc[l] for l in blocks], "s-", color="tab:blue",
         label="ClusterFit student $N_{cf}$")
ax1.set(xlabel="layer (input to output)", ylabel="linear-probe accuracy (%)",
        title="Convolution blocks")
ax1.legend()
ax1.grid(alpha=0.3)
out = [100 * teacher_acc["head"], 100 * student_acc["head"]]
bars = ax2.bar(["RotNet\n(4 rotations)", "ClusterFit\n(100 clusters)"], out,
               color=["tab:orange", "tab:blue"])
ax2.bar_label(bars, fmt="%.0f%%")
ax2.set(ylim=(0, 105), title="Output layer (logits)")
plt.show()

# %%
# What the probes show. In the first block the two networks are alike,
# within a few points (both learned strokes and edges). Going up, RotNet's probe accuracy falls back in
# block 3 while the student's holds, so the student's lead grows from
# block 2 to block 3, and at the top, where the features are, the student is
# ahead. That is the paper's Figure 4: the pretext task claims the top of
# the teacher, and the student, trained on clusters instead, keeps its top
# layers general. The sizes are rough -- one seed, 540 test images, and the
# differences move by a couple of points between seeds (printed below in
# test images); the ordering holds on every seed we ran.
#
# The output layers are not a fair comparison and are shown on their own
# scale for that reason: a linear probe on RotNet's 4 rotation scores has 4
# numbers to separate 10 digits with, the student's probe 100. The gap there
# says that rotation scores carry little digit identity and that a
# 100-way cluster classifier's scores carry a lot, not how general either
# network's representation is.
n_test = len(y_test)
for layer, short in layers.items():
    print(f"{short.splitlines()[0]:>8}: student - teacher = "
          f"{round((student_acc[layer] - teacher_acc[layer]) * n_test):+d} test images")
blocks_diff = [student_acc[l] - teacher_acc[l] for l in list(layers)[:3]]
teacher_blocks = [teacher_acc[l] for l in list(layers)[:3]]
student_blocks = [student_acc[l] for l in list(layers)[:3]]
# The claims above, checked on this run. Over seeds 0 to 2 with one and two
# torch threads (benchmarks/example_spread.py) block 1 differed by 0.2 to
# 3.5 points; from block 2 to block 3 RotNet fell back by 2.2 to 4.1 points,
# the student gained 0.5 to 1.1 points, and its lead grew by 2.8 to 5.2
# points, to 1.7 to 5.2 points in block 3. Each bound leaves room outside
# those ranges.
assert abs(blocks_diff[0]) <= 0.05, "block 1 should be alike in both networks"
assert teacher_blocks[2] < teacher_blocks[1] - 0.005, "RotNet falls back at the top"
assert student_blocks[2] >= student_blocks[1] - 0.01, "the student holds at the top"
assert blocks_diff[2] - blocks_diff[1] >= 0.01, "the lead should grow from block 2 to 3"
assert blocks_diff[2] > 0, "the student should be ahead where the features are"

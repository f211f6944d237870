"""
The control experiment: a teacher trained on noisy labels
=========================================================

The paper's central claim (Yan et al., CVPR 2020, section 3.2) is that a
network pre-trained on a *proxy* objective overfits the proxy's artifacts,
and that clustering its features and training a fresh network on the
clusters throws those artifacts away. The cleanest test is synthetic label
noise: train the teacher ``N_pre`` on labels of which a fraction ``p`` was
replaced by a wrong class, run ClusterFit on its features, and judge both
networks with a linear probe on *clean* labels.

Here that experiment runs on scikit-learn's 8x8 digits, at four noise
levels: 0, 50% and 75% of the labels replaced by another class (75% is the
paper's largest level), and 90%. With ten classes, 90% is special: each
wrong label is drawn uniformly from the nine other classes, so every class
ends up with probability 0.1 whatever the image -- the labels carry no
information, and that teacher learns from the images alone.
"""

# %%
# Data: a train split for the networks and the probe, a test split for the
# probe's score. The teacher sees the train images with noisy labels; the
# ClusterFit student sees the same images and no labels at all.
import os
import matplotlib.pyplot as plt
import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

from skclusterfit import ClusterFit, NetClassifier
from skclusterfit.data import add_label_noise, load_digits_images
from skclusterfit.evaluation import linear_probe

# Every random step of this page is seeded with ``seed``; the slow tests rerun
# the page with another one (tests/test_examples.py) so that its claims are
# not one lucky draw.
seed = int(os.environ.get("SKCLUSTERFIT_EXAMPLE_SEED", "0"))

X, y = load_digits_images()
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=seed
)
print(f"{len(X_train)} training images, {len(X_test)} test images")

# %%
# One run per noise level: train ``N_pre`` on noisy labels, fit ClusterFit
# with ``K=100`` clusters (ten times the number of classes, as the paper
# recommends) on its frozen features, and probe both.
noise_levels = [0.0, 0.5, 0.75, 0.9]
results = {"N_pre": [], "N_cf": []}
for p in noise_levels:
    y_noisy = add_label_noise(y_train, p, random_state=seed)
    teacher = NetClassifier(max_epochs=40, random_state=seed).fit(X_train, y_noisy)
    cf = ClusterFit(
        teacher=FrozenEstimator(teacher),
        K=100,
        student=NetClassifier(max_epochs=30),
        random_state=seed,
    ).fit(X_train)
    results["N_pre"].append(linear_probe(X_train, y_train, X_test, y_test, transformer=teacher))
    results["N_cf"].append(linear_probe(X_train, y_train, X_test, y_test, transformer=cf))
    print(
        f"p={p:.2f}  N_pre {results['N_pre'][-1]:.3f}  "
        f"N_cf {results['N_cf'][-1]:.3f}"
    )

# %%
# The figure: probe accuracy of both networks against the noise level (left)
# and ClusterFit's gain over its teacher (right).
pre = 100 * np.array(results["N_pre"])
cf_acc = 100 * np.array(results["N_cf"])
labels = [f"{int(100 * p)}%" + ("\n(random)" if p == 0.9 else "") for p in noise_levels]

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
ax1.plot(labels, pre, "o-", label="teacher $N_{pre}$")
ax1.plot(labels, cf_acc, "s-", label="ClusterFit student $N_{cf}$")
ax1.set(
    xlabel="labels replaced by a wrong class",
    ylabel="linear-probe accuracy (%)",
    title="Accuracy on clean test labels",
)
ax1.legend()
ax1.grid(alpha=0.3)
gain = cf_acc - pre
ax2.bar(labels, gain, color=np.where(gain >= 0, "tab:green", "tab:red"))
ax2.axhline(0, color="black", linewidth=0.8)
ax2.margins(y=0.15)
ax2.set(
    xlabel="labels replaced by a wrong class",
    ylabel="$N_{cf}$ minus $N_{pre}$ (points)",
    title="ClusterFit's gain over its teacher",
)
for i, g in enumerate(gain):
    ax2.annotate(f"{g:+.1f}", (i, g), xytext=(0, 3 if g >= 0 else -3),
                 textcoords="offset points", ha="center",
                 va="bottom" if g >= 0 else "top")
plt.show()

# %%
# What the figure shows. With clean labels the student is close to its
# teacher, usually a little below it -- the clusters are a lossy copy of
# features that were already right for the task, as in the paper's Figure 3
# at zero noise. Once most labels are wrong (75%), the teacher has memorised
# part of them, its features have degraded, and the student, which never saw
# a label, is ahead of it (by 2.0 to 4.6 points over the seeds and CPUs we
# ran). On 8x8 digits a trained CNN is never
# far from the ceiling, and even the random-label teacher (90%) keeps
# features a linear probe does well on (a convolutional network with
# *random* weights is already a strong baseline here, see
# :ref:`sphx_glr_auto_examples_paper_plot_rotnet_teacher.py`).
gain = dict(zip(noise_levels, cf_acc - pre))
print("gain (points):", {f"{p:.0%}": round(float(g), 1) for p, g in gain.items()})
# The claims above, checked on this run. On 540 test images one point is
# five or six images, and the gains move by a point or two between seeds,
# CPUs and thread counts: over seeds 0 to 4 on one CPU and seeds 0 to 2 on
# another (docs/user_guide/time_and_hardware.rst), the clean teacher's gain
# was -1.3 to +0.4 points, the gain at 75% +2.0 to +4.6 points and its lead
# over the clean one's 1.7 to 5.4 points, and the 90% teacher probed at 88.7%
# to 90.4%. Each bound lies outside those ranges.
assert -2.5 <= gain[0.0] <= 1.5, "a clean teacher should gain nothing from ClusterFit"
assert gain[0.75] >= 1.0, "the noisy teacher's student should be ahead"
assert gain[0.75] - gain[0.0] >= 0.5, "the noisy teacher should gain more than the clean one"
assert pre[-1] >= 80, "the random-label teacher's features should still probe well"

# %%
# One seed is one draw: the numbers move by a point or two between seeds.
# The :ref:`user guide <what_is_clusterfit>` tabulates three seeds; its
# table is generated from ``benchmarks/results/label_noise_seeds.txt``,
# written by ``docs/scripts/label_noise_seeds.py`` with this same code, on
# the machine its header names. Run from the repository, this example
# compares its run with that file's line for the same seed, so the table
# cannot drift far from what the code computes. Another CPU or thread count
# rounds differently, and a few thousand SGD steps turn that into other
# predictions on a few test images: the same seed's probes differed by up
# to 2.8 points between the two CPUs we measured, so the comparison allows
# 4 points. The bits are compared by
# ``tests/test_label_noise_seeds.py``, on the machine that wrote the file
# only.
from pathlib import Path

try:
    repository = Path(__file__).resolve().parents[2]
except NameError:  # run interactively
    repository = Path.cwd().parents[1]
results_file = repository / "benchmarks" / "results" / "label_noise_seeds.txt"
TOLERANCE = 0.04  # accuracy: outside the spread across machines above

recorded = {}
if results_file.exists():
    for line in results_file.read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == str(seed):
            recorded[float(fields[1])] = (float(fields[2]), float(fields[3]))
if not recorded:
    print(f"no line for seed {seed} in {results_file}: nothing to compare with")
else:
    for p, n_pre, n_cf in zip(noise_levels, results["N_pre"], results["N_cf"]):
        stored = recorded.get(p)
        assert stored is not None and np.allclose(stored, (n_pre, n_cf), atol=TOLERANCE), (
            f"p={p}: this run gives N_pre={n_pre:.4f}, N_cf={n_cf:.4f}, but "
            f"{results_file} records {stored} for seed {seed}: further apart than "
            "two machines give. The code's results changed: run "
            "`OMP_NUM_THREADS=1 python docs/scripts/label_noise_seeds.py` and commit "
            "its output (it regenerates the user guide's table)."
        )
    largest = max(abs(a - b) for p, n_pre, n_cf in zip(noise_levels, results["N_pre"],
                                                      results["N_cf"])
                  for a, b in zip(recorded[p], (n_pre, n_cf)))
    print(f"seed {seed} of {results_file.name}: this run is within "
          f"{100 * largest:.1f} points of it (allowed: {100 * TOLERANCE:.1f})")

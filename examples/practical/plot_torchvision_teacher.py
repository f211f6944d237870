"""
A torchvision teacher from a local weights file, offline
========================================================

With network access, ``FeatureExtractor("resnet50", weights="DEFAULT")``
downloads torchvision's ImageNet weights and applies their preprocessing by
itself. Without network access -- a cluster node, an air-gapped machine,
this documentation build -- the weights come from a file you copied there,
and two things are then yours to say: the input transform the weights were
trained with (``preprocess=``), and which layer to take features from
(``layer=``).

No pretrained file can be downloaded here, so this example first makes one:
a torchvision ResNet-18 trained on colour versions of the digits and saved
as a plain state dict, exactly the kind of file ``torch.save`` or a model
zoo gives you. Everything after that is what you would do with a real one.
"""

# %%
# Small RGB images: the 8x8 digits, upscaled to 32x32 and tinted with a
# random colour each, stored as ``uint8`` in ``(n, H, W, C)`` order as image
# files decode. skclusterfit accepts that layout and scales uint8 to [0, 1].
import os
import tempfile
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torchvision.models import resnet18
from torchvision.transforms import v2

from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
from skclusterfit.data import add_label_noise, load_digits_images
from skclusterfit.evaluation import linear_probe

# Every random step of this page is seeded with ``seed``; the slow tests rerun
# the page with another one (tests/test_examples.py) so that its claims are
# not one lucky draw.
seed = int(os.environ.get("SKCLUSTERFIT_EXAMPLE_SEED", "0"))

X8, y = load_digits_images()
rng = np.random.RandomState(seed)
gray = torch.nn.functional.interpolate(torch.from_numpy(X8), size=32, mode="bilinear")
colour = rng.uniform(0.3, 1.0, size=(len(X8), 1, 1, 3)).astype(np.float32)
X = (255 * gray[:, 0, :, :, None].numpy() * colour).round().astype(np.uint8)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=seed
)
print(X.shape, X.dtype)

fig, axes = plt.subplots(1, 8, figsize=(8, 1.3), layout="constrained")
for ax, image in zip(axes, X_train):
    ax.imshow(image)
    ax.axis("off")
plt.show()

# %%
# Making the weights file (you would download it instead). The network is
# torchvision's ``resnet18`` with a 10-class head, trained on the images
# normalised by their channel means and standard deviations
# (``preprocess=``), with half of the labels replaced by wrong ones -- a
# weakly supervised teacher. Its weights are saved under torchvision's own
# parameter names (``conv1.weight``, ..., ``fc.bias``): NetClassifier keeps
# the network as a feature ``backbone`` and a linear ``head``, which is
# torchvision's ``fc``.
mean = X_train.reshape(-1, 3).mean(0) / 255
std = X_train.reshape(-1, 3).std(0) / 255
normalize = v2.Normalize(mean.tolist(), std.tolist())

resnet18_10 = partial(resnet18, num_classes=10)  # the architecture, by a callable
trained = NetClassifier(resnet18_10, preprocess=normalize, max_epochs=8, random_state=seed).fit(
    X_train, add_label_noise(y_train, 0.5, random_state=seed)
)
state = dict(trained.model_.backbone.state_dict())
state |= {f"fc.{k}": v for k, v in trained.model_.head.state_dict().items()}
weights_file = os.path.join(tempfile.mkdtemp(), "resnet18-digits.pth")
torch.save(state, weights_file)
print(f"{weights_file}: {len(state)} tensors, {os.path.getsize(weights_file) / 1e6:.0f} MB")

# %%
# The teacher, as you would write it with a downloaded file. ``weights`` is
# the path (read with ``torch.load(weights_only=True)``, so the file cannot
# run code); ``model`` builds the architecture the file was saved from;
# ``preprocess`` is the transform the weights were trained with, applied to
# every float batch on the device. ``layer=None`` takes the penultimate
# layer: ResNet's global-average-pooled ``layer4``, 512 features.
teacher = FeatureExtractor(resnet18_10, weights=weights_file, preprocess=normalize)
teacher.fit(X_train)
print("features:", teacher.n_features_out_, "| preprocess_:", teacher.preprocess_)

# %%
# What the preprocessing is worth. ``layer="fc"`` returns the network's own
# output, its 10 class scores, so the teacher's predictions can be checked
# directly: with the images normalised as in training, and with the raw
# [0, 1] images (``preprocess=None``, what a weights file gets by default).
# A linear probe, which re-fits a classifier on the features, is shown too.


def teacher_accuracy(preprocess):
    scores = FeatureExtractor(resnet18_10, weights=weights_file, preprocess=preprocess,
                              layer="fc").fit(X_train).transform(X_test)
    return float(np.mean(scores.argmax(axis=1) == y_test))


without = FeatureExtractor(resnet18_10, weights=weights_file, preprocess=None).fit(X_train)
check = {
    "predictions, preprocess=normalize": teacher_accuracy(normalize),
    "predictions, preprocess=None": teacher_accuracy(None),
    "linear probe, preprocess=normalize": linear_probe(
        X_train, y_train, X_test, y_test, transformer=teacher),
    "linear probe, preprocess=None": linear_probe(
        X_train, y_train, X_test, y_test, transformer=without),
}
for name, value in check.items():
    print(f"{name:>35}: {value:.3f}")

# %%
# Without the normalisation it was trained with, the network's own
# predictions collapse (the first two lines above), and nothing warns about
# it: the features just mean something else. The linear probe does not show
# the mismatch -- it re-fits a classifier on whatever features it is given,
# and here scores as well or better without the normalisation. So judge a
# teacher loaded from a file by its predictions on a few labelled images,
# not by a probe alone, and pass the transform its weights were trained with.
assert check["predictions, preprocess=normalize"] - check["predictions, preprocess=None"] > 0.2

# %%
# ``layer``: any node name of the network (``torchvision``'s
# ``get_graph_node_names`` lists them); spatial outputs are average-pooled
# over space. ResNet's blocks, probed one by one:
layers = ["layer1", "layer2", "layer3", "layer4"]
by_layer = {}
for layer in layers:
    extractor = FeatureExtractor(resnet18_10, weights=weights_file,
                                 preprocess=normalize, layer=layer).fit(X_train)
    by_layer[layer] = linear_probe(X_train, y_train, X_test, y_test, transformer=extractor)
    print(f"{layer}: {extractor.n_features_out_:>3} features, probe {by_layer[layer]:.3f}")

# %%
# The last block is not the best one for a linear probe: the top of a
# network trained on a proxy objective (here, half-wrong labels) specialises
# in that objective, the paper's observation for hashtag and self-supervised
# teachers.
best = max(by_layer, key=by_layer.get)
print(f"best block for a linear probe: {best}")
assert best != "layer4", by_layer

# %%
# ClusterFit on this teacher: a fresh network of the teacher's architecture
# (the callable ``resnet18_10``), trained from scratch on 100 clusters of the
# teacher's penultimate features; it sees the images through the teacher's
# ``preprocess``.
cf = ClusterFit(
    teacher=teacher,
    K=100,
    student=NetClassifier(resnet18_10, max_epochs=8),
    random_state=seed,
).fit(X_train)
student_probe = linear_probe(X_train, y_train, X_test, y_test, transformer=cf)
print(f"linear probe: teacher {check['linear probe, preprocess=normalize']:.3f}, "
      f"ClusterFit student {student_probe:.3f}")
# The student, which never saw a label, probes above its half-noisy teacher.
assert student_probe > check["linear probe, preprocess=normalize"]

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5), layout="constrained")
ax1.plot(layers, [100 * by_layer[l] for l in layers], "o-")
ax1.set(xlabel="ResNet-18 block", ylabel="linear-probe accuracy (%)",
        title="Teacher features by layer (layer=...)")
ax1.grid(alpha=0.3)
values = [check["predictions, preprocess=None"], check["predictions, preprocess=normalize"],
          check["linear probe, preprocess=None"], check["linear probe, preprocess=normalize"],
          student_probe]
labels = ["teacher\npredicts\nno preprocess", "teacher\npredicts\nnormalized",
          "probe\nno preprocess", "probe\nnormalized", "probe\nClusterFit\nstudent"]
bars = ax2.bar(labels, [100 * v for v in values],
               color=["tab:gray", "tab:orange", "tab:gray", "tab:orange", "tab:blue"])
ax2.bar_label(bars, fmt="%.1f")
ax2.tick_params(axis="x", labelsize=8)
ax2.set(ylabel="accuracy on clean test labels (%)", title="Preprocessing and ClusterFit",
        ylim=(0, 110))
plt.show()

"""
A ResNet-50 teacher on your own folder of images
================================================

The setting of the paper at the scale of one machine: an ImageNet-pretrained
ResNet-50 as the teacher, a folder of your unlabelled images as ``D_cf``, and
a ResNet-50 student trained from scratch on the clusters of the teacher's
2048-d pooled ``layer4`` features.

This script is shown, not executed, in the documentation: it needs the
pretrained weights (downloaded once on a machine with network access) and
your images. Change the paths in the first cell. A GPU is strongly
recommended for the student (see
:ref:`sphx_glr_auto_examples_real_world_gpu_run.py`).
"""

# %%
# Paths. ``WEIGHTS`` is torchvision's ResNet-50 file, fetched on a machine
# with network access, e.g. with
# ``python -c "import torchvision; torchvision.models.resnet50(weights='IMAGENET1K_V1')"``
# which stores it in ``~/.cache/torch/hub/checkpoints/``.
import glob
import os

IMAGES = "/data/my_images"  # any tree of .jpg / .png files
LABELLED = "/data/my_labelled_images"  # class sub-folders, for the probe
WEIGHTS = os.path.expanduser("~/.cache/torch/hub/checkpoints/resnet50-0676ba61.pth")
WORK = "clusterfit_run"

# %%
# The unlabelled images, resized to 256x256 when read. ``on_error="skip"``
# drops unreadable files with a warning instead of failing hours into a run.
from skclusterfit.image_files import ImageFiles

paths = sorted(
    p
    for ext in ("jpg", "jpeg", "png")
    for p in glob.glob(os.path.join(IMAGES, "**", f"*.{ext}"), recursive=True)
)
X = ImageFiles(paths, mode="RGB", size=(256, 256), on_error="skip")
print(f"{len(X)} images ({len(X.skipped)} skipped)")

# %%
# The teacher: ResNet-50 with the local ImageNet weights. With weights given
# as a file, the ImageNet preprocessing (centre crop to 224, normalisation)
# is passed explicitly.
from torchvision.models import ResNet50_Weights

from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier

imagenet = ResNet50_Weights.IMAGENET1K_V1.transforms()
teacher = FeatureExtractor(
    "resnet50",
    weights=WEIGHTS,
    preprocess=imagenet,
    batch_size=256,
    num_workers=8,
)

# %%
# ClusterFit. ``K`` of about ten times the teacher's 1000 classes, as in the
# paper; the student is a fresh ResNet-50 (torchvision name, random
# initialisation), trained on the cluster ids with a balanced sampler.
# ``memory`` caches the teacher's features; ``checkpoint_dir`` lets an
# interrupted fit resume.
student = NetClassifier(
    "resnet50",
    max_epochs=90,
    batch_size=256,
    optimizer="sgd",  # the paper's recipe for a ResNet-50 on ImageNet-scale data
    lr=0.1,
    sampler="balanced",
    num_workers=8,
    verbose=1,
)
cf = ClusterFit(
    teacher=teacher,
    K=10_000,
    student=student,
    memory=os.path.join(WORK, "cache"),
    checkpoint_dir=os.path.join(WORK, "checkpoint"),
    random_state=0,
    verbose=1,
)
cf.fit(X)
cf.save(os.path.join(WORK, "clusterfit-resnet50.skcf"))

# %%
# Judge the student against the teacher on a small labelled set: a linear
# probe on frozen features, the paper's protocol.
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Subset
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from skclusterfit.evaluation import linear_probe

to_tensor = v2.Compose(
    [v2.ToImage(), v2.Resize((256, 256)), v2.ToDtype(torch.float32, scale=True)]
)
labelled = ImageFolder(LABELLED, transform=to_tensor)  # items: (image, class)
targets = labelled.targets
train_idx, test_idx = train_test_split(
    range(len(targets)), test_size=0.3, stratify=targets, random_state=0
)
X_tr, X_te = Subset(labelled, train_idx), Subset(labelled, test_idx)
y_tr = [targets[i] for i in train_idx]
y_te = [targets[i] for i in test_idx]
print("teacher N_pre:", linear_probe(cf.teacher_, X_tr, y_tr, X_te, y_te))
print("student N_cf: ", linear_probe(cf, X_tr, y_tr, X_te, y_te))

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
# ``python -c "import torchvision; torchvision.models.resnet50(weights='IMAGENET1K_V2')"``
# which stores it in ``~/.cache/torch/hub/checkpoints/`` as
# ``resnet50-11ad3fa6.pth`` (torchvision's default; ``IMAGENET1K_V1`` is
# ``resnet50-0676ba61.pth``, whose transforms resize to 256 instead of 232).
# ``skclusterfit fit IMAGES --teacher resnet50 --weights WEIGHTS --out DIR``
# runs the same steps from the command line (:ref:`command_line`).
import os

IMAGES = "/data/my_images"  # any tree of .jpg / .png files
LABELLED = "/data/my_labelled_images"  # class sub-folders, for the probe
WEIGHTS = os.path.expanduser("~/.cache/torch/hub/checkpoints/resnet50-11ad3fa6.pth")
WORK = "clusterfit_run"

# %%
# The unlabelled images, read with the preprocessing of the weights
# (IMAGENET1K_V2: shorter side to 232, centre crop 224, ImageNet mean and
# std), decoded in the DataLoader's worker processes. ``on_error="skip"``
# drops unreadable files with a warning; ``check_decode`` decodes each file
# once to find those damaged past their header (a truncated JPEG), instead of
# meeting them hours into the fit.
from torchvision.models import ResNet50_Weights

from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
from skclusterfit.data import ImageFiles, list_image_files

imagenet = ResNet50_Weights.IMAGENET1K_V2.transforms()
reading = dict(mode="RGB", size=imagenet.resize_size[0], crop=imagenet.crop_size[0],
               mean=imagenet.mean, std=imagenet.std)
paths, _ = list_image_files(IMAGES)  # recursive: .jpg, .jpeg, .png, .webp
X = ImageFiles(paths, **reading, on_error="skip").check_decode(num_workers=8)
print(f"{len(X)} images ({len(X.skipped)} skipped)")

# %%
# The teacher: ResNet-50 with the local ImageNet weights; the images are
# already preprocessed, so ``preprocess=None``.
teacher = FeatureExtractor(
    "resnet50",
    weights=WEIGHTS,
    preprocess=None,
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
# probe on frozen features (the paper's protocol) and DINO's kNN probe. The
# labelled images get the same preprocessing, here through torchvision's own
# transforms of the weights (equal to ``ImageFiles(**reading)``'s items).
from sklearn.model_selection import train_test_split
from torch.utils.data import Subset
from torchvision.datasets import ImageFolder

from skclusterfit.evaluation import knn_probe, linear_probe

labelled = ImageFolder(LABELLED, transform=imagenet)  # items: (image, class)
targets = labelled.targets
train_idx, test_idx = train_test_split(
    range(len(targets)), test_size=0.3, stratify=targets, random_state=0
)
X_tr, X_te = Subset(labelled, train_idx), Subset(labelled, test_idx)
y_tr = [targets[i] for i in train_idx]
y_te = [targets[i] for i in test_idx]
for name, network in (("teacher N_pre", cf.teacher_), ("student N_cf", cf)):
    F_tr, F_te = network.transform(X_tr), network.transform(X_te)
    print(f"{name}: linear {linear_probe(F_tr, y_tr, F_te, y_te):.3f}, "
          f"kNN {knn_probe(F_tr, y_tr, F_te, y_te):.3f}")

"""The ResNet-50 weight files named in README, docs and examples are torchvision's,
and a file named next to explicit transforms gets the transforms of its own version."""

import glob
import os
import re

import pytest
from torchvision.models import ResNet50_Weights

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = sorted(
    [os.path.join(REPO, "README.md")]
    + glob.glob(os.path.join(REPO, "docs", "**", "*.rst"), recursive=True)
    + glob.glob(os.path.join(REPO, "examples", "**", "*.py"), recursive=True)
)
VERSION_OF_FILE = {os.path.basename(w.url): w.name for w in ResNet50_Weights}


@pytest.mark.parametrize("path", FILES, ids=lambda p: os.path.relpath(p, REPO))
def test_resnet50_weight_files_and_transforms_agree(path):
    text = open(path, encoding="utf-8").read()
    named_files = set(re.findall(r"resnet50-[0-9a-f]{8}\.pth", text))
    for name in named_files:
        assert name in VERSION_OF_FILE, f"{name} is not a torchvision ResNet-50 file"
    transforms = set(re.findall(r"ResNet50_Weights\.(IMAGENET1K_V\d)\.transforms\(\)", text))
    if named_files and transforms:
        versions = {VERSION_OF_FILE[name] for name in named_files}
        assert transforms <= versions, (
            f"{os.path.relpath(path, REPO)} names {sorted(named_files)} "
            f"({sorted(versions)}) but applies the transforms of {sorted(transforms)}"
        )


def test_the_files_are_what_the_docs_say():
    assert VERSION_OF_FILE == {
        "resnet50-0676ba61.pth": "IMAGENET1K_V1",
        "resnet50-11ad3fa6.pth": "IMAGENET1K_V2",
    }
    assert ResNet50_Weights.IMAGENET1K_V2.transforms().resize_size == [232]
    assert ResNet50_Weights.IMAGENET1K_V1.transforms().resize_size == [256]

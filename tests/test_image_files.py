"""ImageFiles: torchvision-equal preprocessing, and bad files skipped at read time too."""

import os
import warnings

import numpy as np
import pytest
import torch
from _image_folders import write_digit_folder
from PIL import Image
from torch.utils.data import DataLoader

from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
from skclusterfit.storage import data_fingerprint
from skclusterfit.data import ImageFiles, ImageReader, list_image_files


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    good, labels_csv, bad = write_digit_folder(str(root / "images"), range(30))
    return good, bad


def test_truncated_file_passes_the_header_check_but_not_a_read(folder):
    good, bad = folder
    images = ImageFiles(good[:3] + [bad["truncated"]], size=(32, 32))
    assert len(images) == 4  # the header is fine
    with pytest.raises(ValueError, match=r"cannot decode image file '.*truncated\.jpg'"):
        images[3]


def test_skip_really_skips_at_read_time_in_dataloader_workers(folder):
    good, bad = folder
    images = ImageFiles(good[:5] + [bad["truncated"]] + good[5:8], size=(32, 32),
                        on_error="skip")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(DataLoader(images, batch_size=4, num_workers=2))
    stacked = torch.cat(batches)
    assert stacked.shape == (9, 3, 32, 32)
    assert float(stacked[5].abs().sum()) == 0.0 and float(stacked[4].abs().sum()) > 0
    assert images.read_failures == [bad["truncated"]]  # recorded by a worker, seen here


def test_a_fit_on_a_truncated_file_with_skip_does_not_fail(folder):
    good, bad = folder
    images = ImageFiles(good[:20] + [bad["truncated"]], mode="L", size=(16, 16),
                        on_error="skip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cf = ClusterFit(FeatureExtractor("cnn", random_state=0), K=3,
                        student=NetClassifier(max_epochs=1), random_state=0).fit(images)
    assert len(cf.labels_) == 21
    assert images.read_failures == [bad["truncated"]]
    assert any("truncated.jpg" in str(w.message) for w in caught)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_check_decode_drops_damaged_files(folder, num_workers):
    good, bad = folder
    with pytest.warns(UserWarning, match="skipped 1 of 6 image files"):
        images = ImageFiles(good[:5] + [bad["truncated"]], size=(32, 32), on_error="skip")
        images.check_decode(num_workers=num_workers)
    assert images.paths == good[:5]
    assert images.skipped[0][0] == bad["truncated"]
    with pytest.raises(ValueError, match="truncated.jpg"):
        ImageFiles(good[:2] + [bad["truncated"]], size=(32, 32)).check_decode()


def test_preprocessing_equals_torchvision_weights_transforms(tmp_path):
    from torchvision.models import ResNet50_Weights

    rng = np.random.RandomState(0)
    paths = []
    for i, (height, width) in enumerate([(300, 400), (480, 250), (232, 232)]):
        path = str(tmp_path / f"{i}.png")
        Image.fromarray(rng.randint(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    weights = ResNet50_Weights.IMAGENET1K_V2
    transforms = weights.transforms()
    images = ImageFiles(paths, size=232, crop=224, mean=transforms.mean, std=transforms.std)
    for i, path in enumerate(paths):
        expected = transforms(Image.open(path).convert("RGB"))
        assert images[i].shape == expected.shape == (3, 224, 224)
        torch.testing.assert_close(images[i], expected, atol=1e-5, rtol=1e-5)


def test_sizes_must_agree_unless_fixed(tmp_path):
    paths = []
    for i, size in enumerate([(8, 8), (9, 6)]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.zeros((*size, 3), dtype=np.uint8)).save(paths[-1])
    with pytest.raises(ValueError, match=r"1\.png' is 9x6 \(HxW\) but the first is 8x8"):
        ImageFiles(paths)
    assert ImageFiles(paths, size=4, crop=4).shape == (3, 4, 4)
    assert tuple(ImageFiles(paths, size=(5, 7))[1].shape) == (3, 5, 7)


def test_list_image_files_folder_list_file_and_glob(folder, tmp_path):
    good, bad = folder
    root = os.path.dirname(os.path.dirname(good[0]))
    paths, ignored = list_image_files(root)
    assert paths == sorted(good + [bad["truncated"], bad["not_an_image"]])
    assert [p for p, _ in ignored] == [bad["other_extension"]]
    listing = tmp_path / "list.txt"
    listing.write_text("# my images\n" + "\n".join(good[:3]) + "\n\n")
    assert list_image_files(str(listing)) == (good[:3], [])
    assert list_image_files(os.path.join(root, "class_2", "*.png"))[0] == sorted(
        p for p in good if "class_2" in p and p.endswith(".png")
    )
    with pytest.raises(ValueError, match="neither a folder, a text file of paths, nor a glob"):
        list_image_files(str(tmp_path / "missing"))


def test_settings_enter_the_data_fingerprint(folder):
    good, _ = folder
    plain = data_fingerprint(ImageFiles(good[:4], size=32))
    assert plain != data_fingerprint(ImageFiles(good[:4], size=32, crop=28))
    assert plain != data_fingerprint(
        ImageFiles(good[:4], size=32, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    )


def test_image_reader_is_a_pipeline_step(folder):
    from sklearn.base import clone

    good, _ = folder
    reader = ImageReader(mode="L", size=(16, 16))
    images = clone(reader).fit(good[:3]).transform(good[:3])
    assert isinstance(images, ImageFiles) and images.shape == (1, 16, 16)
    assert reader.transform(images) is images


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"on_error": "ignore"}, "on_error='ignore' must be one of"),
        ({"mean": (0.5,)}, "give both or neither"),
        ({"mean": (0.5,), "std": (0.0,)}, "must be positive"),
        ({"mean": (0.5, 0.5), "std": (1, 1)}, "mean has 2 values but mode='RGB'"),
        ({"crop": (1, 2, 3)}, r"crop=\(1, 2, 3\) must be an int or a \(height, width\)"),
    ],
)
def test_bad_settings_are_named(folder, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageFiles(folder[0][:2], **kwargs)


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_dataloader_workers_start_inside_a_joblib_worker(folder):
    # A loky worker's default multiprocessing context cannot start DataLoader
    # processes (GridSearchCV(n_jobs=2) over an estimator with num_workers > 0).
    from joblib import Parallel, delayed

    good, _ = folder

    def extract(paths):
        images = ImageFiles(paths, mode="L", size=(16, 16))
        extractor = FeatureExtractor("cnn", random_state=0, num_workers=2).fit(images)
        return extractor.transform(images).shape

    shapes = Parallel(n_jobs=2, backend="loky")(delayed(extract)(good[:8]) for _ in range(2))
    assert shapes[0][0] == 8 and shapes[0] == shapes[1]

"""Videos (n, T, C, H, W): clip-averaged torchvision video networks as teacher and
student, on synthetic moving digits, end to end."""

import numpy as np
import pytest
import torch
import torchvision
from sklearn.frozen import FrozenEstimator
from torch import nn

import skclusterfit
from skclusterfit import ClusterFit, Distillation, FeatureExtractor, NetClassifier
from skclusterfit.data import make_moving_digits
from skclusterfit.networks import ClipAveraged, VideoModel, uniform_clip_starts, wrap_video_transforms


class FrameMean(nn.Module):
    """A clip network whose output is each clip's mean over its frames and pixels."""

    def __init__(self):
        super().__init__()
        self.seen = []
        self.fc = nn.Linear(1, 1)

    def forward(self, clips):  # (N, C, L, H, W)
        self.seen.append(tuple(clips.shape))
        return clips.mean(dim=(1, 3, 4))  # (N, L): one value per frame


@pytest.fixture(scope="module")
def videos():
    X, y = make_moving_digits(90, n_frames=6, size=16, random_state=0)
    return X, y


def test_moving_digits_move_and_keep_their_digit():
    X, y = make_moving_digits(20, n_frames=6, size=16, random_state=1)
    assert X.shape == (20, 6, 3, 16, 16) and X.dtype == np.uint8
    assert np.array_equal(X[:, :, 0], X[:, :, 2])  # grey frames repeated
    # The same digit in every frame (same ink), at another place.
    ink = X[:, :, 0].reshape(20, 6, -1).astype(int).sum(-1)
    assert np.all(ink == ink[:, :1])
    moved = [(X[i, 0] != X[i, t]).any() for i in range(20) for t in range(1, 6)]
    assert np.mean(moved) > 0.9
    X2, y2 = make_moving_digits(20, n_frames=6, size=16, random_state=1)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    with pytest.raises(ValueError, match="size=6 is smaller than the digit's side 8"):
        make_moving_digits(2, size=6)


def test_clip_averaged_inference_averages_uniform_clips():
    net = ClipAveraged(FrameMean(), clip_length=3, n_clips=3).eval()
    videos = torch.arange(2 * 7, dtype=torch.float32).view(2, 7, 1, 1, 1).expand(2, 7, 1, 2, 2)
    out = net(videos.contiguous())
    starts = uniform_clip_starts(7, 3, 3)
    assert starts.tolist() == [0, 2, 4]
    assert net.network.seen[-1] == (2 * 3, 1, 3, 2, 2)  # every clip in one batch
    frames = videos[:, :, 0, 0, 0]
    expected = torch.stack([frames[:, s : s + 3] for s in starts], 1).mean(1)
    torch.testing.assert_close(out, expected)


def test_clip_averaged_training_takes_one_random_clip_per_video():
    net = ClipAveraged(FrameMean(), clip_length=3, n_clips=3).train()
    videos = torch.arange(4 * 9, dtype=torch.float32).view(4, 9, 1, 1, 1)
    torch.manual_seed(0)
    out = net(videos)
    assert net.network.seen[-1] == (4, 1, 3, 1, 1)
    # Each row is 3 consecutive frames of its own video.
    frames = videos[:, :, 0, 0, 0]
    for i, row in enumerate(out):
        start = int(row[0] - frames[i, 0])
        torch.testing.assert_close(row, frames[i, start : start + 3])
    starts = set()
    for _ in range(20):
        starts.update((net(videos)[:, 0] - frames[:, 0]).tolist())
    assert len(starts) > 3  # temporal jittering


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_bare_torchvision_state_dict_loads_into_the_wrapper(tmp_path, videos):
    X, _ = videos
    torch.manual_seed(0)
    bare = torchvision.models.video.r3d_18(num_classes=400)
    path = tmp_path / "r3d_18.pth"
    torch.save(bare.state_dict(), path)
    extractor = FeatureExtractor("r3d_18", weights=str(path)).fit(X[:4])
    assert not extractor.random_init_
    wrapped = ClipAveraged(bare, 16, 6)  # the defaults of a model given by name
    wrapped.network.fc = nn.Identity()
    with torch.no_grad():
        expected = wrapped.eval()(torch.from_numpy(X[:4]).float() / 255).numpy()
    np.testing.assert_allclose(extractor.transform(X[:4]), expected, rtol=1e-4, atol=1e-5)


def test_video_weight_transforms_keep_frames_first():
    from torchvision.models.video import R2Plus1D_18_Weights

    transforms = wrap_video_transforms(R2Plus1D_18_Weights.KINETICS400_V1.transforms())
    out = transforms(torch.rand(2, 5, 3, 40, 50))
    assert out.shape == (2, 5, 3, 112, 112)  # (N, T, C, H, W), resized and cropped


@pytest.mark.slow  # teacher, clusters and student on clips; the parts are tested fast
def test_clusterfit_on_videos_end_to_end(videos, tmp_path):
    X, y = videos
    X_train, y_train, X_test = X[:48], y[:48], X[48:64]
    clips = dict(clip_length=4, n_clips=2)
    teacher = NetClassifier(VideoModel("r3d_18", **clips), max_epochs=1, random_state=0)
    teacher.fit(X_train, y_train)
    assert teacher.transform(X_test).shape == (len(X_test), 512)
    cf = ClusterFit(
        teacher=FrozenEstimator(teacher),
        K=8,
        student=NetClassifier(VideoModel("mc3_18", **clips), max_epochs=1),
        random_state=0,
    ).fit(X_train)
    assert len(np.unique(cf.labels_)) == 8
    assert cf.cluster_centers_.shape == (8, 512)
    features = cf.transform(X_test)
    assert features.shape == (len(X_test), 512) and features.dtype == np.float32
    # The student learned its pseudo-labels (a 1-epoch student: above chance).
    assert np.mean(cf.student_.predict(X_train) == cf.labels_) > 1 / 8
    loaded = skclusterfit.load(cf.save(tmp_path / "video.skcf"))
    np.testing.assert_allclose(loaded.transform(X_test), features, rtol=1e-5, atol=1e-6)
    assert loaded.student_.model.get_params() == {"name": "mc3_18", **clips}


def test_video_student_is_the_teachers_architecture_by_name(videos, tmp_path):
    X, _ = videos
    torch.manual_seed(0)
    path = tmp_path / "mc3.pth"
    torch.save(torchvision.models.video.mc3_18().state_dict(), path)
    cf = ClusterFit(
        teacher=FeatureExtractor("mc3_18", weights=str(path)), K=4, random_state=0
    ).set_params(student__max_epochs=1, student__batch_size=32)
    cf.fit(X[:16])
    assert cf.student_.model == "mc3_18"
    assert isinstance(cf.student_.model_.backbone, ClipAveraged)


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_distillation_of_a_video_classifier(videos):
    X, y = videos
    clips = dict(clip_length=4, n_clips=1)
    teacher = NetClassifier(VideoModel("mc3_18", **clips), max_epochs=1, random_state=0)
    teacher.fit(X[:40], y[:40])
    distilled = Distillation(
        FrozenEstimator(teacher),
        student=NetClassifier(VideoModel("mc3_18", **clips), max_epochs=1),
        random_state=0,
    ).fit(X[:40])
    assert distilled.transform(X[40:44]).shape == (4, 512)


def test_bad_video_input_is_named():
    X, y = make_moving_digits(4, n_frames=4, size=16, channels=1, random_state=0)
    with pytest.raises(ValueError, match=r"1 channel\(s\) per frame.*takes 3"):
        NetClassifier("r3d_18").fit(X, y)
    images = np.zeros((4, 3, 16, 16), np.float32)
    with pytest.raises(ValueError, match=r"model='r3d_18' is a video network: X must hold videos"):
        NetClassifier("r3d_18").fit(images, y)
    with pytest.raises(ValueError, match="image network"):
        NetClassifier("resnet18").fit(np.repeat(X, 3, axis=2), y)
    with pytest.raises(ValueError, match="not a torchvision video model"):
        NetClassifier(VideoModel("resnet18")).fit(np.repeat(X, 3, axis=2), y)

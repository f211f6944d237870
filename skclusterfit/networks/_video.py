"""Video networks: clip-based models that see whole videos.

Layout. A video is a ``(T, C, H, W)`` array (frames first, then channels, as
torchvision's video datasets and transforms take them), so video data is
``(n, T, C, H, W)``: uint8 in [0, 255] or float. Every estimator takes it
like images; the network decides what to do with the frames.

Clips. Video networks such as R(2+1)D (Tran et al., 2018) take clips of a
few consecutive frames. :class:`ClipAveraged` makes any such network see
whole videos as the paper does (section 4.1.2): in training, one clip per
video at a random start (temporal jittering); in inference, ``n_clips``
clips at starts spread uniformly over the video, whose features (and
logits) are averaged into one per video.

The torchvision video networks ``r2plus1d_18``, ``r3d_18`` and ``mc3_18``
(and the others of ``torchvision.models.video``) are used by name, e.g.
``NetClassifier("r3d_18")`` or ``FeatureExtractor("r2plus1d_18")`` on video
input, with the default clip settings; :class:`VideoModel` sets them.
"""

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

# Frames per clip (torchvision's Kinetics models use 16) and clips per video
# (the paper averages 6) of a video model given by name.
DEFAULT_CLIP_LENGTH = 16
DEFAULT_N_CLIPS = 6


def video_model_names():
    """Names of the torchvision video networks (``torchvision.models.video``)."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models.video)


def uniform_clip_starts(n_frames, clip_length, n_clips):
    """First frames of ``n_clips`` clips spread uniformly over ``n_frames`` frames.

    The first clip starts at frame 0 and the last ends at the last frame;
    starts that would repeat (a video barely longer than a clip) are kept
    once.

    Examples
    --------
    >>> from skclusterfit.networks import uniform_clip_starts
    >>> uniform_clip_starts(32, 8, 4).tolist()
    [0, 8, 16, 24]
    >>> uniform_clip_starts(9, 8, 6).tolist()
    [0, 1]
    >>> uniform_clip_starts(4, 8, 3).tolist()  # shorter than a clip: one clip
    [0]
    """
    last = max(n_frames - clip_length, 0)
    return np.unique(np.round(np.linspace(0, last, n_clips)).astype(np.int64))


class ClipAveraged(nn.Module):
    """A clip network applied to whole videos, its outputs averaged over clips.

    Parameters
    ----------
    network : nn.Module
        Takes clips ``(N, C, clip_length, H, W)``, as torchvision's video
        models do. Its state is this module's ``network.*`` entries; a state
        dict of the bare network (e.g. a torchvision weight file) loads too.
    clip_length : int, default=16
        Frames per clip; a video with fewer frames is one clip of all of them.
    n_clips : int, default=6
        Clips per video in inference, spread uniformly in time
        (:func:`uniform_clip_starts`). Training uses one clip per video at a
        random start, drawn from torch's global generator (which the training
        loop seeds and checkpoints).

    Examples
    --------
    >>> import torch
    >>> import torchvision
    >>> from skclusterfit.networks import ClipAveraged
    >>> net = ClipAveraged(torchvision.models.video.r3d_18(num_classes=5), 4, 3).eval()
    >>> videos = torch.zeros(2, 10, 3, 16, 16)  # (N, T, C, H, W)
    >>> net(videos).shape
    torch.Size([2, 5])
    """

    def __init__(self, network, clip_length=DEFAULT_CLIP_LENGTH, n_clips=DEFAULT_N_CLIPS):
        super().__init__()
        self.network = network
        self.clip_length = int(clip_length)
        self.n_clips = int(n_clips)
        self.register_load_state_dict_pre_hook(_prefix_bare_keys)

    def forward(self, videos):
        if videos.ndim != 5:
            raise ValueError(
                f"a video network takes batches of videos (N, T, C, H, W); got a "
                f"batch of shape {tuple(videos.shape)}."
            )
        n_videos, n_frames = videos.shape[:2]
        length = min(self.clip_length, n_frames)
        if self.training:
            starts = torch.randint(n_frames - length + 1, (n_videos,))
            frames = starts[:, None] + torch.arange(length)
            clips = videos[torch.arange(n_videos)[:, None], frames.to(videos.device)]
            return self.network(clips.transpose(1, 2))
        starts = uniform_clip_starts(n_frames, length, self.n_clips)
        # (N, k, L, C, H, W) -> (N * k, C, L, H, W): every clip in one batch.
        clips = torch.stack([videos[:, s : s + length] for s in starts], dim=1)
        clips = clips.flatten(0, 1).transpose(1, 2)
        out = self.network(clips)
        return out.view(n_videos, len(starts), *out.shape[1:]).mean(dim=1)

    def extra_repr(self):
        return f"clip_length={self.clip_length}, n_clips={self.n_clips}"


def _prefix_bare_keys(module, state_dict, prefix, *args):
    """Let ``load_state_dict`` take the bare network's keys (``stem.0.weight``)."""
    inner = prefix + "network."
    for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(inner)]:
        state_dict[inner + key[len(prefix) :]] = state_dict.pop(key)


class VideoModel(BaseEstimator):
    """A torchvision video network by name, with its clip settings: a ``model`` value.

    Pass it as the ``model`` of :class:`~skclusterfit.NetClassifier` or
    :class:`~skclusterfit.FeatureExtractor` (or ClusterFit's ``student``) to
    choose the clips; a plain name (``model="r3d_18"``) means
    ``VideoModel("r3d_18")``. It is a parameter object, not a fitted
    estimator: calling it builds a new, randomly initialised
    :class:`ClipAveraged` network (under the estimator's seed), and its
    settings are nested parameters (``student__model__clip_length``) that
    grid searches, ``clone`` and :func:`skclusterfit.save` see.

    Parameters
    ----------
    name : str, default="r2plus1d_18"
        A torchvision video model: ``"r2plus1d_18"``, ``"r3d_18"``,
        ``"mc3_18"`` (or another of ``torchvision.models.video``).
    clip_length : int, default=16
        Frames per clip.
    n_clips : int, default=6
        Clips per video averaged in inference.

    Examples
    --------
    >>> from skclusterfit.networks import VideoModel
    >>> network = VideoModel("mc3_18", clip_length=4, n_clips=2)()
    >>> type(network).__name__, network.clip_length, network.n_clips
    ('ClipAveraged', 4, 2)
    """

    def __init__(self, name="r2plus1d_18", *, clip_length=DEFAULT_CLIP_LENGTH,
                 n_clips=DEFAULT_N_CLIPS):
        self.name = name
        self.clip_length = clip_length
        self.n_clips = n_clips

    def __call__(self):
        import torchvision

        if self.name not in video_model_names():
            raise ValueError(
                f"VideoModel(name={self.name!r}) is not a torchvision video model; "
                f"choose one of {video_model_names()}."
            )
        for key in ("clip_length", "n_clips"):
            value = getattr(self, key)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"VideoModel({key}={value!r}) must be a positive int.")
        network = torchvision.models.get_model(self.name, weights=None)
        return ClipAveraged(network, self.clip_length, self.n_clips)


def wrap_video_transforms(transforms):
    """torchvision's video preprocessing, giving back frames-first clips.

    torchvision's ``VideoClassification`` transforms (the ``transforms()`` of
    video weights) take ``(..., T, C, H, W)`` and return ``(..., C, T, H, W)``;
    :class:`ClipAveraged` takes frames first, so the result is transposed
    back. Any other transform is returned as it is.
    """
    if type(transforms).__name__ != "VideoClassification":
        return transforms
    return _FramesFirst(transforms)


class _FramesFirst(nn.Module):
    def __init__(self, transforms):
        super().__init__()
        self.transforms = transforms

    def forward(self, videos):
        return self.transforms(videos).transpose(-4, -3)


__all__ = [
    "ClipAveraged",
    "VideoModel",
    "uniform_clip_starts",
    "video_model_names",
    "wrap_video_transforms",
]

"""Networks: model specifications turned into modules, the built-in networks, video networks.

Every network inside :class:`~skclusterfit.NetClassifier` takes the form of a
:class:`HeadedNetwork` (a feature backbone and a linear head); ``"cnn"`` and
``"mlp"`` name the built-in :class:`SmallCNN` and :class:`MLP`.
"""

from ._backbones import HeadedNetwork
from ._builtin import MLP, SmallCNN
from ._video import (
    ClipAveraged,
    VideoModel,
    uniform_clip_starts,
    video_model_names,
    wrap_video_transforms,
)

__all__ = [
    "MLP",
    "ClipAveraged",
    "HeadedNetwork",
    "SmallCNN",
    "VideoModel",
    "uniform_clip_starts",
    "video_model_names",
    "wrap_video_transforms",
]

"""Built-in networks for small data, so tiny images and vectors need no torchvision model."""

import torch
from torch import nn


class GlobalAvgPool(nn.Module):
    """The mean over the spatial dimensions, as ``nn.AdaptiveAvgPool2d(1)`` gives it.

    Written as a mean because the backward pass of AdaptiveAvgPool2d has no
    deterministic CUDA kernel: the built-in CNN then trains under
    ``torch.use_deterministic_algorithms(True)`` on a GPU too.
    """

    def forward(self, x):
        return x.mean(dim=(2, 3), keepdim=True)


class SmallCNN(nn.Module):
    """Three conv blocks, global average pooling and a linear head.

    Sized for small grayscale or colour images (8x8 digits to 32x32). The
    penultimate features are the pooled output of the last block, the analogue
    of ResNet's global-average-pooled res5.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    num_classes : int
        Outputs of the final linear layer ``fc``.
    width : int, default=32
        Channels of the first block; the next two have 2x and 4x as many.

    Attributes
    ----------
    features : nn.Sequential
        The three blocks, pooling and flattening: images to
        ``(n, 4 * width)`` features.
    fc : nn.Linear
        The classification head.

    See Also
    --------
    NetClassifier : trains it (``model="cnn"``, or ``"auto"`` for images).

    Examples
    --------
    >>> import torch
    >>> from skclusterfit.networks import SmallCNN
    >>> net = SmallCNN(in_channels=1, num_classes=10, width=16)
    >>> net(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    >>> net.features(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 64])
    """

    def __init__(self, in_channels=1, num_classes=10, width=32):
        super().__init__()
        widths = (width, 2 * width, 4 * width)

        def block(c_in, c_out, pool):
            layers = [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            if pool:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            return nn.Sequential(*layers)

        self.features = nn.Sequential(
            block(in_channels, widths[0], pool=True),
            block(widths[0], widths[1], pool=True),
            block(widths[1], widths[2], pool=False),
            GlobalAvgPool(),
            nn.Flatten(),
        )
        self.fc = nn.Linear(widths[2], num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


class MLP(nn.Module):
    """A multi-layer perceptron for vector inputs, ending in a linear head ``fc``.

    Parameters
    ----------
    in_features : int
        Input dimension.
    num_classes : int
        Outputs of the final linear layer.
    hidden : tuple of int, default=(256, 128)
        Widths of the hidden layers; the last one is the feature dimension.

    Attributes
    ----------
    features : nn.Sequential
        Linear, batch-norm and ReLU layers: inputs to ``(n, hidden[-1])``.
    fc : nn.Linear
        The classification head.

    See Also
    --------
    NetClassifier : trains it (``model="mlp"``, or ``"auto"`` for vectors).

    Examples
    --------
    >>> import torch
    >>> from skclusterfit.networks import MLP
    >>> net = MLP(in_features=64, num_classes=10).eval()
    >>> net(torch.zeros(3, 64)).shape
    torch.Size([3, 10])
    """

    def __init__(self, in_features, num_classes=10, hidden=(256, 128)):
        super().__init__()
        layers = []
        width_in = in_features
        for width in hidden:
            layers += [nn.Linear(width_in, width), nn.BatchNorm1d(width), nn.ReLU()]
            width_in = width
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width_in, num_classes)

    def forward(self, x):
        return self.fc(self.features(torch.flatten(x, 1)))


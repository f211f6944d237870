"""Batched data augmentation on the device (no per-sample Python)."""

import torch
import torch.nn.functional as F


def random_shift(x, max_shift, generator=None):
    """Translate each image by up to ``max_shift`` pixels (zero fill), independently.

    ClusterFit's student needs some invariance the pseudo-labels alone do not
    teach; small shifts are the cheapest that keeps digits digits.
    """
    if max_shift <= 0 or x.ndim != 4:
        return x
    n, _, h, w = x.shape
    shifts = torch.randint(
        -max_shift, max_shift + 1, (n, 2), generator=generator
    ).to(x.device, x.dtype)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    # affine_grid works in [-1, 1] coordinates: one pixel is 2 / size.
    theta[:, 0, 2] = shifts[:, 0] * 2 / w
    theta[:, 1, 2] = shifts[:, 1] * 2 / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)

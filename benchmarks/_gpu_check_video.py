"""Step 4 of gpu_check.sh: video networks (Conv3d) on the device.

A random r2plus1d_18 teacher extracts features of moving digits, an r3d_18
student trains one epoch on them (channels-last applies to 4-D weights only,
so both run), and the forward pass of r3d_18 is timed with its weights and
clips in torch's default layout against channels_last_3d (under the same
autocast), to decide whether channels_last_3d pays.
"""

import os
import time

import torch

from skclusterfit import FeatureExtractor, NetClassifier
from skclusterfit.data import make_moving_digits
from skclusterfit.networks import VideoModel
from skclusterfit.runtime._torch_utils import autocast_context

device = torch.device(os.environ.get("SKCF_CHECK_DEVICE", "cuda"))
dry = os.environ.get("SKCF_CHECK_DRY") == "1"
n, frames, size = (16, 4, 16) if dry else (512, 8, 32)
X, y = make_moving_digits(n, n_frames=frames, size=size, random_state=0)
clip = dict(clip_length=4, n_clips=1 if dry else 2)


def timed(label, run, count):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    print(f"{label}: {count / seconds:.1f} clips/s ({seconds:.2f} s)", flush=True)
    return result


teacher = FeatureExtractor(VideoModel("r2plus1d_18", **clip), weights=None, device=device,
                           batch_size=32, random_state=0).fit(X[:2])
teacher.transform(X[:8])  # warm-up
features = timed("r2plus1d_18 teacher, extraction", lambda: teacher.transform(X), n)
assert torch.isfinite(torch.from_numpy(features)).all()
student = NetClassifier(VideoModel("r3d_18", **clip), max_epochs=1, batch_size=16,
                        device=device, random_state=0)
timed("r3d_18 student, 1 epoch", lambda: student.fit(X, y), n)

network = VideoModel("r3d_18", **clip)().to(device).eval()
videos = torch.rand(8 if dry else 64, 4, 3, size, size, device=device)  # (n, T, C, H, W)
for layout in ("contiguous", "channels_last_3d"):
    # The Conv3d weights in each layout (the clips are rearranged inside the network).
    fmt = torch.contiguous_format if layout == "contiguous" else torch.channels_last_3d
    with torch.no_grad():
        for weight in network.parameters():
            if weight.ndim == 5:
                weight.data = weight.data.contiguous(memory_format=fmt)
    with torch.inference_mode(), autocast_context(device, True):
        for _ in range(2):
            network(videos)  # warm-up (cuDNN's algorithm search)
        timed(f"r3d_18 forward, Conv3d weights {layout}",
              lambda: [network(videos) for _ in range(5)], 5 * len(videos))

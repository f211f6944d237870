"""Image decoding: skclusterfit's folder reader vs a bare torchvision ImageFolder-style DataLoader.

Both read the same JPEG files with the same DataLoader workers and batch
size and produce the same tensors: PIL decode, RGB, resize of the shorter
side to 256, centre crop 224, scaling to [0, 1], ImageNet normalisation.

* ours: :class:`skclusterfit.data.ImageFiles` batched by the loop the
  estimators use for a Dataset (``skclusterfit.data.iter_batches``), i.e.
  what ``skclusterfit fit --workers W`` runs during teacher extraction;
* bare: what a PyTorch user writes, torchvision's ``ImageFolder`` recipe: a
  Dataset calling ``PIL.Image.open(path).convert("RGB")`` and
  ``transforms.Compose([Resize(256), CenterCrop(224), ToTensor(),
  Normalize(mean, std)])``, in a ``DataLoader(batch_size, num_workers)``.

The rounds alternate ours / bare; printed: images per wall-clock second of
each round, the median of the per-round ratios ours / bare (>= 1: no
overhead), and images per CPU second (this process plus its DataLoader
workers, from ``getrusage``): on a machine shared with other jobs the wall
clock swings with their load, the CPU time per image much less. Also the
load average and threads. The first (warm-up) round fills the page cache and
is not counted.

Usage::

    python benchmarks/reader.py --n-images 1200 --workers 2 --rounds 5
"""

import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from skclusterfit.data._sources import DatasetSource

from skclusterfit.data import iter_batches
from skclusterfit.data import ImageFiles

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_jpegs(folder, n_images, seed=0):
    """Photo-like JPEGs (smooth colour fields plus noise), ImageNet's typical sizes."""
    rng = np.random.default_rng(seed)
    sizes = [(500, 375), (375, 500), (500, 333), (640, 480)]
    paths = []
    for i in range(n_images):
        width, height = sizes[i % len(sizes)]
        coarse = rng.integers(0, 256, size=(height // 25 + 1, width // 25 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
        noise = rng.integers(-12, 13, size=(height, width, 3))
        pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"class_{i % 10}", f"{i:05d}.jpg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


class BareImageFolder(Dataset):
    """torchvision's ImageFolder recipe over a list of files (class = folder name)."""

    def __init__(self, paths):
        from torchvision import transforms

        self.paths = paths
        self.transform = transforms.Compose([
            transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        path = self.paths[index]
        with open(path, "rb") as file:
            image = Image.open(file).convert("RGB")
        return self.transform(image), 0


def read_ours(images, workers, batch_size):
    source = DatasetSource(images, num_workers=workers)
    n = 0
    for x, _ in iter_batches(source, batch_size):
        n += len(x)
    return n


def read_bare(dataset, workers, batch_size):
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    n = 0
    for x, _ in loader:
        n += len(x)
    return n


def _cpu_seconds():
    """CPU time of this process and of its reaped children (the DataLoader workers)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def timed(function, *args):
    """(images per wall second, images per CPU second of this process and its workers)."""
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    n = function(*args)
    return n / (time.perf_counter() - start), n / (_cpu_seconds() - cpu_start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-images", type=int, default=1200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--folder", default=None, help="reuse (or create) the JPEGs here")
    args = parser.parse_args(argv)

    folder = args.folder or tempfile.mkdtemp(prefix="skclusterfit-reader-")
    paths = sorted(
        os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
        if name.endswith(".jpg")
    )
    if len(paths) < args.n_images:
        paths = write_jpegs(folder, args.n_images)
    paths = paths[: args.n_images]
    mean_bytes = np.mean([os.path.getsize(p) for p in paths])

    # Same tensors from both readers (checked on a few files).
    few = ImageFiles(paths[:4], size=256, crop=224, mean=MEAN, std=STD)
    for i in range(4):
        torch.testing.assert_close(few[i], BareImageFolder(paths[:4])[i][0], atol=1e-5,
                                   rtol=1e-5)

    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"cpus {len(os.sched_getaffinity(0))}")
    print(f"{len(paths)} JPEG files ({mean_bytes / 1024:.0f} KiB mean, 500x375 to 640x480), "
          f"workers={args.workers}, batch={args.batch_size}, rounds={args.rounds} + 1 warm-up")
    # Built once, as a fit does: ImageFiles reads every file's header here
    # (reported, not counted in the reading rounds); the bare Dataset checks nothing.
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    ours = ImageFiles(paths, size=256, crop=224, mean=MEAN, std=STD)
    print(f"ImageFiles header check of {len(paths)} files: "
          f"{time.perf_counter() - start:.2f} s wall, {_cpu_seconds() - cpu_start:.2f} s CPU")
    bare = BareImageFolder(paths)
    timed(read_ours, ours, args.workers, args.batch_size)  # warm-up: page cache
    timed(read_bare, bare, args.workers, args.batch_size)
    wall, cpu = [], []
    print(f"{'round':>5} {'ours img/s':>11} {'bare img/s':>11} {'ratio':>7} "
          f"{'ours img/CPU-s':>15} {'bare img/CPU-s':>15} {'ratio':>7} {'load (1 min)':>13}")
    for r in range(args.rounds):
        # Alternate who goes first, so a drift in load does not favour one side.
        if r % 2 == 0:
            a = timed(read_ours, ours, args.workers, args.batch_size)
            b = timed(read_bare, bare, args.workers, args.batch_size)
        else:
            b = timed(read_bare, bare, args.workers, args.batch_size)
            a = timed(read_ours, ours, args.workers, args.batch_size)
        wall.append(a[0] / b[0])
        cpu.append(a[1] / b[1])
        print(f"{r + 1:>5} {a[0]:>11.1f} {b[0]:>11.1f} {wall[-1]:>7.3f} "
              f"{a[1]:>15.1f} {b[1]:>15.1f} {cpu[-1]:>7.3f} {os.getloadavg()[0]:>13.2f}")
    print(f"median ratio ours / bare, wall clock: {np.median(wall):.3f} "
          f"(min {min(wall):.3f}, max {max(wall):.3f})")
    print(f"median ratio ours / bare, per CPU second: {np.median(cpu):.3f} "
          f"(min {min(cpu):.3f}, max {max(cpu):.3f})")
    print(f"load average at the end {tuple(round(x, 2) for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

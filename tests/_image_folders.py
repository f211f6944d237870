"""Folders of real image files for the command-line and reader tests.

Digits from scikit-learn, upscaled to RGB PNG and JPEG files in sub-folders,
plus the bad files a real folder has: a JPEG truncated past its header, a
text file named .png, and a file that is not an image by its extension.
"""

import os

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def digit_image(index, side):
    digits = load_digits()
    pixels = (digits.images[index] * (255 / 16)).astype(np.uint8)
    return Image.fromarray(pixels).resize((side, side), Image.BILINEAR).convert("RGB")


def write_digit_folder(folder, indices, *, bad_files=True):
    """Write digits ``indices`` under ``folder``; return (good paths, labels csv path)."""
    digits = load_digits()
    paths, rows = [], ["path,label"]
    for position, index in enumerate(indices):
        ext = "jpg" if position % 3 == 0 else "png"
        side = 40 if position % 5 == 0 else 32  # some need resizing
        path = os.path.join(folder, f"class_{position % 4}", f"digit_{index:04d}.{ext}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        image = digit_image(index, side)
        image.save(path, quality=95) if ext == "jpg" else image.save(path)
        paths.append(path)
        rows.append(f"{os.path.relpath(path, os.path.dirname(folder))},{digits.target[index]}")
    bad = {}
    if bad_files:
        whole = os.path.join(folder, "truncated_whole.jpg")
        digit_image(0, 64).save(whole, quality=95)
        data = open(whole, "rb").read()
        os.unlink(whole)
        bad["truncated"] = os.path.join(folder, "class_0", "truncated.jpg")
        with open(bad["truncated"], "wb") as file:
            file.write(data[: len(data) // 2])  # a valid header, half the image data
        bad["not_an_image"] = os.path.join(folder, "class_1", "notes_named_like.png")
        with open(bad["not_an_image"], "w") as file:
            file.write("this is text, not a PNG\n")
        bad["other_extension"] = os.path.join(folder, "README.txt")
        with open(bad["other_extension"], "w") as file:
            file.write("a folder of digits\n")
    labels_csv = os.path.join(os.path.dirname(folder), "labels.csv")  # paths relative to it
    with open(labels_csv, "w") as file:
        file.write("\n".join(rows) + "\n")
    return sorted(paths), labels_csv, bad


def digit_array(indices, side=32):
    """The same digits as an (n, 3, side, side) float32 array in [0, 1]."""
    return np.stack(
        [np.asarray(digit_image(i, side), dtype=np.float32) / 255 for i in indices]
    ).transpose(0, 3, 1, 2)

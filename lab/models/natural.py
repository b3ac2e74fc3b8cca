"""Natural images for image-shaped model inputs: crops of scikit-learn's two bundled photographs.

Why: uniform noise is not what a vision model sees. A reference set of noise barely moves a
model's output from one sample to the next (the check cannot fail), and int8 calibrated on noise
learns the wrong activation ranges. The lab downloads nothing, but scikit-learn ships two photos
inside its wheel (china.jpg, flower.jpg, 427 x 640). Crops of them (position, size and mirror
drawn from a seed), resized to the model's run shape and normalised as ImageNet-style inputs, give
distinct natural images. Each user draws with its own seed, so no set is tuned on another's
images: the agreement reference set (lab.models.agreement, seed 1000), the default int8
calibration (lab.models.quantize, 2000) and the zoo's data-dependent initialisation
(lab.models.datainit, 3000, in the export worker). Inputs that are not images (tokens,
tabular) keep seeded random data.
"""
from __future__ import annotations

from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_SIDE = 16  # smaller inputs are not treated as photographs (digits_cnn's 8x8 has its own set)
CROP_SHARE = (0.12, 0.6)  # crop side as a share of the photo's short side


def is_image(run_shape: list[int] | tuple[int, ...], dtype: str) -> bool:
    """A float input of shape [N, C, H, W] with C in (1, 3) and H, W >= MIN_SIDE."""
    shape = list(run_shape)
    return (dtype.startswith("float") and len(shape) == 4 and shape[1] in (1, 3)
            and min(shape[2:]) >= MIN_SIDE)


def describe(seed: int, n: int) -> str:
    """The source string recorded with a set of these images."""
    return (f"natural images: {n} crops of sklearn's sample photos (seed {seed}), "
            "ImageNet-normalised")


def images(run_shape: list[int] | tuple[int, ...], n: int, seed: int,
           dtype: str = "float32") -> Any:
    """Array [n, *run_shape] (run_shape [B, C, H, W]); each of the n x B images its own crop."""
    import numpy as np
    shape = tuple(int(d) for d in run_shape)
    batch, channels, height, width = shape
    rng = np.random.RandomState(seed)
    photos = _photos()
    out = np.empty((n,) + shape, dtype=dtype)
    for i in range(n):
        for b in range(batch):
            out[i, b] = _crop(photos[(i * batch + b) % len(photos)], rng, channels, height, width)
    return out


def _photos() -> list[Any]:
    from sklearn.datasets import load_sample_images  # the files ship inside the wheel
    return list(load_sample_images().images)


def _crop(photo: Any, rng: Any, channels: int, height: int, width: int) -> Any:
    """One crop [C, H, W]: random size and place at the run shape's aspect, maybe mirrored."""
    import numpy as np
    from PIL import Image
    ph, pw = photo.shape[:2]
    share = rng.uniform(*CROP_SHARE)
    ch = max(2, int(min(ph, pw) * share))
    cw = min(pw, max(2, round(ch * width / height)))
    top, left = rng.randint(0, ph - ch + 1), rng.randint(0, pw - cw + 1)
    crop = photo[top:top + ch, left:left + cw]
    if rng.rand() < 0.5:
        crop = crop[:, ::-1]
    img = Image.fromarray(np.ascontiguousarray(crop)).resize((width, height), Image.BILINEAR)
    x = np.asarray(img, dtype="float32") / 255.0  # H, W, 3
    if channels == 1:
        gray = x @ np.array([0.299, 0.587, 0.114], dtype="float32")
        return ((gray - float(np.mean(IMAGENET_MEAN))) / float(np.mean(IMAGENET_STD)))[None]
    x = (x - np.array(IMAGENET_MEAN, dtype="float32")) / np.array(IMAGENET_STD, dtype="float32")
    return x.transpose(2, 0, 1)

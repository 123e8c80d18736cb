"""Writes the `digits` file dataset for examples/pytorch: 28x28 grey images of hand-drawn-looking
digits 0-9 (no real person's handwriting in it), MNIST's shape at a tenth of its size.

Each image is a digit's stroke template (polylines in a unit square), bent by a random affine map
(rotation, scale, shear, shift), with every control point jittered, drawn with a random pen width,
then blurred by sensor noise and a few specks. Deterministic: the same files every time.

    python3 make_digits.py <folder>      # writes <folder>/train.npz and <folder>/test.npz

Each .npz holds `images` (N x 28 x 28, uint8, 0 = background) and `labels` (N, uint8). Only numpy
is needed (the secd/base images have it).
"""

import math
import os
import sys

import numpy as np

SEED = 20261201
SIZE = 28
TRAIN, TEST = 6000, 1000


def _arc(cx, cy, rx, ry, start, end, steps=10):
    """Points on an ellipse from angle `start` to `end` (degrees, 0 = right, 90 = down)."""
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in np.linspace(start, end, steps)
    ]


# Each digit: a list of polylines, coordinates in [0, 1] with y pointing down.
TEMPLATES = {
    0: [_arc(0.5, 0.5, 0.28, 0.4, 0, 360, 16)],
    1: [[(0.36, 0.25), (0.52, 0.1), (0.52, 0.9)]],
    2: [_arc(0.5, 0.32, 0.27, 0.22, 190, 360, 8) + [(0.72, 0.45), (0.22, 0.9), (0.8, 0.9)]],
    3: [_arc(0.48, 0.3, 0.26, 0.2, 200, 450, 10), _arc(0.48, 0.7, 0.3, 0.2, 270, 520, 10)],
    4: [[(0.66, 0.9), (0.66, 0.1), (0.18, 0.64), (0.84, 0.64)]],
    5: [[(0.78, 0.1), (0.3, 0.1), (0.26, 0.46)] + _arc(0.48, 0.66, 0.3, 0.24, 225, 510, 10)],
    6: [_arc(0.62, 0.4, 0.32, 0.3, 290, 180, 6) + _arc(0.5, 0.68, 0.28, 0.22, 180, 540, 14)],
    7: [[(0.18, 0.1), (0.82, 0.1), (0.42, 0.9)], [(0.36, 0.5), (0.7, 0.5)]],
    8: [_arc(0.5, 0.29, 0.22, 0.19, 0, 360, 12), _arc(0.5, 0.7, 0.28, 0.21, 0, 360, 14)],
    9: [_arc(0.5, 0.32, 0.26, 0.22, 0, 360, 14), [(0.76, 0.32), (0.66, 0.9)]],
}

_CENTRES = (np.stack(np.meshgrid(np.arange(SIZE), np.arange(SIZE)), axis=-1).reshape(-1, 2) + 0.5) / SIZE


def _segments(polylines):
    starts, ends = [], []
    for line in polylines:
        for a, b in zip(line[:-1], line[1:]):
            starts.append(a)
            ends.append(b)
    return np.array(starts), np.array(ends)


def render(digit, rng):
    """One image of `digit` as floats in [0, 1]."""
    a, b = _segments(TEMPLATES[digit])
    # Now and then the pen skips a stroke, or adds a stray one.
    keep = rng.random(len(a)) > 0.04
    keep[rng.integers(len(a))] = True  # never all of them
    a, b = a[keep], b[keep]
    if rng.random() < 0.2:
        stray = rng.uniform(0.1, 0.9, (2, 2))
        a, b = np.concatenate([a, stray[:1]]), np.concatenate([b, stray[1:]])
    # The same small jitter moves a point wherever it appears (segment ends meet after jittering).
    points, index = np.unique(np.concatenate([a, b]), axis=0, return_inverse=True)
    points = points + rng.normal(0, 0.045, points.shape)
    angle = math.radians(rng.uniform(-20, 20))
    shear = rng.uniform(-0.35, 0.35)
    sx, sy = rng.uniform(0.6, 1.05), rng.uniform(0.7, 1.05)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    warp = rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([sx, sy])
    shift = rng.uniform(-0.1, 0.1, 2)
    points = (points - 0.5) @ warp.T + 0.5 + shift
    index = index.reshape(-1)
    a, b = points[index[: len(a)]], points[index[len(a) :]]
    # Distance from every pixel centre to the nearest stroke segment.
    ab = b - a
    t = ((_CENTRES[:, None, :] - a[None]) * ab[None]).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-9)[None]
    nearest = a[None] + np.clip(t, 0, 1)[..., None] * ab[None]
    distance = np.sqrt(((_CENTRES[:, None, :] - nearest) ** 2).sum(-1)).min(axis=1) * SIZE
    pen = rng.uniform(0.9, 1.8)  # half the pen width, in pixels
    ink = np.clip(pen + 0.5 - distance, 0, 1) * rng.uniform(0.7, 1.0)
    image = ink.reshape(SIZE, SIZE)
    if rng.random() < 0.25:  # a blot or a fold hides part of the digit
        y, x = rng.integers(0, SIZE - 8, 2)
        image[y : y + rng.integers(5, 11), x : x + rng.integers(5, 11)] = 0
    image = image + rng.normal(0, 0.2, (SIZE, SIZE))
    specks = rng.random((SIZE, SIZE)) < 0.01
    image[specks] += rng.uniform(0.4, 0.9, specks.sum())
    return np.clip(image, 0, 1)


def make(count, rng):
    """`count` images with balanced labels in a shuffled order."""
    labels = rng.permutation(np.arange(count) % 10).astype(np.uint8)
    images = np.stack([render(int(d), rng) for d in labels])
    return np.round(images * 255).astype(np.uint8), labels


def write(folder):
    """Write train.npz and test.npz into `folder` (created if missing)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(SEED)
    for name, count in (("train", TRAIN), ("test", TEST)):
        images, labels = make(count, rng)
        np.savez_compressed(os.path.join(folder, name + ".npz"), images=images, labels=labels)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 make_digits.py <folder>   (writes <folder>/train.npz and test.npz)")
    write(sys.argv[1])
    print("wrote %s/train.npz (%d images) and test.npz (%d images)" % (sys.argv[1], TRAIN, TEST))

"""The held-out real-depth dehazing sets of benchmarks/real_depth_haze.py: real depth that looks like depth, hazed
by the scattering model reproducibly, and apart from every photo the offline training default is made of."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from zoo.data.restoration import training_photos

from benchmarks.real_depth_haze import hazed_pairs, motorcycle_scene, oakd_scenes, relative_depth, scenes


def _thumbnail(image: np.ndarray) -> np.ndarray:
    grey = Image.fromarray((image * 255).astype(np.uint8) if image.dtype != np.uint8 else image).convert("L")
    x = np.asarray(grey.resize((32, 32), Image.BILINEAR), np.float64).ravel()
    x -= x.mean()
    return x / max(np.linalg.norm(x), 1e-9)


def test_oakd_scenes_are_real_indoor_depth():
    found = oakd_scenes()
    assert len(found) == 8
    for name, (clear, depth) in found.items():
        assert clear.shape[:2] == depth.shape and clear.shape[2] == 3, name
        low, high = np.percentile(depth, [1, 99])
        assert 0.3 < low < high < 20 and high / low > 1.8, (name, low, high)   # metres, a room's range


def test_motorcycle_depth_comes_from_its_ground_truth_disparity():
    import skimage.data

    (clear, depth), = motorcycle_scene().values()
    _, _, disparity = skimage.data.stereo_motorcycle()
    assert clear.shape == (500, 741, 3) and np.isfinite(depth).all() and (depth > 0).all()
    known = np.isfinite(disparity)
    larger = disparity[known] > np.median(disparity[known])
    assert depth[known][larger].mean() < depth[known][~larger].mean()  # more disparity, nearer


def test_hazed_pairs_are_reproducible_and_follow_the_scattering_model():
    first, again = hazed_pairs("motorcycle", versions=2, seed=3), hazed_pairs("motorcycle", versions=2, seed=3)
    assert len(first) == 2 and all(np.array_equal(a["hazy"], b["hazy"]) for a, b in zip(first, again, strict=True))
    (clear, depth), = scenes("motorcycle").values()
    for pair in first:
        assert 0.6 <= pair["beta"] <= 1.8 and 0.7 <= pair["airlight"] <= 1.0
        t = np.exp(-pair["beta"] * relative_depth(depth))[..., None]
        expected = clear * t + pair["airlight"] * (1 - t)
        assert np.abs(pair["hazy"] - expected).max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError, match="unknown held-out source 'kitti'"):
        scenes("kitti")


def test_held_out_images_are_none_of_the_training_photos():
    """No photo the offline default is made of resembles a held-out image (grey 32x32 thumbnails, correlation); the
    measure does recognise a held-out image in a resized, re-encoded copy of itself."""
    held_out = {**oakd_scenes(), **motorcycle_scene()}
    train = {name: _thumbnail(photo) for name, photo in training_photos().items()}
    for name, (clear, _) in held_out.items():
        probe = _thumbnail(clear)
        copy = np.asarray(Image.fromarray((clear * 255).astype(np.uint8)).resize((200, 150)))
        assert float(probe @ _thumbnail(copy)) > 0.95, name
        closest = max(train, key=lambda t: float(train[t] @ probe))
        assert float(train[closest] @ probe) < 0.8, (name, closest)

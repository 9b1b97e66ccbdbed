"""Paired restoration data: RESIDE and generic folder layouts, paired augmentation, the physical haze default and
the errors for bad data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from zoo.data.restoration import (
    AIRLIGHT_RANGE,
    BETA_RANGE,
    EVALUATION_ONLY,
    SYNTHETIC_NAME,
    SYNTHETIC_VERSION,
    DehazingData,
    PairedImages,
    find_pairs,
    synthesise_haze,
    training_photos,
    write_synthetic_haze,
)

from zoo.errors import DataError


def _png(path, h=16, w=16, value=None, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) if value is None else np.full((h, w, 3), value, np.uint8)
    Image.fromarray(array).save(path)
    return path


def test_reside_names_pair_by_the_prefix_and_generic_names_by_the_stem(tmp_path):
    its = tmp_path / "ITS"
    for name in ("1_1_0.84.png", "1_2_1.2.png", "12_1_0.6.png"):
        _png(its / "hazy" / name)
    _png(its / "clear" / "1.png")
    _png(its / "clear" / "12.jpg")  # OTS ships clear JPEGs
    pairs = find_pairs(its)
    assert [(h.name, c.name) for h, c in pairs] == [("12_1_0.6.png", "12.jpg"), ("1_1_0.84.png", "1.png"),
                                                    ("1_2_1.2.png", "1.png")]
    generic = tmp_path / "mine"
    _png(generic / "hazy" / "street_view.jpg")
    _png(generic / "gt" / "street_view.png")
    assert [(h.name, c.name) for h, c in find_pairs(generic)] == [("street_view.jpg", "street_view.png")]


def test_missing_partner_names_both_paths(tmp_path):
    _png(tmp_path / "hazy" / "7_1_0.8.png")
    _png(tmp_path / "clear" / "8.png")
    with pytest.raises(DataError, match=r"7_1_0\.8\.png has no clear partner.*clear/7\.png"):
        find_pairs(tmp_path)
    with pytest.raises(DataError, match="no hazy folder"):
        find_pairs(tmp_path / "clear")
    with pytest.raises(DataError, match="does not exist"):
        find_pairs(tmp_path / "nothing")


def test_size_mismatch_unreadable_file_and_small_images_are_named(tmp_path):
    _png(tmp_path / "hazy" / "1_1_0.8.png", 16, 16)
    _png(tmp_path / "clear" / "1.png", 16, 20)
    with pytest.raises(DataError, match=r"16x16 but its clear partner .*1\.png is 20x16"):
        PairedImages(find_pairs(tmp_path))[0]
    _png(tmp_path / "clear" / "1.png", 16, 16)
    with pytest.raises(DataError, match=r"smaller than the 32x32 training crop"):
        PairedImages(find_pairs(tmp_path), crop_size=32)[0]
    (tmp_path / "hazy" / "1_1_0.8.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read image .*1_1_0\.8\.png"):
        PairedImages(find_pairs(tmp_path))[0]


def test_sots_indoor_border_of_the_ground_truth_is_cropped(tmp_path):
    _png(tmp_path / "hazy" / "1400_1.png", 460, 620)
    clear = np.zeros((480, 640, 3), np.uint8) + 255
    clear[10:-10, 10:-10] = 7
    (tmp_path / "clear").mkdir()
    Image.fromarray(clear).save(tmp_path / "clear" / "1400.png")
    hazy, gt = PairedImages(find_pairs(tmp_path))[0]
    assert hazy.shape == gt.shape == (3, 460, 620) and torch.allclose(gt, torch.full_like(gt, 7 / 255))


def test_crops_and_rotations_are_applied_to_both_images_alike(tmp_path):
    rng = np.random.default_rng(0)
    hazy = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    _png(tmp_path / "hazy" / "1_1_0.8.png")
    _png(tmp_path / "clear" / "1.png")
    Image.fromarray(hazy).save(tmp_path / "hazy" / "1_1_0.8.png")
    Image.fromarray(255 - hazy).save(tmp_path / "clear" / "1.png")
    data = PairedImages(find_pairs(tmp_path), crop_size=16, rotate=True, repeats=8)
    assert len(data) == 8
    corners = set()
    for i in range(8):
        h, c = data[i]
        assert h.shape == c.shape == (3, 16, 16)
        torch.testing.assert_close(c, 1 - h, atol=1e-6, rtol=0)  # the same crop and rotation on both
        corners.add(float(h[0, 0, 0]))
    assert len(corners) > 1  # the crops differ


def test_physical_haze_model():
    clear = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    depth = np.full((8, 8), 0.5, np.float32)
    hazy = synthesise_haze(clear, depth, beta=1.2, airlight=0.9)
    t = np.exp(-0.6)
    np.testing.assert_allclose(hazy, clear * t + 0.9 * (1 - t), rtol=1e-6)


def _small_default(folder):
    """The offline default at a small size (one 128-px scale, 64-px tiles, two hazy versions): seconds to write."""
    return write_synthetic_haze(folder, tile=64, short_sides=(128,), hazy_per_clear=2)


def test_offline_default_is_written_once_in_reside_layout_from_real_photos(tmp_path):
    write = lambda: _small_default(tmp_path / "haze")  # noqa: E731
    folder = write()
    assert "SIMULATED" in (folder / "README.txt").read_text()
    stamp = (folder / "VERSION").stat().st_mtime_ns
    assert write() == folder and (folder / "VERSION").stat().st_mtime_ns == stamp
    (folder / "VERSION").write_text("0\n")  # a cache written by an older zoo is replaced, not kept
    (folder / "stale.txt").write_text("old")
    assert write() == folder and not (folder / "stale.txt").exists()
    assert (folder / "VERSION").read_text().strip() == SYNTHETIC_VERSION
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging or old copy left behind
    clear_ids = {}
    for part in ("train", "val", "test"):
        pairs = find_pairs(folder / part)
        assert pairs
        for hazy, _clear in pairs:
            _, airlight, beta = hazy.stem.split("_")
            assert AIRLIGHT_RANGE[0] <= float(airlight) <= AIRLIGHT_RANGE[1]
            assert BETA_RANGE[0] <= float(beta) <= BETA_RANGE[1]
        clear_ids[part] = {np.asarray(Image.open(c)).tobytes() for _, c in pairs}
    assert not clear_ids["train"] & clear_ids["test"] and not clear_ids["train"] & clear_ids["val"]
    _small_default(tmp_path / "cache" / SYNTHETIC_NAME)  # the module then reads it instead of the full default
    data = DehazingData(crop_size=32, batch_size=4, num_workers=0)
    assert "SIMULATED" in data.describe()
    data.setup("fit")
    hazy, clear = next(iter(data.train_dataloader()))
    assert hazy.shape == clear.shape == (4, 3, 32, 32) and hazy.dtype == torch.float32
    assert float(hazy.min()) >= 0.0 and float(hazy.max()) <= 1.0


def test_offline_pairs_obey_the_scattering_model_over_a_scene_depth(tmp_path):
    """From each written pair and the A and beta in its name, t = (A - I) / (A - J) comes out the same in every
    colour channel (up to 8-bit rounding), lies in [exp(-beta), 1] (relative depth in [0, 1]), and varies over the
    tile: haze over a scene's depth, not a uniform veil."""
    folder = _small_default(tmp_path / "haze")
    varied = 0
    pairs = find_pairs(folder / "train")
    for hazy_path, clear_path in pairs:
        _, airlight, beta = (float(v) for v in hazy_path.stem.split("_"))
        hazy = np.asarray(Image.open(hazy_path), np.float64) / 255
        clear = np.asarray(Image.open(clear_path), np.float64) / 255
        gap = airlight - clear
        usable = np.abs(gap) > 0.25                                      # (H, W, 3): t well determined there
        t = np.where(usable, (airlight - hazy) / np.where(usable, gap, 1), np.nan)
        tolerance = 1.5 / 255 / 0.25
        several = t[usable.sum(-1) >= 2]                                 # pixels with two or three usable channels
        spread = np.nanmax(several, -1) - np.nanmin(several, -1)
        assert several.size == 0 or spread.max() < 2 * tolerance, hazy_path.name  # one t for all channels
        assert np.nanmin(t) > np.exp(-beta) - tolerance and np.nanmax(t) < 1 + tolerance, hazy_path.name
        per_pixel = np.nanmean(t[usable.any(-1)], -1)
        varied += per_pixel.size > 0 and np.percentile(per_pixel, 95) - np.percentile(per_pixel, 5) > 0.1
    assert varied > len(pairs) // 3


def test_training_photos_never_include_the_reserved_motorcycle():
    assert "motorcycle" in EVALUATION_ONLY
    assert not set(training_photos()) & set(EVALUATION_ONLY)


def test_user_folders_split_by_clear_image_and_bad_options(tmp_path):
    for i in range(1, 11):
        _png(tmp_path / "clear" / f"{i}.png", seed=i)
        for k in (1, 2):
            _png(tmp_path / "hazy" / f"{i}_{k}_0.8.png", seed=10 * i + k)
    data = DehazingData(root=str(tmp_path), val_fraction=0.2, crop_size=8, num_workers=0)
    data.setup("fit")
    assert len(data.train_pairs) == 16 and len(data.val_pairs) == 4 and data.test_pairs == data.val_pairs
    assert not {c for _, c in data.train_pairs} & {c for _, c in data.val_pairs}
    with pytest.raises(DataError, match="multiple of 4"):
        DehazingData(crop_size=30)
    with pytest.raises(DataError, match="predict_path"):
        DehazingData(num_workers=0).setup("predict")


def test_evaluation_batches_of_mixed_sizes_say_to_batch_one_image(tmp_path):
    """--data.eval_batch_size 16 (the quick start's, for its 128x128 tiles) on a test folder of mixed sizes: a
    DataError that says what to do, not torch's stacking error; equal sizes batch together."""
    for i, (h, w) in enumerate(((16, 16), (16, 16), (20, 12)), start=1):
        _png(tmp_path / "clear" / f"{i}.png", h, w, seed=i)
        _png(tmp_path / "hazy" / f"{i}_1_0.8.png", h, w, seed=10 + i)
    data = DehazingData(test_root=str(tmp_path), eval_batch_size=2, num_workers=0)
    data.setup("test")
    loader = iter(data.test_dataloader())
    hazy, clear = next(loader)
    assert hazy.shape == clear.shape == (2, 3, 16, 16)
    data = DehazingData(test_root=str(tmp_path), eval_batch_size=3, num_workers=0)
    data.setup("test")
    with pytest.raises(DataError, match=r"different sizes \(H x W: 16x16, 20x12\).*eval_batch_size 1"):
        next(iter(data.test_dataloader()))

"""Held-out dehazing pairs hazed physically over REAL depth: evaluation only, never used for training or tuning.

Two sources, neither of which the training data (``zoo.data.restoration``) reads:

- ``oakd``: 8 indoor scenes from the OAK-D stereo pairs shipped in the ``stereodemo`` wheel (grey, real stereo ->
  semi-global matching -> metric depth; noisy on textureless walls), committed in ``benchmarks/data/
  oakd_stereo_depth`` (how they were made: ``benchmarks/make_oakd_depth.py`` and the README there);
- ``motorcycle``: scikit-image's ``stereo_motorcycle`` (Middlebury 2014, colour) with its structured-light
  ground-truth disparity -> depth Z = f B / (d + doffs) (occlusions filled from the farther side of each row).

Each scene is hazed ``versions`` times with I = J t + A (1 - t), t = exp(-beta d), d = depth / (99th percentile of
depth) clipped to [0, 1] (relative depth: the farthest parts of a scene reach the haze of beta), beta ~ U(0.6, 1.8)
and a grey A ~ U(0.7, 1.0) (RESIDE's ranges), drawn from a fixed seed so every method sees the same pairs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

OAKD_FOLDER = Path(__file__).parent / "data" / "oakd_stereo_depth"
MOTORCYCLE_CALIBRATION = {"f": 994.978, "baseline_mm": 193.001, "doffs": 31.086}  # scikit-image's docstring
SOURCES = ("oakd", "motorcycle")


def oakd_scenes() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (clear float32 RGB (H, W, 3) in [0, 1] (grey, repeated), depth float32 (H, W) in metres)."""
    scenes = {}
    for depth_path in sorted(OAKD_FOLDER.glob("*_depth.png")):
        name = depth_path.name[: -len("_depth.png")]
        grey = np.asarray(Image.open(OAKD_FOLDER / f"{name}.png").convert("L"), dtype=np.float32) / 255
        depth = np.asarray(Image.open(depth_path), dtype=np.float32) / 1000
        scenes[name] = (np.repeat(grey[..., None], 3, axis=-1), depth)
    if not scenes:
        raise FileNotFoundError(f"no <scene>_depth.png in {OAKD_FOLDER}")
    return scenes


def _fill_rows_from_farther_side(disparity: np.ndarray) -> np.ndarray:
    """NaN disparities (occlusions) -> the smaller (farther) of the nearest valid values left and right in the row."""
    out = disparity.copy()
    h, w = out.shape
    cols = np.arange(w)
    for y in range(h):
        row, valid = out[y], np.isfinite(out[y])
        if not valid.any():
            continue
        left_index = np.maximum.accumulate(np.where(valid, cols, -1))
        right_index = np.minimum.accumulate(np.where(valid, cols, w)[::-1])[::-1]
        left = np.where(left_index >= 0, row[np.clip(left_index, 0, w - 1)], np.inf)
        right = np.where(right_index < w, row[np.clip(right_index, 0, w - 1)], np.inf)
        out[y] = np.where(valid, row, np.minimum(left, right))
    return out


def motorcycle_scene() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"motorcycle": (clear float32 RGB (500, 741, 3), depth float32 (500, 741) in metres)} from scikit-image."""
    import skimage.data

    left, _right, disparity = skimage.data.stereo_motorcycle()
    disparity = _fill_rows_from_farther_side(np.asarray(disparity, dtype=np.float32))
    c = MOTORCYCLE_CALIBRATION
    depth = c["f"] * c["baseline_mm"] / 1000 / (disparity + c["doffs"])
    return {"motorcycle": (left.astype(np.float32) / 255, depth.astype(np.float32))}


def scenes(source: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The (clear, depth) scenes of a held-out source ("oakd" or "motorcycle")."""
    if source == "oakd":
        return oakd_scenes()
    if source == "motorcycle":
        return motorcycle_scene()
    raise ValueError(f"unknown held-out source {source!r}; one of {', '.join(SOURCES)}")


def relative_depth(depth: np.ndarray) -> np.ndarray:
    """Depth (H, W) -> depth / its 99th percentile, clipped to [0, 1]."""
    return np.clip(depth / np.percentile(depth, 99), 0.0, 1.0).astype(np.float32)


def hazed_pairs(source: str, versions: int = 4, seed: int = 0) -> list[dict]:
    """Hazy/clear pairs of a held-out source: dicts with name, hazy and clear (float32 (H, W, 3) in [0, 1]),
    transmission (H, W), airlight and beta; the same pairs for the same seed."""
    from zoo.data.restoration import synthesise_haze

    rng = np.random.default_rng(seed)
    pairs = []
    for name, (clear, depth) in scenes(source).items():
        d = relative_depth(depth)
        for _ in range(versions):
            beta, airlight = float(rng.uniform(0.6, 1.8)), float(rng.uniform(0.7, 1.0))
            hazy = synthesise_haze(clear, d, beta, airlight)
            hazy = np.round(hazy * 255) / 255  # stored as 8-bit, as a user's photo would be
            pairs.append({"name": name, "hazy": hazy.astype(np.float32), "clear": clear, "beta": beta,
                          "airlight": airlight, "transmission": np.exp(-beta * d)})
    return pairs

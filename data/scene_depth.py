"""Depth maps with the structure of real scenes for a photo that has none: a ray-cast scene layout (a room, a street
or open ground under a far horizon, or a tilted surface for close-ups) with the photo's own segments stood up on
it as objects.

Real depth (NYU, Middlebury, KITTI) is piecewise smooth: planes (floor, walls, ceiling, ground) that recede
towards a vanishing point, and objects in front of them whose depth jumps at their outline and equals the depth of
the floor where they stand. :func:`scene_depth` builds that for any photo:

1. layout: a pinhole camera (focal length 0.6-1.2 image widths, principal point anywhere in the middle of the
   photo) looks into a box room (floor, ceiling, side walls, back wall), a street (ground, side walls, far
   horizon), open ground under a far horizon, or a tilted surface (close-ups and textures); each pixel's depth is
   the distance along the optical axis to the first plane its ray meets;
2. objects: the photo is segmented (Felzenszwalb and Huttenlocher's graph segmentation, on the photo itself, so
   depth edges fall on image edges); segments that are not too large are stood up as upright objects whose depth
   is the layout's depth under their lowest pixel (where they touch the floor), kept only where they are nearer
   than the layout.

The result is metric-like depth (metres, up to ``far``); :func:`relative_depth` scales it by its 99th percentile
for the scattering model. SIMULATED geometry: it is not measured depth, and says nothing true about the photo's
real distances.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LAYOUTS", "layout_depth", "object_segments", "relative_depth", "scene_depth"]

LAYOUTS = ("room", "street", "ground", "surface")
LAYOUT_WEIGHTS = (0.4, 0.2, 0.25, 0.15)


def layout_depth(h: int, w: int, rng: np.random.Generator, kind: str | None = None, far: float = 100.0) -> np.ndarray:
    """Depth (H, W) float32 in metres of a random scene layout of ``kind`` (one of LAYOUTS; random if None)."""
    kind = kind or str(rng.choice(LAYOUTS, p=LAYOUT_WEIGHTS))
    if kind not in LAYOUTS:
        raise ValueError(f"unknown layout {kind!r}; one of {', '.join(LAYOUTS)}")
    focal = w * rng.uniform(0.6, 1.2)
    cx, cy = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.2, 0.6)
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = (u - cx) / focal, (v - cy) / focal          # ray direction (x, y, 1); y grows downwards
    if kind == "surface":                              # a tilted plane: z = z0 / (1 - a x - b y)
        a, b = rng.uniform(-0.6, 0.6), rng.uniform(-0.8, 0.3)
        return np.clip(rng.uniform(0.5, 3.0) / np.clip(1 - a * x - b * y, 0.1, None), 0, far).astype(np.float32)
    depth = np.full((h, w), far, np.float32)
    tiny = 1e-6

    def hit(distance: float, direction: np.ndarray) -> None:
        """Planes at ``distance`` along an axis whose ray component is ``direction``: z = distance / direction."""
        np.minimum(depth, np.where(direction > tiny, distance / np.maximum(direction, tiny), far), out=depth)

    hit(rng.uniform(1.0, 1.8), y)                          # floor / ground below the camera
    if kind == "room":
        hit(rng.uniform(0.8, 1.6), -y)                     # ceiling
        hit(rng.uniform(1.0, 3.0), -x)                     # left wall
        hit(rng.uniform(1.0, 3.0), x)                      # right wall
        np.minimum(depth, rng.uniform(3.0, 9.0), out=depth)  # back wall
    elif kind == "street":
        hit(rng.uniform(3.0, 10.0), -x)
        hit(rng.uniform(3.0, 10.0), x)
        np.minimum(depth, rng.uniform(30.0, far), out=depth)
    else:                                                  # open ground up to a far horizon
        np.minimum(depth, rng.uniform(20.0, far), out=depth)
    return depth


def object_segments(photo: np.ndarray, scale: float = 150.0, min_size: int = 60) -> np.ndarray:
    """Segment labels (H, W) int of a uint8 RGB photo (Felzenszwalb-Huttenlocher graph segmentation)."""
    from skimage.segmentation import felzenszwalb

    return felzenszwalb(photo, scale=scale, sigma=0.8, min_size=min_size)


def scene_depth(segments: np.ndarray, rng: np.random.Generator, kind: str | None = None,
                object_fraction: float = 0.6, max_object_area: float = 0.2) -> np.ndarray:
    """Depth (H, W) float32 in metres: a random layout with a random ``object_fraction`` of the photo's segments
    (those under ``max_object_area`` of the photo) stood up as upright objects on it.

    Args:
        segments: (H, W) integer segment labels of the photo (e.g. :func:`object_segments`).
    """
    h, w = segments.shape
    depth = layout_depth(h, w, rng, kind)
    labels = segments.ravel()
    count = int(labels.max()) + 1
    area = np.bincount(labels, minlength=count)
    rows = np.repeat(np.arange(h), w)
    lowest = np.full(count, -1)
    np.maximum.at(lowest, labels, rows)
    col_sum = np.bincount(labels, weights=np.tile(np.arange(w), h), minlength=count)
    column = (col_sum / np.maximum(area, 1)).astype(int)
    chosen = (area > 0) & (area < max_object_area * h * w) & (rng.random(count) < object_fraction)
    stand = depth[np.clip(lowest, 0, h - 1), np.clip(column, 0, w - 1)] * rng.uniform(0.85, 1.0, count)
    object_depth = np.where(chosen, stand, np.inf)[segments]
    return np.minimum(depth, object_depth).astype(np.float32)


def relative_depth(depth: np.ndarray) -> np.ndarray:
    """Depth (H, W) -> depth / its 99th percentile, clipped to [0, 1] (the d of t = exp(-beta d))."""
    return np.clip(depth / max(float(np.percentile(depth, 99)), 1e-6), 0.0, 1.0).astype(np.float32)

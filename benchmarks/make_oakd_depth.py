"""Write the held-out real-depth dehazing scenes of ``benchmarks/data/oakd_stereo_depth`` from the OAK-D stereo
pairs that the ``stereodemo`` wheel (MIT, Nicolas Burrus) ships in ``stereodemo/datasets/oak-d``.

Each rectified grey pair (640x480, baseline 0.075 m, fx 451.03 px, from the wheel's calibration file) is matched
with OpenCV's semi-global block matching; the disparity is cropped to the valid rectified area (and the 64 columns
on the left that the disparity search cannot reach), its holes (textureless walls, occlusions) filled by
inpainting a quarter-resolution copy, median-filtered, smoothed by a guided filter with the photo as guide, and
turned into metric depth Z = fx B / disparity. Photo and depth are halved to about 288x230 and written as an 8-bit
grey PNG and a 16-bit PNG of depth in millimetres. Scenes whose matching fails on large white walls (stairs) or
that are close-ups of hands (pov_controllers, pov_hands, selfie) are left out.

    pip download --no-deps -d /tmp/sd stereodemo==0.7 && unzip -q /tmp/sd/stereodemo-0.7-py3-none-any.whl \\
        'stereodemo/datasets/*' -d /tmp/sd
    python -m benchmarks.make_oakd_depth /tmp/sd/stereodemo/datasets/oak-d
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

SCENES = ("bedroom_chair", "corridor", "cycles", "desk", "donkey_toy", "kid_bedroom", "living_room", "toy")
OUT = Path(__file__).parent / "data" / "oakd_stereo_depth"
NUM_DISPARITIES = 64


def _guided(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    box = lambda x: cv2.boxFilter(x, -1, (2 * radius + 1,) * 2, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    mean_i, mean_p = box(guide), box(src)
    a = (box(guide * src) - mean_i * mean_p) / (box(guide * guide) - mean_i ** 2 + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def disparity(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Dense disparity (H, W) in pixels of a rectified grey pair, holes filled (0 where never matched)."""
    block = 7
    matcher = cv2.StereoSGBM_create(minDisparity=0, numDisparities=NUM_DISPARITIES, blockSize=block,
                                    P1=8 * block ** 2, P2=32 * block ** 2, uniquenessRatio=5,
                                    speckleWindowSize=200, speckleRange=2, disp12MaxDiff=2,
                                    mode=cv2.STEREO_SGBM_MODE_HH)
    return matcher.compute(left, right).astype(np.float32) / 16


def fill(disp: np.ndarray, guide: np.ndarray) -> np.ndarray:
    valid = disp > 1
    h, w = disp.shape
    small = cv2.resize(np.where(valid, disp, 0), (w // 4, h // 4), interpolation=cv2.INTER_NEAREST)
    holes = cv2.resize((~valid).astype(np.uint8), (w // 4, h // 4), interpolation=cv2.INTER_NEAREST)
    scale = float(small.max())
    inpainted = cv2.inpaint((small / scale * 255).astype(np.uint8), holes, 15, cv2.INPAINT_TELEA)
    coarse = cv2.resize(inpainted.astype(np.float32) / 255 * scale, (w, h), interpolation=cv2.INTER_LINEAR)
    dense = cv2.medianBlur(np.where(valid, disp, coarse).astype(np.float32), 5)
    return np.maximum(_guided(guide.astype(np.float32) / 255, dense, 8, 1e-3), 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("oakd", help="stereodemo/datasets/oak-d of the unpacked stereodemo 0.7 wheel")
    args = parser.parse_args()
    root = Path(args.oakd)
    calibration = json.loads((root / "stereodemo_calibration.json").read_text())
    fx, baseline = calibration["fx"], calibration["baseline_meters"]
    x0, y0, x1, _ = calibration["left_image_rect_normalized"]
    OUT.mkdir(parents=True, exist_ok=True)
    for name in SCENES:
        left = np.asarray(Image.open(root / f"{name}_left.png").convert("L"))
        right = np.asarray(Image.open(root / f"{name}_right.png").convert("L"))
        h, w = left.shape
        top, right_edge = round(y0 * h), round(x1 * w)
        left_edge = max(round(x0 * w), NUM_DISPARITIES)
        crop = (slice(top, h), slice(left_edge, right_edge))
        disp = fill(disparity(left, right)[crop], left[crop])
        depth_mm = fx * baseline / disp * 1000
        size = ((right_edge - left_edge) // 2, (h - top) // 2)
        Image.fromarray(left[crop]).resize(size, Image.BICUBIC).save(OUT / f"{name}.png", optimize=True)
        depth_small = cv2.resize(depth_mm, size, interpolation=cv2.INTER_AREA)
        Image.fromarray(np.clip(depth_small, 0, 65535).astype(np.uint16)).save(OUT / f"{name}_depth.png")
        low, high = np.percentile(depth_small, [1, 99]) / 1000
        print(name, size, f"depth {low:.2f}-{high:.2f} m")


if __name__ == "__main__":
    main()

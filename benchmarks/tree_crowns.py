"""A small REAL detection set, offline: the tree-crown photos that the DeepForest package ships (MIT licence),
tiled into a YOLO-format folder that ``zoo train vision/yolo9tr --data.root <folder>/data.yaml`` reads.

DeepForest (Weinstein et al., NEON airborne RGB, 10 cm per pixel) bundles four hand-annotated photos as Pascal VOC
XML: ``2019_YELL_2_528000_4978000_image_crop2`` (2299 x 2472, 574 crowns), ``2019_YELL_2_541000_4977000_image_crop``
(1249 x 1035, 279 crowns), ``OSBS_029`` (400 x 400, 61 crowns, another site: Florida) and ``SOAP_061`` (400 x 400,
37 crowns labelled Alive / Dead, another site: California). This script reads them from the wheel itself (no
DeepForest install, none of its dependencies: ``pip download deepforest==2.1.0 --no-deps``) and cuts them into
tiles of about ``--tile`` pixels. Boxes cut by a tile's border are kept clipped when at least ``--min-visible`` of
their area lies inside, else left out (and counted).

Splits keep whole photos apart from the test set:

- train: the tiles of the large Yellowstone photo except its last row of tiles;
- val: that last row (same photo, other trees);
- test: every tile of the second Yellowstone photo (a plot 13 km away) plus OSBS_029 and SOAP_061 (other sites),
  so the test set holds trees the training never saw, on photos it never saw. One class, ``tree``.

    pip download deepforest==2.1.0 --no-deps -d /tmp/df
    python -m benchmarks.tree_crowns /tmp/df/deepforest-2.1.0-py3-none-any.whl /tmp/tree_crowns
    zoo train vision/yolo9tr --recipe small_real --data.root /tmp/tree_crowns/data.yaml
"""

from __future__ import annotations

import argparse
import io
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

PHOTOS = {  # photo -> split ("trainval": training tiles with the last row held out for validation)
    "2019_YELL_2_528000_4978000_image_crop2": "trainval",
    "2019_YELL_2_541000_4977000_image_crop": "test",
    "OSBS_029": "test",
    "SOAP_061": "test",
}
IMAGE_SUFFIXES = (".png", ".tif", ".jpg")


@dataclass
class Photo:
    name: str
    image: np.ndarray  # (H, W, 3) uint8
    boxes: np.ndarray  # (n, 4) x1y1x2y2 pixels


def read_photos(source: Path) -> list[Photo]:
    """The annotated photos of a DeepForest wheel (or of its unzipped ``deepforest/data`` folder)."""
    if source.is_file():
        archive = zipfile.ZipFile(source)
        files = {Path(n).name: n for n in archive.namelist() if n.startswith("deepforest/data/")}

        def read(name: str) -> bytes:
            return archive.read(files[name])
    else:
        files = {p.name: p for p in source.rglob("*") if p.is_file()}

        def read(name: str) -> bytes:
            return Path(files[name]).read_bytes()

    photos = []
    for name in PHOTOS:
        if f"{name}.xml" not in files:
            raise FileNotFoundError(f"{source}: no {name}.xml (is it a deepforest 2.x wheel or data folder?)")
        root = ET.fromstring(read(f"{name}.xml"))
        boxes = [[float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
                 for o in root.iter("object")]
        image_name = next(name + s for s in IMAGE_SUFFIXES if name + s in files)
        image = np.asarray(Image.open(io.BytesIO(read(image_name))).convert("RGB"))
        photos.append(Photo(name, image, np.asarray(boxes, np.float32).reshape(-1, 4)))
    return photos


def tile_grid(length: int, tile: int) -> list[tuple[int, int]]:
    """Equal tiles of about ``tile`` pixels covering [0, length): [(start, end), ...]."""
    count = max(1, round(length / tile))
    edges = np.linspace(0, length, count + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def cut(photo: Photo, x0: int, y0: int, x1: int, y1: int, min_visible: float) -> tuple[np.ndarray, np.ndarray, int]:
    """(tile image, boxes (n, 4) in tile pixels, boxes left out) of the window [x0, x1) x [y0, y1)."""
    b = photo.boxes
    clipped = np.stack([b[:, 0].clip(x0, x1), b[:, 1].clip(y0, y1), b[:, 2].clip(x0, x1), b[:, 3].clip(y0, y1)], 1)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    touches = inside > 0
    keep = touches & (inside >= min_visible * area)
    tile_boxes = clipped[keep] - np.array([x0, y0, x0, y0], np.float32)
    return photo.image[y0:y1, x0:x1], tile_boxes, int((touches & ~keep).sum())


def write_yolo(photos: list[Photo], out: Path, tile: int = 400, min_visible: float = 0.3) -> dict[str, tuple[int, int]]:
    """Tile ``photos`` into ``out`` (images/<split>/, labels/<split>/, data.yaml); returns split -> (images, boxes)."""
    counts = {s: [0, 0] for s in ("train", "val", "test")}
    dropped = 0
    for photo in photos:
        h, w = photo.image.shape[:2]
        rows, cols = tile_grid(h, tile), tile_grid(w, tile)
        for r, (y0, y1) in enumerate(rows):
            for c, (x0, x1) in enumerate(cols):
                split = PHOTOS[photo.name]
                if split == "trainval":
                    split = "val" if r == len(rows) - 1 else "train"
                image, boxes, lost = cut(photo, x0, y0, x1, y1, min_visible)
                dropped += lost
                stem = f"{photo.name}_r{r}c{c}"
                for kind in ("images", "labels"):
                    (out / kind / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(out / "images" / split / f"{stem}.png")
                th, tw = image.shape[:2]
                lines = [f"0 {(x0b + x1b) / 2 / tw:.6f} {(y0b + y1b) / 2 / th:.6f} {(x1b - x0b) / tw:.6f} "
                         f"{(y1b - y0b) / th:.6f}" for x0b, y0b, x1b, y1b in boxes.tolist()
                         if x1b - x0b >= 1 and y1b - y0b >= 1]
                (out / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
                counts[split][0] += 1
                counts[split][1] += len(lines)
    (out / "data.yaml").write_text(yaml.safe_dump({
        "path": str(out.resolve()), "train": "images/train", "val": "images/val", "test": "images/test",
        "nc": 1, "names": ["tree"]}, sort_keys=False))
    (out / "README.md").write_text(
        "Tree crowns from the DeepForest package's bundled annotated photos (MIT licence, Weinstein et al.; NEON "
        f"airborne RGB), tiled at about {tile} px by zoo's benchmarks/tree_crowns.py. Splits: "
        + ", ".join(f"{k} {v[0]} tiles / {v[1]} boxes" for k, v in counts.items())
        + f"; {dropped} boxes cut by a tile border with less than {min_visible:.0%} inside were left out.\n")
    return {k: (v[0], v[1]) for k, v in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="deepforest-2.x wheel, or its unzipped deepforest/data folder")
    parser.add_argument("out", type=Path, help="output folder (YOLO layout with data.yaml)")
    parser.add_argument("--tile", type=int, default=400, help="tile side in pixels (about)")
    parser.add_argument("--min-visible", type=float, default=0.3)
    args = parser.parse_args()
    counts = write_yolo(read_photos(args.source), args.out, args.tile, args.min_visible)
    print(f"wrote {args.out / 'data.yaml'}: " + ", ".join(f"{k} {n} tiles / {b} boxes" for k, (n, b) in counts.items()))


if __name__ == "__main__":
    main()

"""Scene-structured depth for the offline haze: layouts recede towards their vanishing point, segments stand on the
floor as objects nearer than the layout, and the relative depth is what the scattering model takes."""

from __future__ import annotations

import numpy as np
import pytest
from zoo.data.scene_depth import LAYOUTS, layout_depth, object_segments, relative_depth, scene_depth


@pytest.mark.parametrize("kind", ["room", "street", "ground"])
def test_the_floor_recedes_towards_the_horizon_and_the_layout_is_bounded(kind):
    depth = layout_depth(96, 128, np.random.default_rng(3), kind, far=100.0)
    assert depth.shape == (96, 128) and depth.dtype == np.float32
    assert float(depth.min()) > 0 and float(depth.max()) <= 100.0
    column = depth[:, 64]
    bottom = column[-20:]                       # the floor under the camera: nearer row after row downwards
    assert np.all(np.diff(bottom) <= 1e-6) and bottom[-1] < bottom[0]
    if kind == "room":
        assert float(depth.max()) <= 9.0       # nothing beyond the back wall
    else:
        assert float(depth.max()) >= 20.0      # an open horizon far away


def test_every_layout_kind_and_a_clear_error_for_an_unknown_one():
    rng = np.random.default_rng(0)
    for kind in LAYOUTS:
        assert np.isfinite(layout_depth(32, 48, rng, kind)).all()
    with pytest.raises(ValueError, match="unknown layout 'cave'"):
        layout_depth(8, 8, rng, "cave")


def test_a_segment_stands_on_the_floor_at_the_depth_where_it_touches_it():
    segments = np.zeros((64, 64), np.int64)
    segments[20:44, 24:40] = 1                                  # one object segment on a large background one
    layout = layout_depth(64, 64, np.random.default_rng(7), "room")
    depth = scene_depth(segments, np.random.default_rng(7), "room", object_fraction=1.0)
    inside = depth[20:44, 24:40]
    stand = float(inside[-1, 7])                                # at its foot
    assert 0.85 * layout[43, 31] - 1e-4 <= stand <= layout[43, 31] + 1e-4   # the floor's depth where it stands
    np.testing.assert_allclose(inside, np.minimum(layout[20:44, 24:40], stand), rtol=1e-6)  # upright, one depth
    assert np.mean(np.isclose(inside, stand)) > 0.5             # ... except where the layout is nearer still
    assert np.all(depth <= layout + 1e-5)                       # objects only ever come nearer
    assert np.abs(depth[19, 24:40] - stand).max() > 1e-3        # a depth edge on the object's outline


def test_segments_follow_the_photo():
    photo = np.full((64, 64, 3), 30, np.uint8)
    photo[20:44, 24:40] = 220
    segments = object_segments(photo, scale=50, min_size=20)
    assert len(np.unique(segments[22:42, 26:38])) == 1 and segments[30, 30] != segments[5, 5]


def test_relative_depth_is_scaled_by_its_99th_percentile():
    depth = np.linspace(1, 100, 10_000, dtype=np.float32).reshape(100, 100)
    d = relative_depth(depth)
    assert float(d.max()) == 1.0 and float(d.min()) == pytest.approx(1 / np.percentile(depth, 99))
    assert np.mean(d == 1.0) == pytest.approx(0.01, abs=0.002)

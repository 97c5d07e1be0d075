"""What the CAM panel says about maps that cannot be read, and how it names layers."""

from __future__ import annotations

import numpy as np

from analysis.explain.cam_views import layer_label, map_problem
from analysis.explain.layers import MIN_SIDE, LayerInfo


def test_flat_maps_get_a_plain_explanation():
    empty = map_problem(np.zeros((64, 64), np.float32), "layer4", (2, 2))
    assert "no location" in empty and "2×2" in empty and "too coarse" in empty
    same = map_problem(np.full((64, 64), 0.4, np.float32), "layer3", (8, 8))
    assert "the same everywhere" in same and "too coarse" not in same
    assert "nan" not in (empty + same).lower()


def test_a_map_with_structure_has_no_problem():
    cam = np.zeros((64, 64), np.float32)
    cam[10:20, 10:20] = 1.0
    assert map_problem(cam, "layer4", (2, 2)) is None  # coarse, but it points somewhere


def test_layer_labels_show_the_map_size_and_mark_coarse_layers():
    coarse = LayerInfo("layer4", (2, 2), 512)
    fine = LayerInfo("layer2", (MIN_SIDE, MIN_SIDE), 128)
    assert layer_label(coarse, default="layer2") == "layer4 (2×2 map) — too coarse to say where"
    assert layer_label(fine, default="layer2") == f"layer2 ({MIN_SIDE}×{MIN_SIDE} map) — default"

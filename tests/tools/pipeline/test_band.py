"""The bench's budget band: 1% unless one unit of the model is coarser, then one unit's share, and the reason said."""

from __future__ import annotations

import torch

from prune import find_groups, keep_fraction
from tools.controllers.load import load_controller
from tools.pipeline.prune import band_tolerance, unit_share


def test_a_tiny_model_gets_a_band_of_one_units_share_and_the_reason(small_controller):
    groups = find_groups(small_controller, torch.zeros(8, 3))
    share, group = unit_share(groups)
    full = {g.name: g.size for g in groups.groups}
    assert share == 1 - keep_fraction(groups, {**full, group: full[group] - 1}) > 0.01  # 3-32-32-1: about 3%
    assert all(1 - keep_fraction(groups, {**full, g: n - 1}) <= share for g, n in full.items())
    tolerance, why = band_tolerance(groups, 0.01)
    assert tolerance == share and why is not None and f"group {group}" in why and "widened from 0.01" in why


def test_the_bundled_controller_keeps_the_one_percent_band():
    groups = find_groups(load_controller(None).module, torch.zeros(8, 3))
    assert unit_share(groups)[0] < 0.01
    assert band_tolerance(groups, 0.01) == (0.01, None)

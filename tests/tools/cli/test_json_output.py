"""``--json``: one encoder for every command; NaN and infinity are written as null, never a crash."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest

from tools.cli import main
from tools.cli.json_output import dumps, json_safe


def test_non_finite_numbers_become_null_at_any_depth() -> None:
    value = {
        "a": math.nan,
        "b": [1.0, math.inf, -math.inf],
        "c": {"d": np.float32("nan"), "e": np.arange(2)},
        "f": (np.int64(3), np.bool_(True)),
        "g": "nan",
    }
    assert json.loads(dumps(value)) == {
        "a": None,
        "b": [1.0, None, None],
        "c": {"d": None, "e": [0, 1]},
        "f": [3, True],
        "g": "nan",
    }
    assert json_safe({"x": 1.5}) == {"x": 1.5}


def test_a_command_whose_result_holds_nan_prints_valid_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import tools.cli.eval as cmd_eval

    def run(args: argparse.Namespace, console: object) -> dict:
        return {"mean": math.nan, "std": math.inf, "returns": [np.float64("nan"), -1.0]}

    monkeypatch.setattr(cmd_eval, "run", run)
    code = main(["eval", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    assert json.loads(out) == {"mean": None, "std": None, "returns": [None, -1.0]}
    assert out.count("\n") == 1

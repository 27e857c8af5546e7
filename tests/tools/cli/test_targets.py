"""`prune-and-export targets`: every target listed, as JSON too."""

from __future__ import annotations

import json

import pytest

from targets.registry import USER_DIR_ENV
from tools.cli import main

REQUIRED = ("x86_64", "x86_64-avx2", "aarch64", "cortex-a53", "cortex-a72", "cortex-a76", "cortex-a7")


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(USER_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # ignore the developer's own targets
    return tmp_path


def test_targets_command_lists_every_target_as_json(user_dir, capsys):
    assert main(["targets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["targets"]
    by_name = {r["name"]: r for r in rows}
    assert set(REQUIRED) <= set(by_name)
    assert by_name["cortex-a72"]["tvm"]["mcpu"] == "cortex-a72"
    assert by_name["cortex-a72"]["run_with"].startswith("qemu")
    assert by_name["x86_64"]["run_with"] == "native"

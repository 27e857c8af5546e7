"""The command line answers --help, targets and a mistyped flag without importing torch, TVM, gymnasium or ONNX."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "tvm", "gymnasium", "onnx", "onnxruntime")
PROBE = """
import sys
from tools.cli import main
try:
    code = main({argv!r})
except SystemExit as e:
    code = e.code
print("EXIT", code)
print("HEAVY", sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))
"""


def _probe(argv: list[str]) -> tuple[int, list[str], str]:
    """Run main(argv) in a fresh interpreter; (exit code, heavy top-level modules imported, its stdout)."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)], capture_output=True, text=True, timeout=120
    )
    lines = proc.stdout.strip().splitlines()
    exit_line, heavy_line = lines[-2], lines[-1]
    assert exit_line.startswith("EXIT ") and heavy_line.startswith("HEAVY "), proc.stdout + proc.stderr
    return int(exit_line.split()[1]), eval(heavy_line.split(" ", 1)[1]), proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "argv, code, text",
    [
        (["--help"], 0, "usage: prune-and-export"),
        (["targets", "--help"], 0, "list the named targets"),
        (["prune", "--help"], 0, "--keep"),
        (["bench", "--help"], 0, "--sweep"),
        (["keygen", "--help"], 0, "PRIVATE"),
        (["keygen"], 2, "the following arguments are required: PRIVATE, PUBLIC"),
        (["export", "--sign"], 2, "argument --sign: expected one argument"),
        (["hil", "--help"], 0, "--public-key"),
        (["eval", "--frobnicate"], 2, "unrecognized arguments: --frobnicate"),
        (["prune", "--method", "bogus"], 2, "invalid choice: 'bogus'"),
    ],
)
def test_help_targets_and_bad_flags_import_no_heavy_library(argv, code, text):
    exit_code, heavy, output = _probe(argv)
    assert exit_code == code, output
    assert text in output
    assert heavy == [], f"{argv} imported {heavy}"


def test_targets_imports_no_heavy_library_once_the_host_cpu_is_known(tmp_path, monkeypatch):
    # The native target's CPU name comes from TVM's LLVM, asked once per machine and cached: the first listing
    # on a machine pays for TVM, every later one must not.
    monkeypatch.setenv("PRUNE_EXPORT_CACHE", str(tmp_path))
    first_code, first_heavy, output = _probe(["targets"])
    assert first_code == 0 and "tvm" in first_heavy, output
    exit_code, heavy, output = _probe(["targets"])
    assert exit_code == 0, output
    assert "cortex-a72" in output and "native" in output
    assert heavy == [], f"targets imported {heavy}"

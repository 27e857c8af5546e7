"""Fixtures of the tools/ tests: the command line run in a fresh interpreter, and its one-line error contract."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

Cli = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def cli() -> Cli:
    """cli(*args) runs ``python -m tools.cli *args`` in a new interpreter and returns the finished process."""

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tools.cli", *args], capture_output=True, text=True, timeout=300)

    return run


@pytest.fixture(scope="session")
def assert_one_line_error() -> Callable[..., None]:
    """assert_one_line_error(proc, *fragments): exit 2, nothing on stdout, one line on stderr holding every fragment."""

    def check(proc: subprocess.CompletedProcess, *fragments: str) -> None:
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, f"expected one line, got: {proc.stderr}"
        assert "Traceback" not in proc.stderr
        for fragment in fragments:
            assert fragment in lines[0]

    return check

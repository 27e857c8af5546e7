"""Fixtures for the targets/ tests: an isolated user-target folder and an sshd whose host key is pinned."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from targets import USER_DIR_ENV


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user-target folder; HOME moved away so the developer's own targets are ignored."""
    monkeypatch.setenv(USER_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def _known_hosts_line(url: str, public_key: Path) -> str:
    u = urlparse(url)
    name = u.hostname if u.port in (None, 22) else f"[{u.hostname}]:{u.port}"
    return f"{name} {public_key.read_text().strip()}\n"


@pytest.fixture
def known_hosts_line() -> Callable[[str, Path], str]:
    """known_hosts_line(url, public_key): the line pinning that key for the host and port of an ssh:// URL."""
    return _known_hosts_line


@pytest.fixture
def sshd_known_hosts(sshd: str) -> Path:
    """The known_hosts file named in the sshd fixture's URL (the fixture pins the server's key in it)."""
    return Path(parse_qs(urlparse(sshd).query)["known_hosts"][-1])


@pytest.fixture
def pinned_sshd(sshd: str, sshd_known_hosts: Path) -> str:
    """The sshd fixture's URL with the server's real host key pinned in its known_hosts file."""
    sshd_known_hosts.write_text(_known_hosts_line(sshd, sshd_known_hosts.parent / "host_key.pub"))
    return sshd


@pytest.fixture
def impostor_key(tmp_path: Path) -> Path:
    """The public half of a fresh ed25519 key that no sshd of ours uses."""
    key = tmp_path / "impostor_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key.with_suffix(".pub")

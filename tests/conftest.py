"""Fixtures shared across the test tree: a small exported bundle (built once per session) and a throwaway sshd."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from export import ControllerSpec, export_bundle
from targets import parse_target_list
from tools.controllers.native import build_mlp, pendulum_spec


@pytest.fixture(scope="session")
def pendulum() -> ControllerSpec:
    """The Pendulum-v1 controller contract (3 observations, 1 torque in [-2, 2])."""
    return pendulum_spec()


@pytest.fixture(scope="session")
def small_controller() -> torch.nn.Module:
    """A 3-32-32-1 ELU MLP with seeded random weights: small, so export and qemu stay fast."""
    torch.manual_seed(0)
    return build_mlp(pendulum_spec(), [32, 32], "elu").eval()


@pytest.fixture(scope="session")
def small_bundle(small_controller: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """export_bundle of small_controller for x86_64, cortex-a72 and cortex-a7 (the ARM ones verified through the stub)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("small_bundle") / "bundle"
    export_bundle(
        small_controller, pendulum_spec(), parse_target_list("x86_64,cortex-a72,cortex-a7"), out, n_parity=100
    )
    return out


@pytest.fixture
def bundle_copy(small_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the small bundle that a test may damage."""
    return Path(shutil.copytree(small_bundle, tmp_path / "bundle"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[str]:
    """A throwaway sshd on 127.0.0.1 that accepts one fresh key for the current user; yields its ssh:// runner URL."""
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    d = tmp_path / "sshd"
    d.mkdir()
    os.chmod(d, 0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "client_key")], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nAllowTcpForwarding no\n"
        "Subsystem sftp internal-sftp\n"  # scp speaks SFTP since OpenSSH 9
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege-separation folder sshd insists on
    proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                assert proc.stderr is not None
                pytest.fail(f"sshd exited: {proc.stderr.read().decode()}")
            time.sleep(0.1)
    # The ssh runner checks host keys strictly: pin this server's key as a user would after checking its fingerprint.
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {(d / 'host_key.pub').read_text()}")
    url = f"ssh://{getpass.getuser()}@127.0.0.1:{port}?identity={d / 'client_key'}&known_hosts={d / 'known_hosts'}"
    yield url
    proc.terminate()
    proc.wait(timeout=10)

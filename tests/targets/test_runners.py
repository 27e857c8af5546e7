"""targets/runners.py: native, qemu-user and ssh runners really run a program with its files and stdin."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from targets import TargetError, get_target, runner_for
from targets.runners import QemuRunner, SshRunner, parse_ssh_url
from ssh_support import sshd  # noqa: F401  (pytest fixture)

# Reads a file from its folder, echoes stdin, prints an env var and the pointer width: proves staging,
# pipes, environment and the architecture in one run.
PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    char buf[64] = {0}, in[64] = {0};
    FILE *f = fopen(argv[1], "r");
    if (!f || !fgets(buf, sizeof buf, f)) return 3;
    if (!fgets(in, sizeof in, stdin)) return 4;
    const char *e = getenv("PAE_TEST");
    printf("file=%s stdin=%s env=%s bits=%d\n", buf, in, e ? e : "-", (int)(8 * sizeof(void *)));
    return 0;
}
"""


def _build(tmp_path: Path, cc: str) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    (tmp_path / "p.c").write_text(PROGRAM)
    subprocess.run([cc, "-O1", "-o", str(folder / "prog"), str(tmp_path / "p.c")], check=True)
    (folder / "data.txt").write_text("hello")
    return folder


def test_native_runner_runs_in_the_staged_folder(tmp_path):
    folder = _build(tmp_path, "gcc")
    r = runner_for(get_target("x86_64")).run(folder, ["./prog", "data.txt"], stdin=b"ping\n", env={"PAE_TEST": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == "file=hello stdin=ping\n env=1 bits=64\n"


@pytest.mark.parametrize("target,bits", [("cortex-a72", 64), ("cortex-a7", 32)])
def test_qemu_runner_executes_a_cross_built_arm_program(tmp_path, target, bits):
    t = get_target(target)
    folder = _build(tmp_path, t.cc)
    runner = runner_for(t)
    assert isinstance(runner, QemuRunner) and runner.cpu == t.qemu_cpu
    r = runner.run(folder, ["./prog", "data.txt"], stdin=b"pong\n", env={"PAE_TEST": "qemu"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == f"file=hello stdin=pong\n env=qemu bits={bits}\n"


def test_arm_program_does_not_run_natively_on_x86(tmp_path):
    with pytest.raises(TargetError, match="cannot run natively"):
        runner_for(get_target("cortex-a72"), "native")


def test_ssh_url_parsing_and_errors():
    r = parse_ssh_url("ssh://pi@board.local:2222?identity=/k&known_hosts=/kh")
    assert (r.user, r.host, r.port, r.identity, r.known_hosts) == ("pi", "board.local", 2222, "/k", "/kh")
    assert parse_ssh_url("ssh://pi@board").port == 22
    with pytest.raises(TargetError, match="expected ssh://user@host"):
        parse_ssh_url("ssh://board")
    with pytest.raises(TargetError, match="unknown option"):
        parse_ssh_url("ssh://pi@board?password=x")


def test_ssh_runner_copies_the_folder_runs_and_cleans_up(tmp_path, sshd):
    folder = _build(tmp_path, "gcc")
    runner = runner_for(get_target("x86_64"), sshd)
    assert isinstance(runner, SshRunner)
    with runner.session(folder) as s:
        remote = s.workdir
        assert remote.startswith("/tmp/pae.") and Path(remote).is_dir()  # the "board" is this machine
        r = s.run(["./prog", "data.txt"], stdin=b"over ssh\n", env={"PAE_TEST": "ssh"})
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode() == "file=hello stdin=over ssh\n env=ssh bits=64\n"
        p = s.popen(["cat"])  # long-lived program with pipes, as the stub's serve mode uses
        out, _ = p.communicate(b"frame", timeout=30)
        assert out == b"frame"
    assert not Path(remote).exists()


def test_ssh_runner_with_a_wrong_key_fails_in_one_line(tmp_path, sshd):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    url = sshd.split("?")[0] + f"?identity={tmp_path / 'other'}&known_hosts={tmp_path / 'kh'}"
    with pytest.raises(TargetError, match=r"ssh://.*127\.0\.0\.1.*mktemp failed"):
        runner_for(get_target("x86_64"), url).run(tmp_path, ["true"])

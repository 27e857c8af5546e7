"""targets/runners.py: native, qemu-user and ssh runners really run a program with its files and stdin."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from targets import TargetError, get_target, runner_for
from targets.runners import QemuRunner, SshRunner, parse_ssh_url

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
    assert r.host_key == "strict"
    assert parse_ssh_url("ssh://pi@board").port == 22
    assert parse_ssh_url("ssh://pi@board?host_key=accept-new").host_key == "accept-new"
    assert parse_ssh_url("ssh://pi_2.x-y@10.0.0.7").host == "10.0.0.7"
    assert parse_ssh_url("ssh://pi@[fe80::1]:2200").host == "fe80::1"
    with pytest.raises(TargetError, match="expected ssh://user@host"):
        parse_ssh_url("ssh://board")
    with pytest.raises(TargetError, match="unknown option"):
        parse_ssh_url("ssh://pi@board?password=x")
    with pytest.raises(
        TargetError, match=r"'ssh://pi@board\?host_key=no': host_key=no is not one of strict, accept-new"
    ):
        parse_ssh_url("ssh://pi@board?host_key=no")
    with pytest.raises(TargetError, match="password in the URL is never used"):
        parse_ssh_url("ssh://pi:secret@board")
    with pytest.raises(TargetError, match="port 0 is not in 1..65535"):
        parse_ssh_url("ssh://pi@board:0")


HOSTILE = [
    "ssh://-oProxyCommand=touch${IFS}pwned@host",  # the user part read by ssh as an option
    "ssh://-oProxyCommand=touch${IFS}/tmp/pwned@host",  # the brief's form: no user left at all
    "ssh://pi@-oProxyCommand=touch${IFS}pwned",  # the host part read as an option
    "ssh://pi;touch pwned@host",
    "ssh://$(touch pwned)@host",
    "ssh://pi@host;touch${IFS}pwned",
    "ssh://pi@host%20-oProxyCommand=touch",
    "ssh://pi@-host",
    "ssh://pi@host-.local",
    "ssh://-pi@host",
    "ssh://pi@@host",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_user_or_host_is_refused_before_any_process_starts(url, tmp_path, monkeypatch):
    def no_process(*args, **kwargs):
        raise AssertionError(f"a process was started: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "run", no_process)
    monkeypatch.setattr(subprocess, "Popen", no_process)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    with pytest.raises(TargetError, match=r"^runner '?ssh://.*: (user|host|expected)") as err:
        runner_for(get_target("x86_64"), url).run(tmp_path / "work", ["true"])
    assert len(str(err.value).splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]  # nothing created, by ssh or by a shell


def test_user_and_host_are_checked_when_the_runner_is_built_directly():
    with pytest.raises(TargetError, match=r"user '-oProxyCommand=x' is not a login name"):
        SshRunner("-oProxyCommand=x", "board")
    with pytest.raises(TargetError, match=r"host '-oProxyCommand=x' is not a hostname"):
        SshRunner("pi", "-oProxyCommand=x")
    with pytest.raises(TargetError, match="host_key 'no' is not one of"):
        SshRunner("pi", "board", host_key="no")


def test_every_ssh_and_scp_command_ends_options_before_the_destination(tmp_path, monkeypatch):
    calls = []

    def record(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, b"/tmp/pae.abc123\n", b"")

    monkeypatch.setattr(subprocess, "run", record)
    (tmp_path / "prog").write_text("x")
    runner = parse_ssh_url("ssh://pi@board:2222?known_hosts=/my kh&identity=/id")
    with runner.session(tmp_path) as s:
        calls.append(s.argv(["./prog"], {"A": "1"}))
    assert [c[0] for c in calls] == ["ssh", "scp", "ssh", "ssh"]  # mktemp, copy, the command, rm -rf
    for argv in calls:
        dd = argv.index("--")
        assert argv[dd + 1].startswith("pi@board") or argv[dd + 1].startswith(str(tmp_path))
        assert "StrictHostKeyChecking=yes" in argv[:dd] and 'UserKnownHostsFile="/my kh"' in argv[:dd]
        assert "GlobalKnownHostsFile=/dev/null" in argv[:dd]
        assert not any(a.startswith("-") for a in argv[dd + 1 :])
    assert calls[1][-1] == "pi@board:/tmp/pae.abc123/"


def test_default_host_key_check_uses_the_users_known_hosts_and_accept_new_only_on_request(monkeypatch):
    opts = parse_ssh_url("ssh://pi@board")._options()
    assert "StrictHostKeyChecking=yes" in opts and not any("KnownHostsFile" in o for o in opts)
    assert "StrictHostKeyChecking=accept-new" in parse_ssh_url("ssh://pi@board?host_key=accept-new")._options()


def test_ssh_runner_copies_the_folder_runs_and_cleans_up(tmp_path, pinned_sshd):
    folder = _build(tmp_path, "gcc")
    runner = runner_for(get_target("x86_64"), pinned_sshd)
    assert isinstance(runner, SshRunner) and runner.host_key == "strict"
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


def test_ssh_runner_with_a_wrong_client_key_fails_in_one_line(tmp_path, pinned_sshd):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    base, query = pinned_sshd.split("?")
    options = {**dict(parse_qsl(query)), "identity": str(tmp_path / "other")}
    url = base + "?" + "&".join(f"{k}={v}" for k, v in options.items())
    with pytest.raises(TargetError, match=r"ssh://.*127\.0\.0\.1.*mktemp failed: .*Permission denied") as err:
        runner_for(get_target("x86_64"), url).run(tmp_path, ["true"])
    assert len(str(err.value).splitlines()) == 1


def test_a_host_key_that_differs_from_the_pinned_one_is_refused(
    tmp_path, sshd, sshd_known_hosts, impostor_key, known_hosts_line
):
    sshd_known_hosts.write_text(known_hosts_line(sshd, impostor_key))
    for url in (sshd, sshd + "&host_key=accept-new"):  # trust on first use does not trust a changed key
        with pytest.raises(
            TargetError,
            match=rf"mktemp failed: host key verification failed: the board's host key "
            rf"differs from the one in {sshd_known_hosts}",
        ):
            runner_for(get_target("x86_64"), url).run(tmp_path, ["true"])
    assert sshd_known_hosts.read_text() == known_hosts_line(sshd, impostor_key)  # the pin was not replaced


def test_an_unknown_host_key_is_refused_unless_accept_new_is_asked_for(tmp_path, sshd, sshd_known_hosts):
    sshd_known_hosts.unlink()  # the sshd fixture pins its key; this test starts from a board never seen before
    with pytest.raises(TargetError, match=r"holds no key for 127\.0\.0\.1 port \d+; pin it .* host_key=accept-new"):
        runner_for(get_target("x86_64"), sshd).run(tmp_path, ["true"])
    r = runner_for(get_target("x86_64"), sshd + "&host_key=accept-new").run(tmp_path, ["echo", "first use"])
    assert r.returncode == 0 and r.stdout == b"first use\n"
    host_key = (sshd_known_hosts.parent / "host_key.pub").read_text().split()[1]
    assert host_key in sshd_known_hosts.read_text()  # pinned from now on
    assert runner_for(get_target("x86_64"), sshd).run(tmp_path, ["true"]).returncode == 0

"""How a program built for a target is run: natively, under qemu-user, or on a board over ssh.

Every runner has the same contract. The caller puts everything the program needs in one local folder
and gives a command whose paths are relative to that folder (``["./stub", "bench", "bundle"]``).
:meth:`Runner.run` runs it to completion; :meth:`Runner.session` stages the folder once and yields a
:class:`Session` whose :meth:`Session.popen` starts long-lived programs (a stub serving frames on
stdin/stdout) with pipes attached.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from targets.errors import TargetError
from targets.host import host_arch
from targets.registry import Target


@dataclass
class Session:
    """A staged working folder on the machine that runs the program, and the argv prefix to run there."""

    runner: "Runner"
    workdir: str  # where the program sees its files (a local path, or a path on the board)
    prefix: list[str] = field(default_factory=list)

    def argv(self, command: Sequence[str], env: dict[str, str] | None = None) -> list[str]:
        """Host-side argv that runs ``command`` inside the staged folder."""
        return self.runner.wrap(self, list(command), dict(env or {}))

    def run(self, command: Sequence[str], *, stdin: bytes | None = None, env: dict[str, str] | None = None,
            timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Run ``command`` to completion, capturing stdout and stderr as bytes."""
        argv = self.argv(command, env)
        try:
            return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, cwd=self.runner.cwd(self),
                                  env=self.runner.local_env(env))
        except subprocess.TimeoutExpired as e:
            raise TargetError(f"{self.runner.describe()}: {' '.join(command)} timed out after {timeout:g} s") from e
        except OSError as e:
            raise TargetError(f"{self.runner.describe()}: cannot start {argv[0]!r}: {e}") from e

    def popen(self, command: Sequence[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        """Start ``command`` with stdin/stdout pipes (override with kwargs); the caller waits for it."""
        kwargs.setdefault("stdin", subprocess.PIPE)
        kwargs.setdefault("stdout", subprocess.PIPE)
        return subprocess.Popen(self.argv(command, env), cwd=self.runner.cwd(self), env=self.runner.local_env(env),
                                **kwargs)


class Runner:
    """Base runner: runs in the local folder itself (subclasses wrap the argv or copy the folder)."""

    def describe(self) -> str:
        return type(self).__name__

    def check(self) -> None:
        """Raise TargetError if the tools this runner needs are missing."""

    @contextlib.contextmanager
    def session(self, local_dir: Path) -> Iterator[Session]:
        """Stage ``local_dir`` where the program runs, yield a Session, clean up afterwards."""
        self.check()
        yield Session(self, str(Path(local_dir).resolve()))

    def run(self, local_dir: Path, command: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
        """Stage, run ``command`` to completion, clean up."""
        with self.session(local_dir) as s:
            return s.run(command, **kwargs)

    def wrap(self, session: Session, command: list[str], env: dict[str, str]) -> list[str]:
        return command

    def cwd(self, session: Session) -> str | None:
        return session.workdir

    def local_env(self, env: dict[str, str] | None) -> dict[str, str] | None:
        if not env:
            return None
        import os

        return {**os.environ, **env}


class NativeRunner(Runner):
    """Run on this machine."""

    def describe(self) -> str:
        return "native"


@dataclass
class QemuRunner(Runner):
    """Run under qemu-user (``qemu-aarch64 -L <sysroot> -cpu <cpu>``) so ARM programs run on an x86 host."""

    qemu: str
    sysroot: str
    cpu: str = ""

    def describe(self) -> str:
        return f"qemu ({self.qemu}{' -cpu ' + self.cpu if self.cpu else ''})"

    def check(self) -> None:
        if shutil.which(self.qemu) is None:
            raise TargetError(f"{self.qemu!r} not found on PATH (Debian: apt-get install qemu-user)")
        if self.sysroot and not Path(self.sysroot).is_dir():
            raise TargetError(f"qemu sysroot {self.sysroot!r} does not exist (install the target's cross libc)")

    def wrap(self, session: Session, command: list[str], env: dict[str, str]) -> list[str]:
        argv = [self.qemu]
        if self.sysroot:
            argv += ["-L", self.sysroot]
        if self.cpu:
            argv += ["-cpu", self.cpu]
        for k, v in env.items():  # -E sets the guest's environment explicitly (LD_LIBRARY_PATH for the stub)
            argv += ["-E", f"{k}={v}"]
        return argv + command

    def local_env(self, env):
        return None


@dataclass
class SshRunner(Runner):
    """Copy the folder to a board with scp and run there with ssh (``ssh://user@host[:port]``).

    Query parameters: ``identity`` (private key file), ``known_hosts`` (a known_hosts file; new host keys are
    accepted on first use), ``dir`` (remote parent folder, default /tmp).
    """

    user: str
    host: str
    port: int = 22
    identity: str = ""
    known_hosts: str = ""
    remote_parent: str = "/tmp"

    def describe(self) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}"

    def check(self) -> None:
        for tool in ("ssh", "scp"):
            if shutil.which(tool) is None:
                raise TargetError(f"{tool!r} not found on PATH (Debian: apt-get install openssh-client)")

    def _options(self) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", "-o", "ConnectTimeout=10"]
        if self.identity:
            opts += ["-i", self.identity, "-o", "IdentitiesOnly=yes"]
        if self.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        return opts

    def _ssh(self) -> list[str]:
        return ["ssh", *self._options(), "-p", str(self.port), f"{self.user}@{self.host}"]

    def _call(self, argv: list[str], what: str) -> str:
        r = subprocess.run(argv, capture_output=True, timeout=60)
        if r.returncode != 0:
            err = r.stderr.decode(errors="replace").strip().splitlines()
            raise TargetError(f"{self.describe()}: {what} failed: {err[-1] if err else f'exit {r.returncode}'}")
        return r.stdout.decode(errors="replace")

    @contextlib.contextmanager
    def session(self, local_dir: Path) -> Iterator[Session]:
        self.check()
        remote = self._call(self._ssh() + [f"mktemp -d {shlex.quote(self.remote_parent)}/pae.XXXXXX"], "mktemp").strip()
        try:
            # scp -r copies the folder's contents into the fresh remote folder (mode bits are kept).
            items = [str(p) for p in sorted(Path(local_dir).iterdir())]
            if items:
                self._call(["scp", *self._options(), "-q", "-r", "-P", str(self.port), *items,
                            f"{self.user}@{self.host}:{remote}/"], "copy to board")
            yield Session(self, remote)
        finally:
            subprocess.run(self._ssh() + [f"rm -rf {shlex.quote(remote)}"], capture_output=True, timeout=60)

    def wrap(self, session: Session, command: list[str], env: dict[str, str]) -> list[str]:
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        line = f"cd {shlex.quote(session.workdir)} && {exports + ' ' if exports else ''}{shlex.join(command)}"
        return self._ssh() + [line]

    def cwd(self, session: Session) -> str | None:
        return None

    def local_env(self, env):
        return None


def parse_ssh_url(url: str) -> SshRunner:
    """``ssh://user@host[:port][?identity=KEY&known_hosts=FILE&dir=/tmp]`` -> SshRunner."""
    u = urlparse(url)
    if u.scheme != "ssh" or not u.hostname or not u.username:
        raise TargetError(f"runner {url!r}: expected ssh://user@host[:port]")
    q = {k: v[-1] for k, v in parse_qs(u.query).items()}
    unknown = set(q) - {"identity", "known_hosts", "dir"}
    if unknown:
        raise TargetError(f"runner {url!r}: unknown option(s) {', '.join(sorted(unknown))} (known: identity, known_hosts, dir)")
    try:
        port = u.port or 22
    except ValueError as e:
        raise TargetError(f"runner {url!r}: bad port ({e})") from e
    return SshRunner(u.username, u.hostname, port, q.get("identity", ""), q.get("known_hosts", ""), q.get("dir", "/tmp"))


def runner_for(target: Target, runner: str | None = None) -> Runner:
    """The runner for ``target``: ``runner`` if given, else the target's own (``auto`` = native if the host can, else qemu)."""
    spec = runner or target.runner or "auto"
    if spec == "auto":
        spec = "native" if target.arch == host_arch() else "qemu"
    if spec == "native":
        if target.arch != host_arch():
            raise TargetError(f"target {target.name!r} ({target.arch}) cannot run natively on this {host_arch()} host")
        return NativeRunner()
    if spec == "qemu":
        if target.kind != "linux" or not target.qemu:
            raise TargetError(f"target {target.name!r}: no qemu-user runner for a {target.kind} target")
        return QemuRunner(target.qemu, target.sysroot, target.qemu_cpu)
    if spec.startswith("ssh://"):
        return parse_ssh_url(spec)
    raise TargetError(f"target {target.name!r}: unknown runner {spec!r} (expected auto, native, qemu or ssh://user@host[:port])")

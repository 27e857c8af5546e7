"""How a program built for a target is run: natively, under qemu-user, or on a board over ssh.

Every runner has the same contract. The caller puts everything the program needs in one local folder
and gives a command whose paths are relative to that folder (``["./stub", "bench", "bundle"]``).
:meth:`Runner.run` runs it to completion; :meth:`Runner.session` stages the folder once and yields a
:class:`Session` whose :meth:`Session.popen` starts long-lived programs (a stub serving frames on
stdin/stdout) with pipes attached.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
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

    runner: Runner
    workdir: str  # where the program sees its files (a local path, or a path on the board)
    prefix: list[str] = field(default_factory=list)

    def argv(self, command: Sequence[str], env: dict[str, str] | None = None) -> list[str]:
        """Host-side argv that runs ``command`` inside the staged folder."""
        return self.runner.wrap(self, list(command), dict(env or {}))

    def run(
        self,
        command: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess:
        """Run ``command`` to completion, capturing stdout and stderr as bytes."""
        argv = self.argv(command, env)
        try:
            return subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                timeout=timeout,
                cwd=self.runner.cwd(self),
                env=self.runner.local_env(env),
            )
        except subprocess.TimeoutExpired as e:
            raise TargetError(f"{self.runner.describe()}: {' '.join(command)} timed out after {timeout:g} s") from e
        except OSError as e:
            raise TargetError(f"{self.runner.describe()}: cannot start {argv[0]!r}: {e}") from e

    def popen(self, command: Sequence[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        """Start ``command`` with stdin/stdout pipes (override with kwargs); the caller waits for it."""
        kwargs.setdefault("stdin", subprocess.PIPE)
        kwargs.setdefault("stdout", subprocess.PIPE)
        return subprocess.Popen(
            self.argv(command, env), cwd=self.runner.cwd(self), env=self.runner.local_env(env), **kwargs
        )


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


# A POSIX-ish login name, and one DNS label; neither may start with '-' (ssh would read it as an option).
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
# URL option host_key -> ssh's StrictHostKeyChecking: a board's key must already be known, unless the user asks for
# trust on first use (a key that changed is refused either way).
HOST_KEY_POLICIES = {"strict": "yes", "accept-new": "accept-new"}
SSH_OPTIONS = ("identity", "known_hosts", "host_key", "dir")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_user_host(user: str, host: str, where: str) -> None:
    """Raise TargetError (naming ``where``) unless ``user`` is a login name and ``host`` a hostname or IP literal."""
    if not _USER.fullmatch(user) or len(user) > 64:
        raise TargetError(
            f"runner {where}: user {user!r} is not a login name (letters, digits, '_', '.', '-'; "
            "starting with a letter or '_')"
        )
    if _is_ip(host):
        return
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        raise TargetError(
            f"runner {where}: host {host!r} is not a hostname or an IPv4/IPv6 address "
            "(letters, digits, '-', '_' in dot-separated labels, none starting or ending with '-')"
        )


def _ssh_option_value(value: str) -> str:
    """``value`` quoted for an ``ssh -o key=value`` argument (ssh splits option values at blanks)."""
    if not any(c in value for c in " \t\"'\\"):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class SshRunner(Runner):
    """Copy the folder to a board with scp and run there with ssh (``ssh://user@host[:port]``).

    Query parameters: ``identity`` (private key file), ``known_hosts`` (the known_hosts file the board's host
    key is checked against; default ssh's own, ``~/.ssh/known_hosts``), ``host_key`` (``strict``, the default:
    the key must already be in that file; ``accept-new``: a board not yet in it is trusted on first use and
    added), ``dir`` (remote parent folder, default /tmp). A host key that differs from the file's is refused.
    """

    user: str
    host: str
    port: int = 22
    identity: str = ""
    known_hosts: str = ""
    remote_parent: str = "/tmp"
    host_key: str = "strict"

    def __post_init__(self) -> None:
        check_user_host(self.user, self.host, repr(self.describe()))
        if not 1 <= self.port <= 65535:
            raise TargetError(f"runner {self.describe()!r}: port {self.port} is not in 1..65535")
        if self.host_key not in HOST_KEY_POLICIES:
            raise TargetError(
                f"runner {self.describe()!r}: host_key {self.host_key!r} is not one of {', '.join(HOST_KEY_POLICIES)}"
            )

    def describe(self) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}"

    def check(self) -> None:
        for tool in ("ssh", "scp"):
            if shutil.which(tool) is None:
                raise TargetError(f"{tool!r} not found on PATH (Debian: apt-get install openssh-client)")

    def _options(self) -> list[str]:
        opts = [
            "-o",
            "BatchMode=yes",
            "-o",
            f"StrictHostKeyChecking={HOST_KEY_POLICIES[self.host_key]}",
            "-o",
            "ConnectTimeout=10",
        ]
        if self.identity:
            opts += ["-i", self.identity, "-o", "IdentitiesOnly=yes"]
        if self.known_hosts:  # pinned to this one file: the system-wide list is not consulted
            opts += [
                "-o",
                f"UserKnownHostsFile={_ssh_option_value(self.known_hosts)}",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
            ]
        return opts

    def _destination(self) -> str:
        return f"{self.user}@{self.host}"

    def _ssh(self) -> list[str]:
        # "--" ends ssh's options: nothing after it is read as one, whatever the URL held
        return ["ssh", *self._options(), "-p", str(self.port), "--", self._destination()]

    def _host_key_problem(self, err: str) -> str | None:
        """A one-line explanation when ssh refused the board's host key, else None."""
        if "Host key verification failed" not in err:
            return None
        where = self.known_hosts or "~/.ssh/known_hosts"
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in err:
            return (
                f"host key verification failed: the board's host key differs from the one in {where} "
                "(if the board was reinstalled, check its new fingerprint and replace that line)"
            )
        return (
            f"host key verification failed: {where} holds no key for {self.host} port {self.port}; pin it "
            "(see targets/README.md, 'ssh runner and host keys') or add host_key=accept-new to the runner URL"
        )

    def _call(self, argv: list[str], what: str) -> str:
        try:
            r = subprocess.run(argv, capture_output=True, timeout=60)
        except subprocess.TimeoutExpired as e:
            raise TargetError(f"{self.describe()}: {what} timed out after 60 s") from e
        if r.returncode != 0:
            text = r.stderr.decode(errors="replace")
            err = text.strip().splitlines()
            problem = self._host_key_problem(text) or (err[-1] if err else f"exit {r.returncode}")
            raise TargetError(f"{self.describe()}: {what} failed: {problem}")
        return r.stdout.decode(errors="replace")

    @contextlib.contextmanager
    def session(self, local_dir: Path) -> Iterator[Session]:
        self.check()
        remote = self._call(self._ssh() + [f"mktemp -d {shlex.quote(self.remote_parent)}/pae.XXXXXX"], "mktemp").strip()
        if not remote.startswith("/") or "\n" in remote:
            raise TargetError(f"{self.describe()}: mktemp printed {remote!r}, not a folder path")
        try:
            # scp -r copies the folder's contents into the fresh remote folder (mode bits are kept). Absolute
            # local paths, so no local name is read as host:path.
            items = [str(p) for p in sorted(Path(local_dir).resolve().iterdir())]
            if items:
                host = f"[{self.host}]" if ":" in self.host else self.host  # scp needs an IPv6 literal bracketed
                self._call(
                    [
                        "scp",
                        *self._options(),
                        "-q",
                        "-r",
                        "-P",
                        str(self.port),
                        "--",
                        *items,
                        f"{self.user}@{host}:{remote}/",
                    ],
                    "copy to board",
                )
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
    """``ssh://user@host[:port][?identity=KEY&known_hosts=FILE&host_key=strict|accept-new&dir=/tmp]`` -> SshRunner."""
    try:
        u = urlparse(url)
        port = 22 if u.port is None else u.port
    except ValueError as e:  # a bad port or a malformed [IPv6] literal
        raise TargetError(f"runner {url!r}: {e}") from e
    if u.scheme != "ssh" or not u.hostname or not u.username:
        raise TargetError(f"runner {url!r}: expected ssh://user@host[:port]")
    if u.password is not None:
        raise TargetError(
            f"runner {url!r}: a password in the URL is never used (ssh runs in batch mode); "
            "use identity=KEY or an ssh agent"
        )
    check_user_host(u.username, u.hostname, repr(url))
    q = {k: v[-1] for k, v in parse_qs(u.query).items()}
    unknown = set(q) - set(SSH_OPTIONS)
    if unknown:
        raise TargetError(
            f"runner {url!r}: unknown option(s) {', '.join(sorted(unknown))} (known: {', '.join(SSH_OPTIONS)})"
        )
    host_key = q.get("host_key", "strict")
    if host_key not in HOST_KEY_POLICIES:
        raise TargetError(f"runner {url!r}: host_key={host_key} is not one of {', '.join(HOST_KEY_POLICIES)}")
    return SshRunner(
        u.username, u.hostname, port, q.get("identity", ""), q.get("known_hosts", ""), q.get("dir", "/tmp"), host_key
    )


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
    raise TargetError(
        f"target {target.name!r}: unknown runner {spec!r} (expected auto, native, qemu or ssh://user@host[:port])"
    )

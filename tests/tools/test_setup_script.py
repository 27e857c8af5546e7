"""tools/setup.sh installs everything the code and the tests call: no hand-installed tool or package can hide.

CI runs on the developer's machine, where a package installed by hand stays installed; these tests trace
every external program and every imported Python distribution back to what setup.sh asks for.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from targets import all_targets, host_arch

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "tools" / "setup.sh"
PROJECT_PACKAGES = ("prune", "export", "targets", "tools", "tests")
EXTRAS = ("test", "sb3", "ray")  # what setup.sh installs: pip install -e .[test,sb3,ray]
# Programs called outside the target registry (the fuzzer, the ssh runner tests, the stub builds).
# ip: the Ray cluster test's network namespace; objdump: the instruction checks of the compiled kernels
PROGRAMS = ("clang", "make", "ssh", "scp", "ssh-keygen", "sshd", "ip", "objdump")


def _setup_apt_packages() -> list[str]:
    text = SETUP.read_text()
    block = re.search(r"APT_PACKAGES=\((.*?)\n\)", text, re.S)
    assert block, f"{SETUP}: no APT_PACKAGES=( ... ) list"
    words = [w for line in block.group(1).splitlines() for w in line.split("#")[0].split()]
    return words + re.findall(r"APT_PACKAGES\+=\(([^)]*)\)", text)


@cache
def _apt_closure() -> frozenset[str]:
    """The listed packages and everything they depend on (not recommends: setup installs without them)."""
    out = subprocess.run(
        [
            "apt-cache",
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            *_setup_apt_packages(),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {line.strip().strip("<>").split(":")[0] for line in out.splitlines() if not line.startswith(" ")}
    return frozenset(names)


def _owning_package(path: Path) -> str:
    # Merged /usr: dpkg may know a program by its /bin or /sbin name only.
    for candidate in (path, path.resolve(), Path("/bin") / path.name, Path("/sbin") / path.name):
        out = subprocess.run(["dpkg", "-S", str(candidate)], capture_output=True, text=True)
        if out.returncode == 0:
            return out.stdout.split(":")[0].strip()
    raise AssertionError(f"{path} belongs to no Debian package (installed by hand?)")


def _programs() -> list[str]:
    progs = set(PROGRAMS)
    for t in all_targets().values():
        progs.update(p for p in (t.cc, t.cxx) if p)
        if t.arch != host_arch() and t.qemu:
            progs.add(t.qemu)
        if t.kind == "mcu":
            progs.update(t.cc.replace("gcc", tool) for tool in ("nm", "size", "objdump"))
    return sorted(progs)


@pytest.mark.parametrize("program", _programs())
def test_every_program_the_suite_calls_comes_from_a_package_setup_installs(program: str) -> None:
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin")
    assert path is not None, f"{program!r} is not on PATH: tools/setup.sh must install it"
    package = _owning_package(Path(path))
    assert package in _apt_closure(), f"{program!r} comes from {package!r}, which tools/setup.sh does not install"


def test_the_libfuzzer_runtime_comes_from_a_package_setup_installs() -> None:
    runtime_dir = subprocess.run(
        ["clang", "-print-runtime-dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    runtime = Path(runtime_dir) / "libclang_rt.fuzzer-x86_64.a"
    assert runtime.is_file(), f"{runtime}: missing, clang cannot link -fsanitize=fuzzer"
    assert _owning_package(runtime) in _apt_closure()


def _requirement_closure() -> set[str]:
    """Distributions pip installs for prune-and-export[test,sb3], by normalised name."""
    seen: set[str] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [("prune-and-export", EXTRAS)]
    while todo:
        name, extras = todo.pop()
        for raw in md.requires(name) or []:
            req = Requirement(raw)
            env_extras = extras or ("",)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in env_extras):
                continue
            key = _norm(req.name)
            if key not in seen:
                seen.add(key)
                todo.append((req.name, tuple(req.extras)))
    return seen


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_top_modules() -> set[str]:
    mods: set[str] = set()
    for pkg in PROJECT_PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(f.read_text(), str(f))):
                if isinstance(node, ast.Import):
                    mods.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    mods.add(node.module.split(".")[0])
    return {m for m in mods if m not in sys.stdlib_module_names and m not in PROJECT_PACKAGES and m != "__future__"}


def test_every_imported_python_package_is_a_declared_requirement() -> None:
    closure = _requirement_closure()
    distributions = md.packages_distributions()
    undeclared = {}
    for module in sorted(_imported_top_modules()):
        dists = distributions.get(module)
        assert dists, f"module {module!r} is imported but no installed distribution provides it"
        if not any(_norm(d) in closure for d in dists):
            undeclared[module] = dists
    assert not undeclared, f"imported but not required by pyproject (installed by hand?): {undeclared}"

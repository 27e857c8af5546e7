"""Signed bundles on the Linux stub: ``--public-key`` refuses what its private key did not sign, before loading.

The library that replaces the bundle's has a constructor that creates a file: if the stub loaded it,
the file would exist. x86_64 runs natively, aarch64 and armv7 under qemu-user (one stub each).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from export import run_stub_batch
from export.signing import generate_keypair, sign_bundle
from export.stub import STUB_SOURCES, linux_target, stage
from targets import get_target, runner_for

TARGETS = ["x86_64", "cortex-a72", "cortex-a7"]
SIGNATURE_REFUSED = 6  # PROTOCOL.md's exit-code table
BUNDLE_REFUSED = 3
EVIL_C = """
#include <stdio.h>
__attribute__((constructor)) static void evil(void) {
    FILE* f = fopen(MARKER, "w");
    if (f) { fputs("library code ran\\n", f); fclose(f); }
}
int not_a_model(void) { return 0; }
"""


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    """A key pair, and a second public key that signed nothing."""
    d = tmp_path_factory.mktemp("keys")
    generate_keypair(d / "signing.pem", d / "signing.pub")
    generate_keypair(d / "other.pem", d / "other.pub")
    return {"private": d / "signing.pem", "public": d / "signing.pub", "other": d / "other.pub"}


@pytest.fixture
def signed(bundle_copy: Path, keys) -> Path:
    """A private copy of the small bundle, signed."""
    sign_bundle(bundle_copy, keys["private"])
    return bundle_copy


def run_info(bundle: Path, target: str, into: Path, public_key: Path | None) -> subprocess.CompletedProcess:
    """``pae_stub info`` on the staged bundle, through the target's runner (native or qemu-user)."""
    into.mkdir()
    extra = stage(bundle, target, into, public_key)
    return runner_for(linux_target(target)).run(
        into, ["./pae_stub", "info", "--bundle", "bundle", "--target", target, *extra], timeout=300
    )


def rehash(bundle: Path, target: str) -> None:
    """Update the manifest's sha256 and bytes of the target's library to its current file (as an attacker would)."""
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    record = manifest["artifacts"][target]
    data = (bundle / record["file"]).read_bytes()
    record["sha256"], record["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def evil_library(target: str, marker: Path, out: Path) -> Path:
    """A shared library for ``target`` whose constructor creates ``marker``."""
    src = out.with_suffix(".c")
    src.write_text(EVIL_C)
    cc = get_target(target).cc
    subprocess.run([cc, "-shared", "-fPIC", f'-DMARKER="{marker}"', str(src), "-o", str(out)], check=True)
    return out


def test_vendored_monocypher_matches_the_recorded_sha256():
    folder = STUB_SOURCES / "third_party" / "monocypher"
    recorded = dict(re.findall(r"\| `([^`]+)` \| `([0-9a-f]{64})` \|", (folder / "README.md").read_text()))
    assert set(recorded) == {
        "LICENCE.md",
        "monocypher.c",
        "monocypher.h",
        "monocypher-ed25519.c",
        "monocypher-ed25519.h",
    }
    for name, digest in recorded.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    assert (folder / "monocypher.c").read_text().startswith("// Monocypher version 4.0.3\n")


@pytest.mark.parametrize("target", TARGETS)
def test_signed_bundle_runs_and_a_replaced_library_with_a_rehashed_manifest_is_refused_before_loading(
    signed, keys, target, tmp_path, small_controller, pendulum
):
    obs = pendulum.sample_observations(5, seed=12)
    got = run_stub_batch(signed, target, obs, public_key=keys["public"])
    np.testing.assert_allclose(got, small_controller(torch.tensor(obs)).detach().numpy(), atol=1e-5)
    marker = tmp_path / "constructor-ran"
    evil_library(target, marker, signed / f"{target}.so")
    rehash(signed, target)
    r = run_info(signed, target, tmp_path / "evil", keys["public"])
    assert r.returncode == SIGNATURE_REFUSED, r.stderr.decode()
    assert b"signature does not match manifest.json" in r.stderr
    assert not marker.exists()


@pytest.mark.parametrize("target", TARGETS)
def test_a_manifest_edited_in_a_spec_field_is_refused(signed, keys, target, tmp_path):
    path = signed / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["spec"]["obs_high"][0] = 1000.0
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    r = run_info(signed, target, tmp_path / "s", keys["public"])
    assert r.returncode == SIGNATURE_REFUSED, r.stderr.decode()
    assert b"refusing the bundle" in r.stderr


def test_the_constructor_does_run_when_no_key_is_given(bundle_copy, tmp_path):
    # the control of the tests above: without --public-key a re-hashed manifest is all it takes
    marker = tmp_path / "constructor-ran"
    evil_library("x86_64", marker, bundle_copy / "x86_64.so")
    rehash(bundle_copy, "x86_64")
    run_info(bundle_copy, "x86_64", tmp_path / "s", None)
    assert marker.exists()


def test_unsigned_bundle_is_refused_when_a_key_is_given(bundle_copy, keys, tmp_path):
    r = run_info(bundle_copy, "x86_64", tmp_path / "s", keys["public"])
    assert r.returncode == SIGNATURE_REFUSED
    assert b"unsigned bundle" in r.stderr


def test_bundle_signed_with_another_key_is_refused(signed, keys, tmp_path):
    r = run_info(signed, "x86_64", tmp_path / "s", keys["other"])
    assert r.returncode == SIGNATURE_REFUSED
    assert b"wrong key" in r.stderr


def test_truncated_signature_is_refused(signed, keys, tmp_path):
    (signed / "manifest.sig").write_bytes((signed / "manifest.sig").read_bytes()[:63])
    r = run_info(signed, "x86_64", tmp_path / "s", keys["public"])
    assert r.returncode == SIGNATURE_REFUSED
    assert b"63 bytes" in r.stderr


def test_a_bad_public_key_file_is_a_usage_error(signed, tmp_path):
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key\n")
    r = run_info(signed, "x86_64", tmp_path / "s", bad)
    assert r.returncode == 2
    assert b"64 hex digits" in r.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_a_changed_kernel_plan_is_refused_before_loading(signed, keys, target, tmp_path):
    # every Linux stub runs from the plan, so the signature must cover it on every target
    into = tmp_path / "s"
    into.mkdir()
    extra = stage(signed, target, into, keys["public"])
    assert extra[-2:] == ["--plan", "plan.bin"]
    plan = bytearray((into / "plan.bin").read_bytes())
    plan[-8] ^= 1  # a weight or the output index: anything the stub would use
    (into / "plan.bin").write_bytes(bytes(plan))
    r = runner_for(linux_target(target)).run(
        into, ["./pae_stub", "info", "--bundle", "bundle", "--target", target, *extra], timeout=300
    )
    assert r.returncode == BUNDLE_REFUSED, r.stderr.decode()
    assert b"plan.bin: sha256" in r.stderr and b"refusing to load" in r.stderr


def test_a_signed_bundle_without_a_plan_runs_on_the_runtime_stub(
    bundle_copy, keys, tmp_path, small_controller, pendulum
):
    # exported before x86_64 ran from a plan: its signature covers no plan, so the TVM runtime stub runs it
    path = bundle_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    (bundle_copy / manifest["artifacts"]["x86_64"].pop("plan")["file"]).unlink()
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    sign_bundle(bundle_copy, keys["private"])
    into = tmp_path / "s"
    into.mkdir()
    assert "--plan" not in stage(bundle_copy, "x86_64", into, keys["public"])
    assert (into / "lib" / "libtvm_runtime.so").is_file()
    obs = pendulum.sample_observations(5, seed=13)
    got = run_stub_batch(bundle_copy, "x86_64", obs, public_key=keys["public"])
    np.testing.assert_allclose(got, small_controller(torch.tensor(obs)).detach().numpy(), atol=1e-5)


def test_a_cached_stub_build_that_changed_is_rebuilt(tmp_path, monkeypatch):
    from export.stub import build_stub

    monkeypatch.setenv("PRUNE_EXPORT_CACHE", str(tmp_path / "cache"))
    exe = build_stub("x86_64")
    good = exe.read_bytes()
    exe.write_bytes(good + b"\0")  # a changed binary in the cache is never run
    again = build_stub("x86_64")
    assert again.read_bytes() == good
    shutil.rmtree(tmp_path / "cache")


def test_a_cached_runtime_that_changed_is_replaced_by_the_installed_one(tmp_path, monkeypatch):
    from export.runtime import runtime_for
    from targets import host_arch

    monkeypatch.setenv("PRUNE_EXPORT_CACHE", str(tmp_path / "cache"))
    lib = runtime_for(host_arch()).lib_dir / "libtvm_ffi.so"
    good = lib.read_bytes()
    lib.write_bytes(b"\x7fELF not the runtime")
    assert (runtime_for(host_arch()).lib_dir / "libtvm_ffi.so").read_bytes() == good


def test_the_runtime_wheels_are_fetched_with_pinned_hashes(tmp_path, monkeypatch):
    import export.runtime as runtime

    seen: dict = {}

    def fake_run(cmd, **_kw):
        seen["cmd"] = cmd
        seen["requirements"] = Path(cmd[cmd.index("-r") + 1]).read_text()
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES")

    monkeypatch.setattr(runtime.subprocess, "run", fake_run)
    with pytest.raises(runtime.ExportError, match="DO NOT MATCH THE HASHES"):
        runtime._fetch_wheel_runtime("aarch64", tmp_path / "rt")
    assert "--require-hashes" in seen["cmd"]
    lines = seen["requirements"].splitlines()
    assert lines == [f"{req} --hash=sha256:{digest}" for req, digest in runtime.WHEEL_HASHES["aarch64"].items()]
    assert {r.split("==")[0] for r in runtime.WHEEL_HASHES["aarch64"]} == {"apache-tvm", "apache-tvm-ffi"}


def test_cached_aarch64_runtime_libraries_are_the_pinned_ones():
    from export.runtime import LIBRARY_HASHES, runtime_for

    d = runtime_for("aarch64").lib_dir  # fetched (pinned) or reused after re-hashing
    for name, digest in LIBRARY_HASHES["aarch64"].items():
        assert hashlib.sha256((d / name).read_bytes()).hexdigest() == digest


def test_stub_exits_5_when_its_output_is_closed(small_bundle, tmp_path):
    # PROTOCOL.md: 5 is an I/O error; a host that went away is one (it was 0)
    from export import frames

    extra = stage(small_bundle, "x86_64", tmp_path)
    proc = subprocess.Popen(
        ["./pae_stub", "serve", "--bundle", "bundle", "--target", "x86_64", *extra],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    proc.stdin.write(frames.encode(frames.HELLO, 1, []))
    proc.stdin.flush()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 5, err.decode()
    assert b"output closed" in err

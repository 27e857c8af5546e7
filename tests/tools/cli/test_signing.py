"""Signed bundles from the command line: keygen, ``export --sign``, ``hil --public-key`` on x86_64, end to end.

The replaced library has a constructor that creates a file: if anything loaded it, the file would exist.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

from targets import get_target
from tools.cli import main
from tools.controllers.native import mlp_architecture, pendulum_spec, save_controller

EVIL_C = """
#include <stdio.h>
__attribute__((constructor)) static void evil(void) {
    FILE* f = fopen(MARKER, "w");
    if (f) { fputs("library code ran\\n", f); fclose(f); }
}
int not_a_model(void) { return 0; }
"""


def _json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def signed(small_controller, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """keygen, then export --sign of the small controller for x86_64 (made through main, as a user would)."""
    d = tmp_path_factory.mktemp("signed")
    controller = d / "controller.pt"
    save_controller(controller, small_controller, pendulum_spec(), mlp_architecture(small_controller, "elu"))
    assert main(["keygen", str(d / "k.pem"), str(d / "k.pub"), "--json"]) == 0
    assert main(["keygen", str(d / "other.pem"), str(d / "other.pub")]) == 0
    assert (
        main(
            [
                "export",
                "--controller",
                str(controller),
                "--out",
                str(d / "bundle"),
                "--sign",
                str(d / "k.pem"),
                "--parity-samples",
                "50",
                "--json",
            ]
        )
        == 0
    )
    return {"root": d, "bundle": d / "bundle", "private": d / "k.pem", "public": d / "k.pub", "other": d / "other.pub"}


def test_keygen_json_names_both_files_and_the_public_key(tmp_path, capsys):
    code, out = _json(["keygen", str(tmp_path / "a.pem"), str(tmp_path / "a.pub")], capsys)
    assert code == 0 and out["ok"] is True
    assert out["private_key"] == str(tmp_path / "a.pem") and out["public_key"] == str(tmp_path / "a.pub")
    assert (tmp_path / "a.pub").read_text() == out["public_key_hex"] + "\n" and len(out["public_key_hex"]) == 64
    assert stat.S_IMODE((tmp_path / "a.pem").stat().st_mode) == 0o600


def test_export_sign_json_says_signed_and_by_which_key(signed, tmp_path, capsys):
    public_hex = signed["public"].read_text().strip()
    assert (signed["bundle"] / "manifest.sig").stat().st_size == 64
    code, out = _json(
        [
            "export",
            "--controller",
            str(signed["root"] / "controller.pt"),
            "--out",
            str(tmp_path / "b"),
            "--sign",
            str(signed["private"]),
            "--parity-samples",
            "20",
        ],
        capsys,
    )
    assert code == 0 and out["signed"] is True and out["public_key_hex"] == public_hex
    code, out = _json(
        [
            "export",
            "--controller",
            str(signed["root"] / "controller.pt"),
            "--out",
            str(tmp_path / "u"),
            "--parity-samples",
            "20",
        ],
        capsys,
    )
    assert code == 0 and out["signed"] is False and out["public_key_hex"] is None
    assert not (tmp_path / "u" / "manifest.sig").exists()


def test_hil_with_the_public_key_runs_two_lockstep_episodes_matching_the_host(signed, capsys):
    code, out = _json(
        [
            "hil",
            "--bundle",
            str(signed["bundle"]),
            "--target",
            "x86_64",
            "--episodes",
            "2",
            "--mode",
            "lockstep",
            "--public-key",
            str(signed["public"]),
        ],
        capsys,
    )
    assert code == 0 and out["ok"] is True, out
    assert out["public_key_hex"] == signed["public"].read_text().strip()
    assert out["seeds"] == [0, 1] and out["fidelity_failed"] == []
    assert np.all(np.abs(np.subtract(out["returns"], out["host_returns"])) <= out["fidelity_tolerance"])


def _evil_bundle(signed: dict[str, Path], into: Path) -> tuple[Path, Path]:
    """A copy of the signed bundle whose library is replaced by one with a file-creating constructor, and the
    manifest re-hashed to match (the signature is left as it was: the attacker has no private key)."""
    bundle = Path(shutil.copytree(signed["bundle"], into / "bundle"))
    marker = into / "library_code_ran"
    src = into / "evil.c"
    src.write_text(EVIL_C)
    lib = bundle / "x86_64.so"
    subprocess.run(
        [get_target("x86_64").cc, "-shared", "-fPIC", f'-DMARKER="{marker}"', str(src), "-o", str(lib)], check=True
    )
    manifest = json.loads((bundle / "manifest.json").read_text())
    data = lib.read_bytes()
    manifest["artifacts"]["x86_64"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return bundle, marker


def test_hil_refuses_a_replaced_library_with_a_rehashed_manifest_before_anything_loads_it(signed, tmp_path, capsys):
    bundle, marker = _evil_bundle(signed, tmp_path)
    code = main(
        ["hil", "--bundle", str(bundle), "--target", "x86_64", "--episodes", "1", "--public-key", str(signed["public"])]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert str(bundle) in err[0] and "signature does not match" in err[0]
    assert not marker.exists(), "the replaced library's constructor ran"
    # without a key the re-hashed manifest passes the hash check: that is what signing is for (README, Trust model)
    assert main(["hil", "--bundle", str(bundle), "--target", "x86_64", "--public-key", str(signed["other"])]) == 2
    assert not marker.exists()


def test_the_device_itself_refuses_the_replaced_library_when_the_host_check_is_skipped(
    signed, small_controller, tmp_path
):
    """run_hil straight to the stub (no host check): the stub checks the signature before it loads the library."""
    from export import StubFailed
    from tools.pipeline.hil import run_hil
    from tools.plant.policy import as_policy

    bundle, marker = _evil_bundle(signed, tmp_path)
    with pytest.raises(StubFailed, match=r"exit 6 \(signature refused\).*signature does not match"):
        run_hil(bundle, "x86_64", as_policy(small_controller), episodes=1, public_key=signed["public"])
    assert not marker.exists(), "the stub loaded the replaced library"

"""bench --sign KEY --public-key FILE: every bundle it makes is signed, and every stub run checks the signature."""

from __future__ import annotations

import json
from pathlib import Path

from export import generate_keypair, verify_bundle_signature


def test_a_signed_quick_bench_signs_every_bundle_and_runs_them_under_the_key(tmp_path: Path, cli) -> None:
    public_hex = generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    out = tmp_path / "report"
    proc = cli(
        "bench",
        "--quick",
        "--episodes",
        "1",
        "--methods",
        "gd",
        "--out",
        str(out),
        "--sign",
        str(tmp_path / "k.pem"),
        "--public-key",
        str(tmp_path / "k.pub"),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["config"]["sign"] == str(tmp_path / "k.pem") and report["config"]["public_key"] == str(
        tmp_path / "k.pub"
    )
    bundles = sorted((out / "bundles").iterdir())
    assert [b.name for b in bundles] == ["gd@0.25", "unpruned"]
    for bundle in bundles:
        assert verify_bundle_signature(bundle, tmp_path / "k.pub").controller_spec.obs_dim == 3
    stub_rows = [r for r in report["reward"] if r["runtime"] == "stub:x86_64"]
    assert len(stub_rows) == 2  # both models ran in the loop on the key-checking stub
    assert (tmp_path / "k.pub").read_text().strip() == public_hex

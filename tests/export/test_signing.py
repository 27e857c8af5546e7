"""Host side of signed bundles: key files, ``export_bundle(sign=)``, ``sign_bundle``, ``verify_bundle_signature``."""

from __future__ import annotations

import json
import stat

import pytest
from cryptography.hazmat.primitives import serialization

from export import ExportError, export_bundle, read_public_key
from export.signing import (
    SignatureRefused,
    generate_keypair,
    public_key_hex,
    sign_bundle,
    verify_bundle_signature,
)
from targets import parse_target_list


@pytest.fixture
def keypair(tmp_path):
    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    return tmp_path / "k.pem", tmp_path / "k.pub"


def test_keygen_writes_a_private_pem_readable_only_by_its_owner_and_a_hex_public_key(keypair):
    private, public = keypair
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    serialization.load_pem_private_key(private.read_bytes(), password=None)
    text = public.read_text()
    assert len(text) == 65 and text.endswith("\n") and text.strip() == public_key_hex(private)
    assert len(read_public_key(public)) == 32


def test_keygen_never_overwrites_a_key(keypair, tmp_path):
    private, _ = keypair
    before = private.read_bytes()
    with pytest.raises(ExportError, match="never overwritten"):
        generate_keypair(private, tmp_path / "new.pub")
    assert private.read_bytes() == before and not (tmp_path / "new.pub").exists()


def test_export_with_sign_writes_a_signature_the_public_key_accepts(make_mlp, pendulum, keypair, tmp_path):
    private, public = keypair
    out = tmp_path / "bundle"
    export_bundle(make_mlp([8]), pendulum, parse_target_list("x86_64"), out, n_parity=20, sign=private)
    assert len((out / "manifest.sig").read_bytes()) == 64
    manifest = verify_bundle_signature(out, public)
    assert manifest.controller_spec.obs_dim == 3


def test_export_with_a_bad_key_fails_before_any_work(make_mlp, pendulum, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key\n")
    with pytest.raises(ExportError, match="not an unencrypted PEM private key"):
        export_bundle(make_mlp([8]), pendulum, parse_target_list("x86_64"), tmp_path / "b", sign=bad)
    assert not (tmp_path / "b").exists() and list(tmp_path.iterdir()) == [bad]


def test_host_check_refuses_unsigned_changed_and_wrongly_signed_bundles(bundle_copy, keypair, tmp_path):
    private, public = keypair
    with pytest.raises(SignatureRefused, match="unsigned bundle"):
        verify_bundle_signature(bundle_copy, public)
    sign_bundle(bundle_copy, private)
    verify_bundle_signature(bundle_copy, public)
    generate_keypair(tmp_path / "o.pem", tmp_path / "o.pub")
    with pytest.raises(SignatureRefused, match="does not match"):
        verify_bundle_signature(bundle_copy, tmp_path / "o.pub")
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["spec"]["act_high"] = [20.0]
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    with pytest.raises(SignatureRefused, match="does not match"):
        verify_bundle_signature(bundle_copy, public)


def test_signed_manifest_lists_every_file_of_the_bundle(small_bundle, keypair):
    # what the signature covers: manifest.json's bytes, and through its sha256 records every other file
    manifest = json.loads((small_bundle / "manifest.json").read_text())
    listed = {manifest["onnx"]["file"]}
    for record in manifest["artifacts"].values():
        listed.add(record["file"])
        listed |= {record["plan"]["file"]} if "plan" in record else set()
        listed |= {s["file"] for s in (record.get("sources") or {}).values()}
    on_disk = {p.name for p in small_bundle.iterdir()} - {"manifest.json", "manifest.sig"}
    assert listed == on_disk
    assert "cortex-a7.plan" in listed


def test_a_file_changed_after_signing_is_named(bundle_copy, keypair):
    private, public = keypair
    sign_bundle(bundle_copy, private)
    (bundle_copy / "model.onnx").write_bytes((bundle_copy / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(ExportError, match="model.onnx"):
        verify_bundle_signature(bundle_copy, public)
    with pytest.raises(ExportError, match="model.onnx"):
        sign_bundle(bundle_copy, private)  # a bundle whose files disagree with its manifest is not signed

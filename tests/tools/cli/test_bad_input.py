"""Every bad input answered before any work: exit 2 (1 for an infeasible search), one line naming the file or flag
and the problem, no traceback, nothing written. One row per (subcommand, case); the CLI runs in-process."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from export import ControllerSpec, generate_keypair, sign_bundle
from tools.cli import main
from tools.controllers.native import build_mlp, mlp_architecture, pendulum_spec, save_controller

torch.set_num_threads(1)

READ_ONLY = Path("/proc/pae-no-such-dir")  # /proc takes no new files, even from root (chmod does not stop root)


@dataclass
class Files:
    """The inputs every case draws from (made once, never written by a case)."""

    root: Path

    def __getattr__(self, name: str) -> Path:
        return self.root / FILE_NAMES[name]


FILE_NAMES = {
    "good": "good.pt",
    "empty": "empty.pt",
    "truncated": "truncated.pt",
    "random": "random.pt",
    "nan": "nan.pt",
    "inf": "inf.pt",
    "obs4": "obs4.pt",
    "sb3_corrupt": "corrupt_policy.zip",
    "text": "notes.txt",
    "empty_onnx": "empty.onnx",
    "random_onnx": "random.onnx",
    "a_file": "a_file",
    "bundle": "bundle",
    "bundle_other_source": "bundle_other_source",
    "bundle_tampered": "bundle_tampered",
    "bundle_garbage": "bundle_garbage",
    "config_random": "random.toml",
    "config_unknown": "unknown.toml",
    "private_key": "signing.pem",
    "public_key": "signing.pub",
    "other_private_key": "other.pem",
    "other_public_key": "other.pub",
    "bundle_signed": "bundle_signed",
    "bundle_signed_tampered": "bundle_signed_tampered",
}


def _manifest(bundle: Path, source: Path, sha256: str | None) -> None:
    bundle.mkdir()
    onnx = bundle / "model.onnx"
    onnx.write_bytes(b"not really onnx")
    lib = bundle / "lib.so"
    lib.write_bytes(b"not really a library")  # hashed right: hil checks every file before it looks at anything else
    spec = pendulum_spec()
    manifest = {
        "format_version": 1,
        "created_utc": "2026-01-01T00:00:00Z",
        "source": {"path": str(source), "sha256": sha256, "architecture": {}},
        "spec": spec.to_dict(),
        "inputs": [],
        "outputs": [],
        "param_count": 0,
        "versions": {},
        "onnx": {
            "file": "model.onnx",
            "sha256": hashlib.sha256(onnx.read_bytes()).hexdigest(),
            "bytes": onnx.stat().st_size,
        },
        "artifacts": {
            "x86_64": {
                "file": "lib.so",
                "sha256": hashlib.sha256(lib.read_bytes()).hexdigest(),
                "bytes": lib.stat().st_size,
            }
        },
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("bad_inputs")
    f = Files(root)
    spec = pendulum_spec()
    torch.manual_seed(0)
    good = build_mlp(spec, [8], "tanh")
    save_controller(f.good, good, spec, mlp_architecture(good, "tanh"))
    for name, value in (("nan", float("nan")), ("inf", float("inf"))):
        bad = build_mlp(spec, [8], "tanh")
        with torch.no_grad():
            bad[2].bias[0] = value
        save_controller(getattr(f, name), bad, spec, mlp_architecture(bad, "tanh"))
    spec4 = ControllerSpec(
        obs_dim=4,
        act_dim=1,
        obs_low=(-1.0,) * 4,
        obs_high=(1.0,) * 4,
        act_low=(-2.0,),
        act_high=(2.0,),
        env_id="Pendulum-v1",
    )
    m4 = build_mlp(spec4, [8], "tanh")
    save_controller(f.obs4, m4, spec4, mlp_architecture(m4, "tanh"))
    f.empty.write_bytes(b"")
    f.empty_onnx.write_bytes(b"")
    raw = f.good.read_bytes()
    f.truncated.write_bytes(raw[: len(raw) // 2])
    rng = os.urandom
    f.random.write_bytes(rng(4096))
    f.random_onnx.write_bytes(rng(4096))
    with zipfile.ZipFile(f.sb3_corrupt, "w") as z:
        z.writestr("data", json.dumps({"policy_class": {"__module__": "stable_baselines3.sac.policies"}}))
        z.writestr("policy.pth", rng(512))
    f.text.write_text("a text file, not weights\n")
    f.a_file.write_text("a regular file\n")
    good_sha = hashlib.sha256(raw).hexdigest()
    _manifest(f.bundle, f.good, good_sha)
    _manifest(f.bundle_other_source, f.random, good_sha)  # source.path's bytes are not the recorded ones
    _manifest(f.bundle_tampered, f.good, good_sha)
    (f.bundle_tampered / "model.onnx").write_bytes(b"changed after export")
    f.bundle_garbage.mkdir()
    (f.bundle_garbage / "manifest.json").write_bytes(rng(256))
    f.config_random.write_bytes(b"\xff\xfe" + rng(256))
    f.config_unknown.write_text("no-such-key = 1\n")
    generate_keypair(f.private_key, f.public_key)
    generate_keypair(f.other_private_key, f.other_public_key)
    _manifest(f.bundle_signed, f.good, good_sha)
    sign_bundle(f.bundle_signed, f.private_key)
    _manifest(f.bundle_signed_tampered, f.good, good_sha)
    sign_bundle(f.bundle_signed_tampered, f.private_key)
    _replace_and_rehash(f.bundle_signed_tampered, "lib.so", b"another library")  # the signature no longer matches
    return f


def _replace_and_rehash(bundle: Path, name: str, data: bytes) -> None:
    """What an attacker who can write the bundle does: replace a file and fix its sha256 and size in manifest.json."""
    (bundle / name).write_bytes(data)
    manifest = json.loads((bundle / "manifest.json").read_text())
    for record in manifest["artifacts"].values():
        if record["file"] == name:
            record.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (bundle / "manifest.json").write_text(json.dumps(manifest))


# ---------------------------------------------------------------- the table

Argv = Callable[[Files, Path], list[str]]

# How each subcommand runs when the case does not say otherwise (outputs under the case's own folder).
BASE: dict[str, Argv] = {
    "eval": lambda f, out: ["eval", "--episodes", "1"],
    "prune": lambda f, out: ["prune", "--judge-episodes", "0", "--out", str(out / "p.pt")],
    "export": lambda f, out: ["export", "--out", str(out / "bundle")],
    "hil": lambda f, out: ["hil", "--bundle", str(f.bundle), "--target", "x86_64", "--compare-other-controller"],
    "bench": lambda f, out: ["bench", "--quick", "--out", str(out / "report")],
    "run": lambda f, out: ["run", "--quick", "--out", str(out / "report")],
}
READERS = tuple(BASE)

# case -> (extra argv, fragments the one error line must hold); {file} stands for the file the case reads
CONTROLLER_CASES: dict[str, tuple[Callable[[Files], list[str]], tuple[str, ...]]] = {
    "missing": (lambda f: ["--controller", str(f.root / "nope.pt")], ("nope.pt", "no such file")),
    "empty": (lambda f: ["--controller", str(f.empty)], ("empty.pt", "empty file")),
    "empty-onnx": (lambda f: ["--controller", str(f.empty_onnx)], ("empty.onnx", "empty file")),
    "truncated": (lambda f: ["--controller", str(f.truncated)], ("truncated.pt", "not a controller file")),
    "random-bytes": (lambda f: ["--controller", str(f.random)], ("random.pt", "not a controller file")),
    "random-onnx": (lambda f: ["--controller", str(f.random_onnx)], ("random.onnx", "not an ONNX model")),
    "nan-weights": (lambda f: ["--controller", str(f.nan)], ("nan.pt", "'2.bias'", "non-finite")),
    "inf-weights": (lambda f: ["--controller", str(f.inf)], ("inf.pt", "'2.bias'", "non-finite")),
    "spec-env-mismatch": (lambda f: ["--controller", str(f.obs4)], ("obs4.pt", "4 observations", "Pendulum-v1")),
    "wrong-format": (lambda f: ["--controller", str(f.good), "--format", "onnx"], ("good.pt", "not an ONNX model")),
    "wrong-format-torchscript": (
        lambda f: ["--controller", str(f.good), "--format", "torchscript"],
        ("good.pt", "not a TorchScript"),
    ),
    "wrong-format-torch-export": (
        lambda f: ["--controller", str(f.random), "--format", "torch-export"],
        ("random.pt", "not a torch.export"),
    ),
    "corrupt-zip-member": (
        lambda f: ["--controller", str(f.sb3_corrupt)],
        ("corrupt_policy.zip", "cannot be read as sb3"),
    ),
    "non-zip-as-sb3": (
        lambda f: ["--controller", str(f.random), "--format", "sb3"],
        ("random.pt", "cannot be read as sb3"),
    ),
    "factory-non-weights": (
        lambda f: ["--controller", str(f.text), "--factory", "torch.nn:Identity"],
        ("notes.txt", "not a state dict"),
    ),
    "factory-needs-arguments": (
        lambda f: ["--controller", str(f.good), "--factory", "torch.nn:Linear"],
        ("--factory", "no arguments"),
    ),
    "bad-factory-string": (
        lambda f: ["--controller", str(f.good), "--factory", "nocolon"],
        ("--factory", "package.module:function"),
    ),
    "factory-not-found": (
        lambda f: ["--controller", str(f.good), "--factory", "no_such_module_x:f"],
        ("--factory", "no_such_module_x"),
    ),
    "unknown-env": (lambda f: ["--controller", str(f.random_onnx), "--env", "NoSuchEnv-v9"], ("--env NoSuchEnv-v9",)),
}


@dataclass
class Case:
    """One row: a subcommand's argv, the exit code and the fragments its one error line holds."""

    argv: Callable[[Files, Path], list[str]]
    fragments: tuple[str, ...]
    code: int = 2


def _with(sub: str, extra: Callable[[Files], list[str]]) -> Argv:
    return lambda f, out: BASE[sub](f, out) + extra(f)


CASES: dict[tuple[str, str], Case] = {
    (sub, name): Case(_with(sub, extra), frags) for sub in READERS for name, (extra, frags) in CONTROLLER_CASES.items()
}


def _case(sub: str, name: str, argv: Argv, *fragments: str, code: int = 2) -> None:
    CASES[(sub, name)] = Case(argv, fragments, code)


def _out(sub: str, flag: str, where: Callable[[Files, Path], Path]) -> Argv:
    """BASE[sub] with the output flag pointing at ``where`` (argparse takes the last --out given)."""
    return lambda f, out: BASE[sub](f, out) + ["--controller", str(f.good), flag, str(where(f, out))]


for sub, name in (("prune", "p.pt"), ("export", "bundle"), ("bench", "report"), ("run", "report")):
    _case(sub, "out-read-only", _out(sub, "--out", lambda f, out, n=name: READ_ONLY / n), "--out", "not writable")
    _case(sub, "out-under-a-file", _out(sub, "--out", lambda f, out, n=name: f.a_file / n), "--out", "is a file")
for sub in ("export", "bench", "run"):
    _case(sub, "out-occupied", _out(sub, "--out", lambda f, out: f.bundle), "--out", "not empty", "--force")
    _case(sub, "out-is-a-file", _out(sub, "--out", lambda f, out: f.a_file), "--out", "not a folder")
_case("prune", "out-is-a-directory", _out("prune", "--out", lambda f, out: f.bundle), "--out", "is a directory")
_case("hil", "plot-read-only", _out("hil", "--plot", lambda f, out: READ_ONLY / "p.png"), "--plot", "not writable")
_case("hil", "plot-under-a-file", _out("hil", "--plot", lambda f, out: f.a_file / "p.png"), "--plot", "is a file")
_case("hil", "plot-not-an-image", _out("hil", "--plot", lambda f, out: out / "p.txt"), "--plot", ".png")
_case(
    "run",
    "config-is-a-directory",
    lambda f, out: ["run", str(f.bundle), "--out", str(out / "r")],
    "bundle",
    "is a directory",
)
_case(
    "run",
    "config-random-bytes",
    lambda f, out: ["run", str(f.config_random), "--out", str(out / "r")],
    "random.toml",
    "not a text file",
)
_case(
    "run",
    "config-unknown-key",
    lambda f, out: ["run", str(f.config_unknown), "--out", str(out / "r")],
    "unknown.toml",
    "no-such-key",
)
_case(
    "run",
    "config-missing",
    lambda f, out: ["run", str(f.root / "none.toml"), "--out", str(out / "r")],
    "none.toml",
    "no such",
)

# numbers: non-finite and out of range, refused by the flag's type (argparse: 'argument --flag: ...')
NUMBERS = {
    "hil": [
        ("--deadline-ms", "inf"),
        ("--deadline-ms", "nan"),
        ("--deadline-ms", "-1"),
        ("--rate-hz", "inf"),
        ("--rate-hz", "0"),
        ("--rate-hz", "5000"),
        ("--rate-hz", "nan"),
        ("--episodes", "0"),
        ("--runner", "bogus"),
        ("--runner", "ssh://-oProxyCommand=x@host"),
        ("--safe-action", "nan"),
        ("--device-deadline-us", "-1"),
        ("--mode", "bogus"),
    ],
    "prune": [
        ("--tolerance", "nan"),
        ("--tolerance", "5"),
        ("--tolerance", "-1"),
        ("--floor", "nan"),
        ("--floor", "inf"),
        ("--keep", "0"),
        ("--keep", "1.5"),
        ("--keep", "nan"),
        ("--keep", "0.5,0.5"),
        ("--stability-tolerance", "-1"),
        ("--stability-tolerance", "nan"),
        ("--stability", "bogus"),
        ("--method", "bogus"),
        ("--max-evaluations", "0"),
    ],
    "export": [("--runner", "bogus"), ("--parity-samples", "0")],
    "eval": [("--episodes", "0"), ("--judge", "bogus")],
    "bench": [("--episodes", "0"), ("--keep", "0"), ("--keep", "nan"), ("--min-psnr", "nan")],
    "run": [("--episodes", "0")],
}
for sub, pairs in NUMBERS.items():
    for flag, value in pairs:
        _case(
            sub,
            f"{flag.lstrip('-')}={value}",
            lambda f, out, s=sub, fl=flag, v=value: BASE[s](f, out) + [fl, v],
            f"argument {flag}",
        )

# checks that need more than a flag's type
_case(
    "prune",
    "tolerance-swallows-keep",
    lambda f, out: BASE["prune"](f, out) + ["--keep", "0.05", "--tolerance", "0.1"],
    "--tolerance 0.1",
    "--keep 0.05",
)
_case(
    "prune",
    "metric-contradicts-method",
    lambda f, out: BASE["prune"](f, out) + ["--method", "uniform-l1", "--metric", "l2"],
    "ranks units by l1",
)
_case(
    "prune",
    "bad-component",
    lambda f, out: BASE["prune"](f, out) + ["--component", "nameonly"],
    "--component",
    "NAME=PATTERN",
)
_case("bench", "methods-bogus", lambda f, out: BASE["bench"](f, out) + ["--methods", "gd,bogus"], "--methods", "bogus")
# bench and run measure any Box env; an --env that is not the native controller's own is refused before any work
_case(
    "bench",
    "env-not-the-controllers",
    lambda f, out: BASE["bench"](f, out) + ["--env", "InvertedPendulum-v5"],
    "--env InvertedPendulum-v5",
    "a controller for Pendulum-v1",
)
_case(
    "run",
    "env-not-the-controllers",
    lambda f, out: BASE["run"](f, out) + ["--env", "InvertedPendulum-v5"],
    "--env InvertedPendulum-v5",
    "a controller for Pendulum-v1",
)
_case("export", "targets-bogus", lambda f, out: BASE["export"](f, out) + ["--targets", "bogus"], "bogus")
_case(
    "export",
    "obs-bounds-reversed",
    lambda f, out: BASE["export"](f, out) + ["--obs-bounds=1,0"],
    "argument --obs-bounds",
    "LOW < HIGH",
)
_case(
    "export",
    "obs-bounds-bounded-env",
    lambda f, out: BASE["export"](f, out) + ["--obs-bounds=-1,1"],
    "--obs-bounds",
    "bounded in every dimension",
)
_case(
    "export",
    "parity-tolerance-zero",
    lambda f, out: BASE["export"](f, out) + ["--parity-tolerance", "0"],
    "argument --parity-tolerance",
)
# hil: bundles and the controller the bundle was made from
_case(
    "hil",
    "bundle-missing",
    lambda f, out: ["hil", "--bundle", str(f.root / "none"), "--target", "x86_64"],
    "none",
    "not a bundle",
)
_case(
    "hil", "bundle-no-manifest", lambda f, out: ["hil", "--bundle", str(f.root), "--target", "x86_64"], "not a bundle"
)
_case(
    "hil",
    "bundle-garbage-manifest",
    lambda f, out: ["hil", "--bundle", str(f.bundle_garbage), "--target", "x86_64"],
    "manifest.json",
    "malformed",
)
_case(
    "hil",
    "target-not-in-bundle",
    lambda f, out: BASE["hil"](f, out) + ["--target", "cortex-a72"],
    "--target cortex-a72",
    "x86_64",
)
_case(
    "hil",
    "other-controller",
    lambda f, out: ["hil", "--bundle", str(f.bundle), "--target", "x86_64", "--controller", str(f.nan)],
    "nan.pt",
    "--compare-other-controller",
)
_case(
    "hil",
    "source-path-not-the-recorded-bytes",
    lambda f, out: ["hil", "--bundle", str(f.bundle_other_source), "--target", "x86_64"],
    "random.pt",
    "exported from",
)
_case(
    "hil",
    "bundle-tampered",
    lambda f, out: ["hil", "--bundle", str(f.bundle_tampered), "--target", "x86_64"],
    "model.onnx",
    "was changed",
)
# keygen: both key files new, in a folder that takes files; nothing written when either is refused
_case(
    "keygen",
    "private-exists",
    lambda f, out: ["keygen", str(f.private_key), str(out / "new.pub")],
    "signing.pem",
    "exists already",
)
_case(
    "keygen",
    "public-exists",
    lambda f, out: ["keygen", str(out / "new.pem"), str(f.public_key)],
    "signing.pub",
    "exists already",
)
_case("keygen", "same-file", lambda f, out: ["keygen", str(out / "k"), str(out / "k")], "same file")
_case(
    "keygen",
    "folder-read-only",
    lambda f, out: ["keygen", str(READ_ONLY.parent / "k.pem"), str(out / "k.pub")],
    "k.pem",
    "not writable",
)
_case(
    "keygen",
    "folder-missing",
    lambda f, out: ["keygen", str(out / "none" / "k.pem"), str(out / "k.pub")],
    "does not exist",
)
_case(
    "keygen",
    "under-a-file",
    lambda f, out: ["keygen", str(out / "k.pem"), str(f.a_file / "k.pub")],
    "a_file",
    "is a file",
)
# export --sign: the key is checked before any work
_case(
    "export",
    "sign-missing-key",
    lambda f, out: BASE["export"](f, out) + ["--sign", str(f.root / "none.pem")],
    "--sign",
    "none.pem",
    "no such file",
)
_case(
    "export",
    "sign-garbage-key",
    lambda f, out: BASE["export"](f, out) + ["--sign", str(f.random)],
    "--sign",
    "random.pt",
    "not an unencrypted PEM private key",
)
_case(
    "export",
    "sign-with-the-public-key",
    lambda f, out: BASE["export"](f, out) + ["--sign", str(f.public_key)],
    "--sign",
    "signing.pub",
    "is a public key file",
)
_case(
    "export",
    "sign-a-folder",
    lambda f, out: BASE["export"](f, out) + ["--sign", str(f.root)],
    "--sign",
    "is a directory",
)
# hil --public-key: the signature is checked before the host controller or the device loads anything


def _hil_signed(f: Files, out: Path) -> list[str]:
    return ["hil", "--bundle", str(f.bundle_signed), "--target", "x86_64"]


_case(
    "hil",
    "public-key-unsigned-bundle",
    lambda f, out: BASE["hil"](f, out) + ["--public-key", str(f.public_key)],
    str(FILE_NAMES["bundle"]),
    "unsigned bundle",
)
_case(
    "hil",
    "public-key-wrong-key",
    lambda f, out: _hil_signed(f, out) + ["--public-key", str(f.other_public_key)],
    "bundle_signed/manifest.sig",
    "signature does not match",
)
_case(
    "hil",
    "public-key-tampered-rehashed",
    lambda f, out: [
        "hil",
        "--bundle",
        str(f.bundle_signed_tampered),
        "--target",
        "x86_64",
        "--public-key",
        str(f.public_key),
    ],
    "bundle_signed_tampered/manifest.sig",
    "signature does not match",
)
_case(
    "hil",
    "public-key-is-the-private-key",
    lambda f, out: _hil_signed(f, out) + ["--public-key", str(f.private_key)],
    "--public-key",
    "signing.pem",
    "not a public key file",
)
_case(
    "hil",
    "public-key-missing",
    lambda f, out: _hil_signed(f, out) + ["--public-key", str(f.root / "none.pub")],
    "--public-key",
    "none.pub",
)
# bench and run make their own bundles: --public-key needs --sign, and must be its public half
for sub in ("bench", "run"):
    _case(
        sub,
        "public-key-without-sign",
        lambda f, out, s=sub: BASE[s](f, out) + ["--public-key", str(f.public_key)],
        "--public-key",
        "--sign",
    )
    _case(
        sub,
        "public-key-not-the-pair",
        lambda f, out, s=sub: BASE[s](f, out) + ["--sign", str(f.private_key), "--public-key", str(f.other_public_key)],
        "--public-key",
        "other.pub",
        "not the public half",
    )
    _case(
        sub,
        "sign-with-the-public-key",
        lambda f, out, s=sub: BASE[s](f, out) + ["--sign", str(f.public_key)],
        "--sign",
        "is a public key file",
    )
_case(
    "bench",
    "sign-autoencoder",
    lambda f, out: BASE["bench"](f, out) + ["--model", "autoencoder", "--sign", str(f.private_key)],
    "--sign",
    "autoencoder",
)
# an infeasible search: exit 1, a valid JSON object naming the failed constraint, nothing written
_case(
    "prune",
    "infeasible",
    lambda f, out: (
        BASE["prune"](f, out)
        + ["--controller", str(f.good), "--floor", "1e9", "--max-evaluations", "3", "--search-episodes", "2", "--json"]
    ),
    "floor",
    code=1,
)


def _snapshot(*roots: Path) -> set[tuple[str, int]]:
    return {(str(p), p.stat().st_size) for root in roots for p in root.rglob("*")}


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's usage errors exit from parse_args
        return int(e.code or 0)


@pytest.mark.parametrize(("sub", "case"), sorted(CASES), ids=[f"{s}:{c}" for s, c in sorted(CASES)])
def test_bad_input_is_one_line_and_writes_nothing(
    sub: str,
    case: str,
    files: Files,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = CASES[(sub, case)]
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(tmp_path)  # a stray relative write (runs/...) would show in the snapshot
    argv = row.argv(files, out)
    before = _snapshot(tmp_path, files.root)
    code = _run(argv)
    captured = capsys.readouterr()
    assert code == row.code, f"{argv}\n{captured.err}"
    assert "Traceback" not in captured.err
    assert _snapshot(tmp_path, files.root) == before, f"{argv} wrote files"
    if row.code == 1:  # infeasible: the one JSON object says which constraint failed
        result = json.loads(captured.out)
        assert result["ok"] is False and result["feasible"] is False
        assert row.fragments[0] in result["failed_constraints"] and row.fragments[0] in result["why_infeasible"]
        return
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, f"{argv}: expected one line, got:\n{captured.err}"
    for fragment in row.fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


def test_torch_export_refusal_is_one_line_in_a_fresh_process(files: Files, cli, assert_one_line_error) -> None:
    """torch logs a traceback of its own through logging (which capsys does not see) before raising; it stays silent."""
    proc = cli("eval", "--controller", str(files.good), "--format", "torch-export")
    assert_one_line_error(proc, "good.pt", "not a torch.export program")

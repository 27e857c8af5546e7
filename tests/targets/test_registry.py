"""targets/: the built-in registry, host CPU detection, TOML user targets and their errors."""

from __future__ import annotations

import pytest

from targets import TargetError, all_targets, get_target, native_target, parse_target_list
from targets.registry import load_target_file

REQUIRED = ("x86_64", "x86_64-avx2", "aarch64", "cortex-a53", "cortex-a72", "cortex-a76", "cortex-a7")


def test_builtin_targets_cover_x86_aarch64_and_armv7_with_valid_tvm_dicts(user_dir):
    import tvm

    known = all_targets()
    for name in REQUIRED:
        t = known[name]
        assert t.kind == "linux" and t.cc
        assert tvm.target.Target(t.tvm).attrs["mtriple"] == t.tvm["mtriple"]
    assert known["cortex-a7"].tvm["mfloat-abi"] == "hard" and known["cortex-a7"].arch == "armv7"
    assert known["cortex-a72"].qemu_cpu == "cortex-a72" and known["cortex-a72"].sysroot == "/usr/aarch64-linux-gnu"
    assert known["cortex-m4"].kind == "mcu" and known["cortex-m4"].cc == "arm-none-eabi-gcc"


def test_native_target_names_the_real_host_cpu_not_the_word_native():
    import tvm

    t = native_target()
    cpu = t.tvm["mcpu"]
    assert cpu and cpu not in ("native", "generic")
    assert tvm.target.codegen.llvm_is_valid_cpu(cpu, t.tvm["mtriple"])


def test_unknown_target_error_lists_the_known_names(user_dir):
    with pytest.raises(TargetError, match=r"unknown target 'cortex-a99'; known: .*cortex-a72"):
        parse_target_list("x86_64,cortex-a99")


def test_target_list_keeps_order_and_drops_duplicates(user_dir):
    assert [t.name for t in parse_target_list("cortex-a7, x86_64,cortex-a7")] == ["cortex-a7", "x86_64"]


def test_one_toml_file_adds_a_target_with_arch_defaults(user_dir):
    (user_dir / "pi5.toml").write_text(
        'name = "my-pi5"\narch = "aarch64"\nrunner = "ssh://pi@pi5.local"\n'
        '[tvm]\nkind = "llvm"\nmtriple = "aarch64-linux-gnu"\nmcpu = "cortex-a76"\n'
    )
    t = get_target("my-pi5")
    assert t.cc == "aarch64-linux-gnu-gcc" and t.qemu == "qemu-aarch64" and t.qemu_cpu == "cortex-a76"
    assert t.runner == "ssh://pi@pi5.local" and t.source.endswith("pi5.toml")


def test_toml_with_an_unknown_key_is_refused_naming_the_file(user_dir):
    bad = user_dir / "typo.toml"
    bad.write_text('name = "x"\narch = "aarch64"\nmcpu = "cortex-a76"\n[tvm]\nkind = "llvm"\n')
    with pytest.raises(TargetError, match=r"typo\.toml: unknown key\(s\) mcpu"):
        load_target_file(bad)


def test_toml_with_a_bad_arch_is_refused(user_dir):
    bad = user_dir / "risc.toml"
    bad.write_text('name = "rv"\narch = "riscv64"\n[tvm]\nkind = "llvm"\n')
    with pytest.raises(TargetError, match="arch 'riscv64' is not one of"):
        load_target_file(bad)


def test_missing_cross_compiler_is_named_with_its_package(user_dir):
    (user_dir / "nocc.toml").write_text(
        'name = "nocc"\narch = "aarch64"\ncc = "no-such-aarch64-gcc"\ntoolchain_package = "gcc-foo"\n'
        '[tvm]\nkind = "llvm"\nmtriple = "aarch64-linux-gnu"\n'
    )
    with pytest.raises(TargetError, match=r"'nocc': cross compiler 'no-such-aarch64-gcc' not found.*gcc-foo"):
        get_target("nocc").require_compiler()


def test_host_cpu_is_tvms_answer_and_is_cached_per_machine(tmp_path, monkeypatch):
    import subprocess
    import sys

    import tvm.target.codegen

    from targets import host

    monkeypatch.setenv("PRUNE_EXPORT_CACHE", str(tmp_path))
    host.host_cpu.cache_clear()
    assert host.host_cpu() == str(tvm.target.codegen.llvm_get_system_cpu())
    cached = list((tmp_path / "host_cpu").iterdir())
    assert len(cached) == 1 and cached[0].read_text().strip() == host.host_cpu()
    probe = "import sys; from targets.host import host_cpu; print(host_cpu(), 'tvm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == [host.host_cpu(), "False"]
    host.host_cpu.cache_clear()

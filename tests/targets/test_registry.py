"""targets/: the built-in registry, host CPU detection, TOML user targets and their errors."""

from __future__ import annotations

import pytest

from targets import (
    TargetError,
    all_targets,
    get_target,
    host_arch,
    host_cpu_flags,
    make_target,
    native_target,
    parse_target_list,
)
from targets.registry import load_target_file

REQUIRED = ("x86_64", "x86_64-sse2", "x86_64-avx2", "aarch64", "cortex-a53", "cortex-a72", "cortex-a76", "cortex-a7")


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


def test_x86_64_is_this_machines_cpu_never_silently_the_sse2_baseline(user_dir):
    # Built on an x86-64 host, the default target is its CPU (AVX2/AVX-512 and FMA where it has them), and
    # names the flags a machine needs to run the code; the baseline is a target of its own, by name.
    t, baseline = get_target("x86_64"), get_target("x86_64-sse2")
    assert "mcpu" not in baseline.tvm and baseline.host_flags == () and baseline.vector_bits == 128
    if host_arch() == "x86_64":
        assert t.tvm["mcpu"] == native_target().tvm["mcpu"] and t.runs_on_host
        assert set(t.host_flags) <= host_cpu_flags() and {"avx2", "fma"} & host_cpu_flags() <= set(t.host_flags)
        assert t.vector_bits == (512 if "avx512f" in host_cpu_flags() else 256 if "avx2" in host_cpu_flags() else 128)
    else:  # cross-compiling: no x86 CPU to ask, and the description says so
        assert "mcpu" not in t.tvm and "SSE2 baseline" in t.description


def test_a_target_needing_a_flag_this_host_lacks_does_not_run_here(user_dir):
    t = make_target(name="future", arch=host_arch(), tvm=dict(get_target("x86_64").tvm), host_flags=["pae_no_such"])
    assert not t.runs_on_host


def test_cortex_m4_contracts_multiply_adds_into_vfma(user_dir):
    # LLVM calls the M4's vfma.f32 slow (3 cycles against 1 + 1) and never fuses there unless told
    for name in ("cortex-m4", "cortex-m4-256k"):
        assert "-slowfpvfmx" in get_target(name).tvm["mattr"]


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

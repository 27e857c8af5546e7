"""Microcontroller export (export/mcu/): generated C checked on the host, firmware under qemu-system-arm, memory budget."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from export import ExportError, FirmwareSession, export_bundle, export_onnx, frames, read_manifest
from export.kernel_chain import kernel_chain
from export.mcu.codegen import arena_bytes
from export.mcu.firmware import STACK_BYTES, lower_for_mcu
from targets import get_target, make_target, parse_target_list

OBS = [0.6, 0.8, -1.5]
# A 260-wide layer (wider than the reference's 256): its accumulators go through TVM's workspace
# allocator, which the generated C answers from the arena.
HIDDEN = [16, 260]


@pytest.fixture(scope="module")
def controller(make_mlp) -> torch.nn.Module:
    torch.set_num_threads(1)
    return make_mlp(HIDDEN, "elu", seed=3)


@pytest.fixture(scope="module")
def bundle(controller, pendulum, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mcu") / "bundle"
    export_bundle(controller, pendulum, parse_target_list("cortex-m4,cortex-m7"), out, n_parity=100, seed=4)
    return out


def manifest(bundle: Path) -> dict:
    return read_manifest(bundle).to_dict()


def torch_action(controller, obs) -> np.ndarray:
    with torch.no_grad():
        return controller(torch.tensor(np.asarray(obs, dtype=np.float32)).reshape(1, -1)).numpy().reshape(-1)


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m7"])
def test_generated_c_on_host_and_firmware_under_qemu_match_onnxruntime(bundle, target):
    art = manifest(bundle)["artifacts"][target]
    assert art["verification"]["status"] == "verified", art["verification"]
    assert "qemu-system-arm" in art["verification"]["method"]
    assert art["host_check"]["max_abs_err"] <= 1e-5 and art["firmware_check"]["max_abs_err"] <= 1e-5
    assert art["host_check"]["n"] == art["firmware_check"]["n"] == 100
    # the wide layer's accumulator went through the arena, which the export sized large enough
    assert 0 < art["host_check"]["arena_peak_bytes"] <= art["memory"]["arena_bytes"]
    assert art["firmware_check"]["arena_peak_bytes"] == art["host_check"]["arena_peak_bytes"]
    assert 0 < art["firmware_check"]["stack_peak_bytes"] < STACK_BYTES


def test_memory_report_counts_weights_in_flash_and_buffers_in_ram(bundle, controller):
    art = manifest(bundle)["artifacts"]["cortex-m4"]
    mem = art["memory"]
    n_params = sum(p.numel() for p in controller.parameters())
    assert mem["weights_bytes"] >= 4 * n_params  # folded weights (plus folded output-bound constants)
    assert art["flash_bytes"] == mem["flash_bytes"] > mem["weights_bytes"]
    sec = mem["sections"]
    assert art["ram_bytes"] == sec[".stack"] + sec[".data"] + sec[".bss"]
    assert sec[".bss"] >= mem["arena_bytes"] + mem["tensor_bytes"]
    assert mem["flash_budget_bytes"] == 1024 * 1024 and mem["fits"]


def test_weights_live_in_flash_and_nothing_allocates(bundle):
    art = manifest(bundle)["artifacts"]["cortex-m4"]
    source = (bundle / art["sources"]["model_c"]["file"]).read_text()
    assert "static const float c" in source and "malloc" not in source
    nm = subprocess.run(
        ["arm-none-eabi-nm", "-S", str(bundle / art["file"])], capture_output=True, text=True, check=True
    ).stdout
    symbols = {
        parts[-1]: (int(parts[0], 16), int(parts[1], 16))
        for parts in map(str.split, nm.splitlines())
        if len(parts) == 4
    }
    weights = [name for name in symbols if re.fullmatch(r"c\d+", name)]
    assert weights and all(symbols[w][0] < 0x20000000 for w in weights)  # flash, not RAM
    assert symbols["arena"][0] >= 0x20000000 and symbols["arena"][1] == art["memory"]["arena_bytes"]
    assert not {"malloc", "_malloc_r", "free", "_sbrk"} & set(symbols)
    # kernel entries without TVM's argument asserts (the generated C passes the plan's own tensors): a few
    # dozen bytes each, not ~3 KB of checks run on every call
    entries = {name: size for name, (_, size) in symbols.items() if name.startswith("__tvm_ffi_")}
    assert len(entries) == 3 and max(entries.values()) < 256, entries


def test_scalar_schedule_takes_widths_no_group_divides(pendulum, make_mlp):
    spec = pendulum
    model, _ = export_onnx(make_mlp([7, 13], "elu", seed=0), spec, n_parity=10)  # primes: groups of one
    _, schedule = lower_for_mcu(model, spec, get_target("cortex-m7"), True)
    assert len(schedule.scheduled) == 3 and not schedule.default


def test_a_prime_width_runs_in_groups_of_eight_and_a_tail_not_one_output_at_a_time(pendulum, make_mlp, tmp_path):
    # 163 (what pruning left of 256 at 25%) has no divisor near 8: 20 groups of 8 accumulators and a tail
    # of 3, instead of 163 groups of one (3x the code, a quarter more instructions).
    spec = pendulum
    module = make_mlp([98, 163], "elu", seed=0)
    model, _ = export_onnx(module, spec, n_parity=10)
    mod, schedule = lower_for_mcu(model, spec, get_target("cortex-m4"), True)
    assert len(schedule.scheduled) == 3 and not schedule.default
    body = mod[next(n for n in schedule.scheduled if n.startswith("fused_matmul1_"))].script()
    assert "T.unroll(T.int64(8))" in body and "range(T.int64(20), T.int64(21))" in body, body
    m = export_bundle(module, spec, [get_target("cortex-m4")], tmp_path / "b", n_parity=20)
    v = m.artifacts["cortex-m4"]["verification"]
    assert v["status"] == "verified" and v["max_abs_err"] <= 1e-5, v


def test_kernel_chain_and_arena_are_planned_from_the_lowered_module(controller, pendulum):
    spec = pendulum
    model, _ = export_onnx(controller, spec, n_parity=10)
    mod, schedule = lower_for_mcu(model, spec, get_target("cortex-m4"), True)
    assert len(schedule.scheduled) == 3 and not schedule.default
    chain = kernel_chain(mod, "test")
    assert len(chain.calls) == 3
    assert chain.tensors[chain.input].shape == [1, 3] and chain.tensors[chain.output].shape == [1, 1]
    scratch = arena_bytes(mod)
    # a group of register accumulators per step of the 260-wide layer (not the whole row), one 64-byte block
    assert sorted(scratch.values()) == [64, 64, 64]


def test_each_group_streams_its_weights_packed_in_the_order_it_reads_them(pendulum, make_mlp):
    # 16 -> 24 outputs in groups of 8: the [24, 16] weight matrix (folded to [K, N]) is stored [N/8, K, 8], so a
    # group reads one contiguous run; the packed constant holds the same numbers and the kernel agrees (checked
    # on the host and under qemu by the export; here the layout itself).
    spec = pendulum
    module = make_mlp([16, 24], "elu", seed=1)
    model, _ = export_onnx(module, spec, n_parity=10)
    mod, _ = lower_for_mcu(model, spec, get_target("cortex-m4"), True)
    chain = kernel_chain(mod, "test")
    w = module[2].weight.detach().numpy().T  # [K=16, N=24]
    packed = [t for t in chain.tensors if t.kind == "constant" and t.shape == [3, 16, 8]]
    assert len(packed) == 1, [t.shape for t in chain.tensors]
    np.testing.assert_array_equal(packed[0].data.reshape(3, 16, 8), w.reshape(16, 3, 8).transpose(1, 0, 2))


def test_m4_kernels_multiply_add_with_vfma(bundle):
    # one vfma.f32 per multiply-add in the dense loops, not a vmul.f32 and a vadd.f32
    objdump = shutil.which("arm-none-eabi-objdump")
    text = subprocess.run(
        [objdump, "-d", str(bundle / "cortex-m4_kernels.o")], capture_output=True, text=True, check=True
    ).stdout
    fma, mul = len(re.findall(r"\bvfma\.f32", text)), len(re.findall(r"\bvmul\.f32", text))
    assert fma > 3 * mul, (fma, mul)


@pytest.fixture(scope="module")
def firmware(bundle):
    with FirmwareSession(bundle, "cortex-m4") as s:
        yield s


def test_firmware_answers_hello_and_actions_like_the_controller(firmware, controller):
    assert (firmware.obs_dim, firmware.act_dim) == (3, 1)
    reply = firmware.infer(OBS)
    assert reply.error == ""
    np.testing.assert_allclose(reply.action, torch_action(controller, OBS), atol=1e-5)
    # under qemu -icount shift=0 the device time is the instruction count (1 ns each): the same
    # observation costs the same, to the SysTick resolution of 40 instructions
    again = firmware.infer(OBS)
    assert reply.device_us > 0 and abs(again.device_us - reply.device_us) <= 0.08


def test_instruction_count_is_recorded_and_at_least_one_per_multiply_add(bundle):
    macs = 3 * HIDDEN[0] + HIDDEN[0] * HIDDEN[1] + HIDDEN[1]
    for target in ("cortex-m4", "cortex-m7"):
        art = manifest(bundle)["artifacts"][target]
        ipi = art["instructions_per_inference"]
        # a little data dependence (floorf in the fast exp, clamps), no more
        assert macs <= ipi["min"] <= ipi["mean"] <= ipi["max"] <= 1.1 * ipi["min"]
        assert art["cycles_per_inference"] is None  # qemu gives none; not invented


BAD_FRAMES = {
    "crc": (lambda q: frames.encode_raw(frames.OBS, q, np.array(OBS, "<f4").tobytes(), crc=1), frames.E_CRC),
    "short payload": (lambda q: frames.encode(frames.OBS, q, [0.1, 0.2]), frames.E_WRONG_SIZE),
    "nan": (lambda q: frames.encode(frames.OBS, q, [np.nan, 0.0, 0.0]), frames.E_NONFINITE),
    "wrong type": (lambda q: frames.encode(frames.ACTION, q, [1.0]), frames.E_BAD_TYPE),
}


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_firmware_answers_a_bad_frame_with_the_safe_action_and_goes_on(firmware, controller, case):
    make, code = BAD_FRAMES[case]
    seq = firmware.next_seq()
    firmware.send(make(seq))
    err = firmware.receive(10)
    assert isinstance(err, frames.Frame) and err.type == frames.ERROR and err.code == code and err.seq == seq
    np.testing.assert_array_equal(err.payload, [0.0])
    np.testing.assert_allclose(firmware.infer(OBS).action, torch_action(controller, OBS), atol=1e-5)


def test_firmware_refuses_replayed_seq_and_resyncs_after_garbage(firmware):
    good = firmware.infer(OBS)
    firmware.send(frames.encode(frames.OBS, good.seq, OBS))
    err = firmware.receive(10)
    assert err.type == frames.ERROR and err.code == frames.E_OUT_OF_ORDER
    before = firmware.stats_extended()
    garbage = bytes(np.random.default_rng(5).integers(0, 256, 300, dtype=np.uint8)).replace(b"\xa5", b"\x11")
    seq = firmware.next_seq()
    firmware.send(garbage + frames.encode(frames.OBS, seq, OBS))
    item = firmware.receive(10)
    assert item.type == frames.ACTION and item.seq == seq
    after = firmware.stats_extended()
    assert after["skipped_bytes"] - before["skipped_bytes"] == 300
    assert after["actions"] == before["actions"] + 1


def test_firmware_answers_a_stalled_frame_after_its_frame_timeout(firmware, controller):
    seq = firmware.next_seq()
    firmware.send(frames.encode(frames.OBS, seq, OBS)[:17])
    # 200 ms of the board's virtual time: instructions under -icount, about 6 s of wall time on an idle
    # 2-core machine and several times that when other work shares the CPU
    err = firmware.receive(120)
    assert err.type == frames.ERROR and err.code == frames.E_TRUNCATED and err.seq == seq
    np.testing.assert_allclose(firmware.infer(OBS).action, torch_action(controller, OBS), atol=1e-5)


def test_firmware_options_the_board_cannot_honour_are_refused(bundle):
    with pytest.raises(ExportError, match="takes no options"):
        with FirmwareSession(bundle, "cortex-m4", extra_args=("--deadline-us", "100")):
            pass


def test_a_changed_firmware_image_is_refused(bundle, tmp_path):
    copy = Path(shutil.copytree(bundle, tmp_path / "b"))
    elf = copy / "cortex-m4.elf"
    data = bytearray(elf.read_bytes())
    data[-1] ^= 0xFF
    elf.write_bytes(bytes(data))
    with pytest.raises(ExportError, match="refusing to run it"):
        with FirmwareSession(copy, "cortex-m4"):
            pass


def test_export_fails_naming_the_sizes_when_the_firmware_does_not_fit(controller, pendulum, tmp_path):
    tiny = make_target(
        name="tiny-m4",
        arch="cortex-m",
        kind="mcu",
        qemu_machine="mps2-an386",
        flash_kb=16,
        ram_kb=4,
        tvm={"kind": "llvm", "mtriple": "thumbv7em-none-eabihf", "mcpu": "cortex-m4", "mfloat-abi": "hard"},
    )
    out = tmp_path / "bundle"
    with pytest.raises(ExportError) as e:
        export_bundle(controller, pendulum, [tiny], out, n_parity=10)
    msg = str(e.value)
    assert "'tiny-m4'" in msg and "> 16 KB" in msg and "> 4 KB" in msg
    assert re.search(r"flash \d+ bytes", msg) and re.search(r"RAM \d+ bytes", msg)
    assert not out.exists() and not list(tmp_path.glob(".*"))  # nothing half-written


def test_the_small_part_target_has_the_256k_flash_64k_ram_budget():
    t = get_target("cortex-m4-256k")
    assert (t.kind, t.flash_kb, t.ram_kb, t.qemu_machine) == ("mcu", 256, 64, "mps2-an386")


def test_a_model_beyond_the_linker_flash_region_is_refused_saying_by_how_much(make_mlp, pendulum, tmp_path):
    big = make_mlp([1100, 1000])  # 1.1M parameters, 4.4 MB of float32 weights: more than the board's 4 MB region
    out = tmp_path / "bundle"
    with pytest.raises(ExportError) as e:
        export_bundle(big, pendulum, [get_target("cortex-m4")], out, n_parity=4)
    assert re.search(r"region `FLASH' overflowed by \d+ bytes", str(e.value)), str(e.value)  # ld's reason, not its exit
    assert not out.exists()

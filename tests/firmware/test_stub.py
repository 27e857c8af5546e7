"""The device stub on x86_64, native: actions, every bad-frame case, resync, safe action, deadline, hash check."""

import json
import os
import re
import socket
import subprocess
import time
import tty

import numpy as np
import pytest
import torch

from export import StubFailed, StubSession, frames, run_stub_batch, run_stub_bench
from export.stub import build_stub, uses_kernel_plan
from targets import get_target, host_cpu_flags

TARGET = "x86_64"
OBS = [0.6, 0.8, -1.5]


def host_action(controller, obs) -> np.ndarray:
    with torch.no_grad():
        return controller(torch.tensor(np.asarray(obs, dtype=np.float32)).reshape(1, -1)).numpy().reshape(-1)


def replies(s: StubSession, n: int, timeout: float = 5.0) -> list:
    out = []
    for _ in range(n):
        item = s.receive(timeout)
        assert item is not None, f"stub answered {len(out)} of {n} frames"
        out.append(item)
    return out


def test_batch_actions_match_the_torch_controller(small_bundle, small_controller, pendulum):
    obs = pendulum.sample_observations(300, seed=2)
    got = run_stub_batch(small_bundle, TARGET, obs)
    want = small_controller(torch.tensor(obs)).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_c_and_python_encoders_write_the_same_bytes(small_bundle):
    want = frames.encode(frames.HELLO, 77, [frames.PROTOCOL_VERSION, 3, 1])
    with StubSession(small_bundle, TARGET) as s:
        s.send(frames.encode(frames.HELLO, 77, []))
        raw = b""
        deadline = time.monotonic() + 5
        while len(raw) < len(want) and time.monotonic() < deadline:
            raw += os.read(s.proc.stdout.fileno(), len(want) - len(raw))
    assert raw == want


BAD_FRAMES = {  # case -> (frame for a given seq, error code the device must answer with)
    "crc": (lambda q: frames.encode_raw(frames.OBS, q, np.array(OBS, "<f4").tobytes(), crc=1), frames.E_CRC),
    "oversized": (lambda q: frames.encode_raw(frames.OBS, q, b"", length=400), frames.E_OVERSIZED),
    "bad_length": (lambda q: frames.encode_raw(frames.OBS, q, b"\0" * 10), frames.E_BAD_LENGTH),
    "short payload": (lambda q: frames.encode(frames.OBS, q, [0.1, 0.2]), frames.E_WRONG_SIZE),
    "long payload": (lambda q: frames.encode(frames.OBS, q, [0.1, 0.2, 0.3, 0.4]), frames.E_WRONG_SIZE),
    "nan": (lambda q: frames.encode(frames.OBS, q, [np.nan, 0.0, 0.0]), frames.E_NONFINITE),
    "inf": (lambda q: frames.encode(frames.OBS, q, [0.0, 0.0, -np.inf]), frames.E_NONFINITE),
    "wrong type": (lambda q: frames.encode(frames.ACTION, q, [1.0]), frames.E_BAD_TYPE),
}


@pytest.fixture(scope="module")
def session(small_bundle):
    with StubSession(small_bundle, TARGET, extra_args=("--frame-timeout-ms", "100")) as s:
        yield s


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_bad_frame_gets_an_error_frame_with_the_safe_action_then_service_goes_on(session, small_controller, case):
    make, code = BAD_FRAMES[case]
    seq = session.next_seq()
    session.send(make(seq))
    err = replies(session, 1)[0]
    assert isinstance(err, frames.Frame) and err.type == frames.ERROR, err
    assert err.code == code, err.error_name
    assert err.seq == seq  # echoed, so the host knows which request failed
    np.testing.assert_array_equal(err.payload, [0.0])  # zero torque by default
    reply = session.infer(OBS)
    assert reply.error == ""
    np.testing.assert_allclose(reply.action, host_action(small_controller, OBS), atol=1e-5)


def test_out_of_order_and_repeated_seq_are_refused(session):
    good = session.infer(OBS)
    session.send(frames.encode(frames.OBS, good.seq, OBS))  # replay of the same seq
    session.send(frames.encode(frames.OBS, good.seq - 5, OBS))  # older
    errs = replies(session, 2)
    assert [e.code for e in errs] == [frames.E_OUT_OF_ORDER] * 2
    assert [e.seq for e in errs] == [good.seq, good.seq - 5]
    assert session.infer(OBS).error == ""


def test_a_stalled_frame_is_answered_after_the_frame_timeout(session):
    seq = session.next_seq()
    session.send(frames.encode(frames.OBS, seq, OBS)[:17])
    t0 = time.monotonic()
    err = replies(session, 1, timeout=3)[0]
    assert err.type == frames.ERROR and err.code == frames.E_TRUNCATED and err.seq == seq
    assert time.monotonic() - t0 >= 0.05  # not before the 100 ms timeout
    assert session.infer(OBS).error == ""


def test_resync_after_seeded_garbage_finds_the_next_frame(session):
    before = session.stats()
    rng = np.random.default_rng(5)
    garbage = bytes(rng.integers(0, 256, 2000, dtype=np.uint8)).replace(b"\xa5", b"\x11")
    seq = session.next_seq()
    session.send(garbage + frames.encode(frames.OBS, seq, OBS))
    item = replies(session, 1)[0]
    assert item.type == frames.ACTION and item.seq == seq
    after = session.stats()
    assert after["skipped_bytes"] - before["skipped_bytes"] == 2000


def test_frame_hidden_behind_a_cut_frame_is_still_served(session):
    a, b = session.next_seq(), session.next_seq()
    session.send(frames.encode(frames.OBS, a, OBS)[:-3] + frames.encode(frames.OBS, b, OBS))
    got = replies(session, 2)
    assert got[0].type == frames.ERROR and got[0].code == frames.E_CRC
    assert got[1].type == frames.ACTION and got[1].seq == b


def test_random_bytes_never_crash_the_stub(session):
    rng = np.random.default_rng(11)
    blobs = [frames.encode(frames.OBS, int(rng.integers(0, 2**32)), rng.normal(size=3)) for _ in range(200)]
    data = bytearray(b"".join(blobs))
    flips = rng.integers(0, len(data), 300)
    for i in flips:
        data[i] ^= int(rng.integers(1, 256))
    session.send(bytes(data))
    session.send(frames.encode(frames.HELLO, 1, []))  # resets the seq order, then a clean request
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        item = session.receive(2)
        assert item is not None, "stub stopped answering"
        if isinstance(item, frames.Frame) and item.type == frames.HELLO:
            break
    session.seq = 1
    assert session.proc.poll() is None
    assert session.infer(OBS).error == ""


def test_safe_action_is_configurable(small_bundle):
    with StubSession(small_bundle, TARGET, extra_args=("--safe-action", "0.75")) as s:
        r = s.infer([np.nan, 0, 0])
    assert r.error == "nonfinite"
    np.testing.assert_array_equal(r.action, [0.75])


def test_inference_over_the_deadline_gets_the_safe_action(small_bundle):
    with StubSession(small_bundle, TARGET, extra_args=("--deadline-us", "2000", "--stall-us", "5000")) as s:
        r = s.infer(OBS)
        stats = s.stats()
    assert r.error == "deadline"
    np.testing.assert_array_equal(r.action, [0.0])
    assert r.device_us >= 5000
    assert stats["deadline_misses"] == 1


def test_tampered_library_is_refused_by_hash(bundle_copy):
    bundle = bundle_copy
    lib = bundle / f"{TARGET}.so"
    data = bytearray(lib.read_bytes())
    data[len(data) // 2] ^= 0x01
    lib.write_bytes(bytes(data))
    with pytest.raises(
        StubFailed, match=r"exit 3 .*sha256 [0-9a-f]{64} does not match the manifest's .*refusing to load"
    ):
        with StubSession(bundle, TARGET):
            pass


def test_manifest_without_the_target_is_refused(bundle_copy):
    bundle = bundle_copy
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["artifacts"]["x86_64"]["sha256"] = "0" * 64
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StubFailed, match="refusing to load"):
        run_stub_batch(bundle, TARGET, np.zeros((1, 3), np.float32))


def test_the_manifest_records_the_cpu_the_library_was_built_for(small_bundle):
    flags = json.loads((small_bundle / "manifest.json").read_text())["artifacts"][TARGET]["compile_flags"]
    cpu_flags = set(flags["cpu_flags"].split())
    assert flags["cpu"] == get_target(TARGET).tvm["mcpu"] and cpu_flags == set(get_target(TARGET).host_flags)
    assert cpu_flags <= host_cpu_flags() and {"avx2", "fma"} & host_cpu_flags() <= cpu_flags


def test_a_library_built_for_flags_this_cpu_lacks_is_refused_before_loading(bundle_copy):
    bundle = bundle_copy
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["artifacts"][TARGET]["compile_flags"]["cpu_flags"] += " avx2 pae_no_such_flag"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StubFailed, match=r"exit 4 .*built for CPU \S+; this CPU lacks its flags: pae_no_such_flag \("):
        run_stub_batch(bundle, TARGET, np.zeros((1, 3), np.float32))


def test_end_of_input_inside_a_frame_is_reported_and_the_stub_exits_cleanly(small_bundle):
    with StubSession(small_bundle, TARGET) as s:
        s.send(frames.encode(frames.OBS, 5, OBS)[:12])
        s.proc.stdin.close()
        err = replies(s, 1)[0]
        assert err.type == frames.ERROR and err.code == frames.E_TRUNCATED
        assert s.proc.wait(timeout=10) == 0


def test_bench_with_the_tvm_runtime_on_request_loads_it(small_bundle, monkeypatch):
    monkeypatch.setenv("PAE_STUB_MODEL", "tvm")
    r = run_stub_bench(small_bundle, TARGET, n=300, warmup=10)
    assert r["runtime"] == "tvm-relax-vm" and r["library_bytes"] > 1_000_000


def _serve(bundle, *args):
    exe = build_stub(TARGET)
    plan = ["--plan", str(bundle / f"{TARGET}.plan")] if uses_kernel_plan(TARGET) else []  # written by the export
    cmd = [str(exe), "serve", "--bundle", str(bundle), "--target", TARGET, *plan, *args]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _exchange(write, read, payload):
    write(frames.encode(frames.OBS, 1, payload))
    parser, got, deadline = frames.FrameParser(), [], time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        got = parser.feed(read())
    return got[0]


def test_serve_over_tcp(small_bundle, small_controller):
    proc = _serve(small_bundle, "--listen", "127.0.0.1:0")
    try:
        line = proc.stderr.readline().decode()
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", line).group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            f = _exchange(sock.sendall, lambda: sock.recv(4096), OBS)
        assert f.type == frames.ACTION
        np.testing.assert_allclose(f.payload, host_action(small_controller, OBS), atol=1e-5)
        assert proc.wait(timeout=10) == 0  # the connection closed: the stub is done
    finally:
        proc.kill()


def test_serve_over_a_serial_pty(small_bundle, small_controller):
    master, slave = os.openpty()
    tty.setraw(slave)  # a serial line carries bytes: no echo, no line editing (the stub sets this too)
    proc = _serve(small_bundle, "--serial", os.ttyname(slave))
    try:
        f = _exchange(lambda b: os.write(master, b), lambda: os.read(master, 4096), OBS)
        assert f.type == frames.ACTION and f.seq == 1
        np.testing.assert_allclose(f.payload, host_action(small_controller, OBS), atol=1e-5)
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
        os.close(slave)


def test_bench_reports_latency_memory_and_sizes(small_bundle):
    r = run_stub_bench(small_bundle, TARGET, n=300, warmup=10)
    lat = r["latency_us"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"]
    assert r["peak_rss_kb"] > 0
    assert r["runtime"] == "tvm-kernels (no runtime)" and r["library_bytes"] == 0  # the default: no runtime loaded
    assert r["model_bytes"] == (small_bundle / f"{TARGET}.so").stat().st_size

"""The device stub cross-built for aarch64 and run under qemu-user: same actions, same protocol, same hash check."""

import numpy as np
import pytest
import torch

from export import StubFailed, StubSession, frames, run_stub_batch

TARGET = "cortex-a72"


def test_aarch64_actions_under_qemu_match_the_torch_controller(small_bundle, small_controller, pendulum):
    obs = pendulum.sample_observations(200, seed=4)
    got = run_stub_batch(small_bundle, TARGET, obs)
    want = small_controller(torch.tensor(obs)).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_aarch64_stub_answers_nan_and_bad_crc_with_the_safe_action(small_bundle):
    with StubSession(small_bundle, TARGET, extra_args=("--safe-action", "-0.5")) as s:
        r = s.infer([0.0, np.inf, 0.0])
        seq = s.next_seq()
        s.send(frames.encode_raw(frames.OBS, seq, b"\0" * 12, crc=7))
        err = s.receive(10)
        ok = s.infer([1.0, 0.0, 0.0])
    assert r.error == "nonfinite" and r.action.tolist() == [-0.5]
    assert err.type == frames.ERROR and err.code == frames.E_CRC and err.payload.tolist() == [-0.5]
    assert ok.error == ""


def test_tampered_aarch64_library_is_refused_under_qemu(bundle_copy):
    bundle = bundle_copy
    lib = bundle / f"{TARGET}.so"
    data = bytearray(lib.read_bytes())
    data[-1] ^= 0xFF
    lib.write_bytes(bytes(data))
    with pytest.raises(StubFailed, match="refusing to load"):
        run_stub_batch(bundle, TARGET, np.zeros((1, 3), np.float32))

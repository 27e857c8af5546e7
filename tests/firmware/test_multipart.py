"""Multi-part requests (protocol version 2): an observation wider than one frame, in the codec and in the stub."""

import numpy as np
import pytest
import torch

from export import ControllerSpec, StubSession, export_bundle, frames, run_stub_batch
from targets import parse_target_list
from tools.controllers.native import build_mlp

TARGET = "x86_64"
WIDE = 150  # three parts: 64 + 64 + 22 floats


def wide_spec() -> ControllerSpec:
    return ControllerSpec(WIDE, 2, (-1.0,) * WIDE, (1.0,) * WIDE, (-2.0, -2.0), (2.0, 2.0), env_id="wide-test")


@pytest.fixture(scope="module")
def wide_controller() -> torch.nn.Module:
    torch.manual_seed(1)
    return build_mlp(wide_spec(), [16], "elu").eval()


@pytest.fixture(scope="module")
def wide_bundle(wide_controller, tmp_path_factory):
    out = tmp_path_factory.mktemp("wide") / "bundle"
    export_bundle(wide_controller, wide_spec(), parse_target_list("x86_64,cortex-a72"), out, n_parity=50)
    return out


def obs_rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, WIDE)).astype(np.float32)


def parts(seq: int, obs) -> list[bytes]:
    """The PART frames of one request, each on its own."""
    data, out = frames.encode_request(seq, obs), []
    while data:
        n = frames.HEADER_BYTES + int.from_bytes(data[12:14], "little") + frames.CRC_BYTES
        out.append(data[:n])
        data = data[n:]
    return out


def test_encode_request_splits_into_parts_that_reassemble():
    obs = obs_rows(1, 0)[0]
    got = frames.FrameParser().feed(frames.encode_request(7, obs))
    assert [f.type for f in got] == [frames.PART] * 3
    assert [f.seq for f in got] == [7, 7, 7]
    assert [f.aux for f in got] == [frames.part_aux(i, 3) for i in range(3)] == [3 << 16, (3 << 16) | 1, (3 << 16) | 2]
    assert [len(f.payload) for f in got] == [64, 64, 22]
    np.testing.assert_array_equal(np.concatenate([f.payload for f in got]), obs)
    small = obs[: frames.MAX_FLOATS]  # fits one frame: the version 1 OBS frame, byte for byte
    assert frames.encode_request(7, small) == frames.encode(frames.OBS, 7, small)


@pytest.mark.parametrize("target", ["x86_64", "cortex-a72"])
def test_wide_observations_get_the_torch_actions(wide_bundle, wide_controller, target):
    obs = obs_rows(120, 2)
    got = run_stub_batch(wide_bundle, target, obs)
    with torch.no_grad():
        want = wide_controller(torch.from_numpy(obs)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.fixture(scope="module")
def session(wide_bundle):
    with StubSession(wide_bundle, TARGET) as s:
        yield s


def one_reply(s: StubSession) -> frames.Frame:
    item = s.receive(5)
    assert isinstance(item, frames.Frame), item
    return item


def assert_served(s: StubSession, controller) -> None:
    """The next whole request is answered with the controller's action, and nothing else is waiting."""
    obs = obs_rows(1, 9)[0]
    reply = s.infer(obs)
    assert reply.error == ""
    with torch.no_grad():
        np.testing.assert_allclose(reply.action, controller(torch.from_numpy(obs[None]))[0].numpy(), atol=1e-5)
    assert s.receive(0.2) is None


def test_hello_says_version_2(session):
    hello = session.request(frames.HELLO, [])
    assert list(hello.payload) == [2, WIDE, 2] and session.version == 2
    session.seq = 100


def test_a_missing_part_is_one_bad_part_reply(session, wide_controller):
    seq = session.next_seq()
    p = parts(seq, obs_rows(1, 3)[0])
    session.send(p[0] + p[2])  # part 1 lost
    err = one_reply(session)
    assert (err.type, err.code, err.seq) == (frames.ERROR, frames.E_BAD_PART, seq)
    np.testing.assert_array_equal(err.payload, [0.0, 0.0])  # the safe action
    assert_served(session, wide_controller)  # the stray last part got no second reply


def test_a_repeated_part_of_a_served_request_gets_no_second_reply(session, wide_controller):
    seq = session.next_seq()
    p = parts(seq, obs_rows(1, 10)[0])
    session.send(b"".join(p) + p[2])
    assert (one_reply(session).type, session.receive(0.2)) == (frames.ACTION, None)
    assert_served(session, wide_controller)


def test_parts_out_of_order_and_repeated_are_refused(session, wide_controller):
    # (part order sent, replies): each bad input is answered, late parts of the refused request are not
    cases = {
        (1, 0, 2): [frames.E_BAD_PART, frames.E_BAD_PART],  # part 1 is stray; part 0 restarts, part 2 skips 1
        (0, 2, 1): [frames.E_BAD_PART],  # part 2 skips part 1; part 1 is a late part of the refused request
        (0, 0, 1, 2): [frames.E_BAD_PART, 0],  # a repeated part 0 restarts the request, which is then served
    }
    for order, codes in cases.items():
        seq = session.next_seq()
        p = parts(seq, obs_rows(1, 4)[0])
        session.send(b"".join(p[i] for i in order))
        got = [one_reply(session) for _ in codes]
        assert [(r.code, r.seq) for r in got] == [(c, seq) for c in codes], order
        assert_served(session, wide_controller)


def test_a_request_cut_short_by_another_is_answered_then_the_other_served(session, wide_controller):
    a, b = session.next_seq(), session.next_seq()
    obs = obs_rows(1, 5)[0]
    session.send(parts(a, obs)[0] + frames.encode_request(b, obs))
    err, ok = one_reply(session), one_reply(session)
    assert (err.code, err.seq) == (frames.E_BAD_PART, a)
    assert (ok.type, ok.seq) == (frames.ACTION, b)
    assert_served(session, wide_controller)


def test_wrong_sizes_and_a_corrupt_part(session, wide_controller):
    seq = session.next_seq()  # too many floats: 4 parts of 64 for a 150-float observation
    session.send(b"".join(frames.encode(frames.PART, seq, np.zeros(64), aux=frames.part_aux(i, 4)) for i in range(4)))
    err = one_reply(session)
    assert (err.code, err.seq) == (frames.E_WRONG_SIZE, seq)
    seq = session.next_seq()  # a single OBS frame cannot hold it
    session.send(frames.encode(frames.OBS, seq, np.zeros(64)))
    assert one_reply(session).code == frames.E_WRONG_SIZE
    seq = session.next_seq()  # a part with a bad CRC: the reader's error, then the request's bad_part
    p = parts(seq, obs_rows(1, 6)[0])
    session.send(p[0] + p[1][:-1] + bytes([p[1][-1] ^ 0xFF]) + p[2])
    got = [one_reply(session), one_reply(session)]
    assert [(e.code, e.seq) for e in got] == [(frames.E_CRC, seq), (frames.E_BAD_PART, seq)]
    assert_served(session, wide_controller)


def test_replayed_request_is_out_of_order(session):
    reply = session.infer(obs_rows(1, 7)[0])
    session.send(frames.encode_request(reply.seq, obs_rows(1, 7)[0]))
    err = one_reply(session)
    assert (err.code, err.seq) == (frames.E_OUT_OF_ORDER, reply.seq)


def test_cortex_m4_firmware_reassembles_wide_observations(wide_controller, tmp_path):
    from export import read_manifest
    from export.mcu.session import FirmwareSession

    out = tmp_path / "bundle"
    export_bundle(wide_controller, wide_spec(), parse_target_list("cortex-m4"), out, n_parity=30)
    art = read_manifest(out).to_dict()["artifacts"]["cortex-m4"]
    assert art["verification"]["status"] == "verified", art["verification"]  # the firmware answered 30 wide requests
    obs = obs_rows(4, 8)
    with FirmwareSession(out, "cortex-m4") as s:
        assert (s.version, s.obs_dim) == (2, WIDE)
        got, _ = s.infer_batch(obs)
        p = parts(s.next_seq(), obs[0])
        s.send(p[0] + p[2])
        err = s.receive(10)
    with torch.no_grad():
        np.testing.assert_allclose(got, wide_controller(torch.from_numpy(obs)).numpy(), atol=1e-5)
    assert isinstance(err, frames.Frame) and err.code == frames.E_BAD_PART

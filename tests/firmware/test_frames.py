"""The Python frame codec: byte layout, round trips, and every rejection with resynchronisation."""

import struct
import zlib

import numpy as np
import pytest

from export import frames


def test_encode_layout_matches_the_protocol_table():
    b = frames.encode(frames.OBS, 0x01020304, [1.0, -2.0, 0.5], code=7, aux=0xA0B0C0D0)
    assert b[:2] == b"\xa5\x5a"
    assert b[2] == frames.OBS and b[3] == 7
    assert struct.unpack_from("<IIH", b, 4) == (0x01020304, 0xA0B0C0D0, 12)
    assert np.frombuffer(b[14:26], "<f4").tolist() == [1.0, -2.0, 0.5]
    assert struct.unpack_from("<I", b, 26)[0] == zlib.crc32(b[2:26])
    assert len(b) == 30


def test_round_trip_of_random_frames_fed_byte_by_byte():
    rng = np.random.default_rng(0)
    sent = [
        (
            int(rng.integers(1, 6)),
            int(rng.integers(0, 2**32)),
            rng.normal(size=int(rng.integers(0, 65))).astype(np.float32),
        )
        for _ in range(50)
    ]
    stream = b"".join(frames.encode(t, s, p) for t, s, p in sent)
    parser = frames.FrameParser()
    got = [item for byte in stream for item in parser.feed(bytes([byte]))]
    assert len(got) == len(sent)
    for (t, s, p), f in zip(sent, got):
        assert isinstance(f, frames.Frame)
        assert (f.type, f.seq) == (t, s)
        np.testing.assert_array_equal(f.payload, p)
    assert parser.frames_ok == 50 and parser.skipped_bytes == 0 and not parser.pending


def test_payload_over_the_limit_is_refused_by_the_encoder():
    with pytest.raises(ValueError, match="64"):
        frames.encode(frames.OBS, 1, np.zeros(65))


def test_garbage_before_a_frame_is_skipped_and_counted():
    rng = np.random.default_rng(1)
    garbage = bytes(rng.integers(0, 256, 500, dtype=np.uint8)).replace(b"\xa5", b"\x00")
    parser = frames.FrameParser()
    got = parser.feed(garbage + frames.encode(frames.OBS, 9, [1, 2, 3]))
    assert [type(x) for x in got] == [frames.Frame] and got[0].seq == 9
    assert parser.skipped_bytes == 500


@pytest.mark.parametrize(
    "bad, code",
    [
        (frames.encode_raw(frames.OBS, 5, b"\0" * 12, crc=0xDEADBEEF), frames.E_CRC),
        (frames.encode_raw(frames.OBS, 5, b"", length=300), frames.E_OVERSIZED),
        (frames.encode_raw(frames.OBS, 5, b"\0" * 6), frames.E_BAD_LENGTH),
    ],
)
def test_each_bad_frame_is_rejected_and_the_next_good_frame_still_arrives(bad, code):
    parser = frames.FrameParser()
    got = parser.feed(bad + frames.encode(frames.OBS, 6, [4, 5, 6]))
    errors = [x for x in got if isinstance(x, frames.FrameError)]
    good = [x for x in got if isinstance(x, frames.Frame)]
    assert errors[0].code == code and errors[0].seq == 5
    assert [f.seq for f in good] == [6]
    assert parser.resyncs >= 1


def test_a_short_frame_glued_to_the_next_one_costs_only_itself():
    first = frames.encode(frames.OBS, 1, [1, 2, 3])
    second = frames.encode(frames.OBS, 2, [4, 5, 6])
    parser = frames.FrameParser()
    got = parser.feed(first[:-5] + second)  # the first frame lost its last 5 bytes
    assert isinstance(got[0], frames.FrameError) and got[0].code == frames.E_CRC
    good = [x for x in got if isinstance(x, frames.Frame)]
    assert [f.seq for f in good] == [2]
    np.testing.assert_array_equal(good[0].payload, [4, 5, 6])


def test_a_stalled_frame_is_truncated_and_the_reader_starts_over():
    parser = frames.FrameParser()
    assert parser.feed(frames.encode(frames.OBS, 3, [1, 2, 3])[:20]) == []
    assert parser.pending
    err = parser.truncate()
    assert err.code == frames.E_TRUNCATED and err.seq == 3
    while parser.truncate():  # what the stub does until nothing is pending
        pass
    assert [f.seq for f in parser.feed(frames.encode(frames.OBS, 4, [1, 2, 3]))] == [4]


def test_error_frame_names_its_code():
    f = frames.FrameParser().feed(frames.encode(frames.ERROR, 1, [0.0], code=frames.E_NONFINITE))[0]
    assert f.error_name == "nonfinite"

"""Videos whose container claims more than it holds, and variable frame rates with gaps: every sample must be a
different picture, in order, inside the real content, with honest counts, and the claim must be reported.

The lying files are made here from tiny synthetic clips: an MP4 whose duration fields (mvhd, tkhd, mdhd, the edit
list and the last sample's duration) are patched to claim 2 h 50 min, and a WebM whose Segment Info Duration says
the same. Each test first checks that FFmpeg really believes the claim, so the test cannot pass on a file that
does not lie.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import frame_code_picture, read_frame_number, write_video

from models.online.frames import StreamReader
from models.units import format_duration, format_fps, plural
from models.video import VideoLimits, claim_note, probe_video, sample_frames

CLAIMED_S = 10200.0  # 2 h 50 min
REAL_S, REAL_FPS, REAL_FRAMES = 4.0, 10.0, 40
BACKENDS = ["pyav", "decord"]


# ----------------------------------------------------------------------------------------------------------------
# Making files that lie


def _boxes(data: bytes):
    """(type, header size, whole box) for each MP4 box in `data`."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[pos + 8 : pos + 16])[0], 16
        elif size == 0:
            size = len(data) - pos
        yield kind, header, data[pos : pos + size]
        pos += size


def _rewrite(data: bytes, path: list[bytes], change) -> bytes:
    """`data` with the payload of every box at `path` replaced by change(payload); parents' sizes follow (moov is
    written after mdat by the test clips, so no chunk offset moves)."""
    out = bytearray()
    for kind, header, box in _boxes(data):
        if kind == path[0]:
            payload = box[header:]
            payload = change(payload) if len(path) == 1 else _rewrite(payload, path[1:], change)
            box = struct.pack(">I4s", len(payload) + 8, kind) + payload
        out += box
    return bytes(out)


def _scaled_field(offset_v0: int, offset_v1: int, factor: float):
    def change(payload: bytes) -> bytes:
        payload = bytearray(payload)
        if payload[0] == 0:
            (value,) = struct.unpack(">I", payload[offset_v0 : offset_v0 + 4])
            payload[offset_v0 : offset_v0 + 4] = struct.pack(">I", min(2**32 - 1, round(value * factor)))
        else:
            (value,) = struct.unpack(">Q", payload[offset_v1 : offset_v1 + 8])
            payload[offset_v1 : offset_v1 + 8] = struct.pack(">Q", round(value * factor))
        return bytes(payload)

    return change


def _long_last_sample(factor: float):
    """stts: the last sample lasts long enough to stretch the track by `factor` (a cut that kept its duration)."""

    def change(payload: bytes) -> bytes:
        (count,) = struct.unpack(">I", payload[4:8])
        entries = [struct.unpack(">II", payload[8 + 8 * i : 16 + 8 * i]) for i in range(count)]
        total = sum(n * delta for n, delta in entries)
        samples, delta = entries[-1]
        entries[-1:] = [(samples - 1, delta), (1, round(total * factor) - (total - delta))]
        return payload[:4] + struct.pack(">I", len(entries)) + b"".join(struct.pack(">II", *e) for e in entries)

    return change


def mp4_claiming(path: Path, claimed_s: float) -> Path:
    """A 4 s, 10 fps numbered MP4 whose every duration field claims `claimed_s`."""
    write_video(path, duration_s=REAL_S, fps=REAL_FPS)
    factor = claimed_s / REAL_S
    data = path.read_bytes()
    data = _rewrite(data, [b"moov", b"mvhd"], _scaled_field(16, 24, factor))
    data = _rewrite(data, [b"moov", b"trak", b"tkhd"], _scaled_field(20, 28, factor))
    data = _rewrite(data, [b"moov", b"trak", b"mdia", b"mdhd"], _scaled_field(16, 24, factor))
    data = _rewrite(data, [b"moov", b"trak", b"edts", b"elst"], _scaled_field(8, 8, factor))
    data = _rewrite(data, [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stts"], _long_last_sample(factor))
    path.write_bytes(data)
    return path


def _ebml_elements(data: bytes, start: int, end: int):
    """(id, payload start, payload end) of the EBML elements in data[start:end]."""
    pos = start
    while pos < end:
        first = data[pos]
        id_length = 1 + (8 - first.bit_length())
        element_id = int.from_bytes(data[pos : pos + id_length], "big")
        pos += id_length
        first = data[pos]
        size_length = 1 + (8 - first.bit_length())
        size = int.from_bytes(data[pos : pos + size_length], "big") & ((1 << (7 * size_length)) - 1)
        pos += size_length
        if size == (1 << (7 * size_length)) - 1:  # unknown size (live streams): runs to the end
            size = end - pos
        yield element_id, pos, pos + size
        pos += size


def webm_claiming(path: Path, claimed_s: float) -> Path:
    """A 4 s, 10 fps numbered VP8 WebM whose Segment Info Duration claims `claimed_s`."""
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=Fraction(int(REAL_FPS)))
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.options = {"g": "10", "deadline": "realtime", "cpu-used": "8"}
        for number in range(REAL_FRAMES):
            frame = av.VideoFrame.from_ndarray(frame_code_picture(number, 96, 64), format="rgb24")
            frame.pts = number
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    data = bytearray(path.read_bytes())
    segment = next(e for e in _ebml_elements(data, 0, len(data)) if e[0] == 0x18538067)
    info = next(e for e in _ebml_elements(data, segment[1], segment[2]) if e[0] == 0x1549A966)
    duration = next(e for e in _ebml_elements(data, info[1], info[2]) if e[0] == 0x4489)
    scale_ns = 1_000_000  # TimecodeScale default, which FFmpeg writes
    packed = struct.pack(">d" if duration[2] - duration[1] == 8 else ">f", claimed_s * 1e9 / scale_ns)
    data[duration[1] : duration[2]] = packed
    path.write_bytes(bytes(data))
    return path


LIARS = {"mp4": mp4_claiming, "webm": webm_claiming}


@pytest.fixture(scope="module", params=sorted(LIARS))
def lying_video(request, tmp_path_factory) -> Path:
    kind = request.param
    path = LIARS[kind](tmp_path_factory.mktemp("lying") / f"cut.{kind}", CLAIMED_S)
    with av.open(str(path)) as container:  # the claim must reach FFmpeg, or the tests below prove nothing
        assert container.duration / av.time_base == pytest.approx(CLAIMED_S, rel=0.01)
    return path


def assert_honest_sample(frames, requested: int) -> None:
    numbers = [read_frame_number(picture) for picture in frames.pixels]
    assert len(frames) == min(requested, REAL_FRAMES)
    assert numbers == frames.indices.tolist()  # the frame numbers are the pictures' own
    assert len(set(numbers)) == len(numbers)  # no picture twice
    assert np.all(np.diff(frames.timestamps_s) > 0)
    assert frames.timestamps_s[0] >= 0 and frames.timestamps_s[-1] < REAL_S
    # spread over the real content, not bunched at its start
    assert frames.timestamps_s[-1] >= REAL_S * (1 - 1.5 / min(requested, REAL_FRAMES)) - 0.1


# ----------------------------------------------------------------------------------------------------------------
# Lying containers


def test_probe_reports_what_the_file_holds_and_what_it_claims(lying_video):
    info = probe_video(lying_video)
    assert info.duration_s == pytest.approx(REAL_S, abs=0.11)
    assert info.fps == pytest.approx(REAL_FPS, rel=0.05)
    assert info.num_frames == REAL_FRAMES
    assert info.claimed_duration_s == pytest.approx(CLAIMED_S, rel=0.01)
    note = claim_note(info)
    assert "2 h 50 min" in note and "4.0 s" in note and "40 frames" in note and "10 fps" in note


def test_an_honest_file_reports_no_claim(make_video):
    info = probe_video(make_video(duration_s=REAL_S, fps=REAL_FPS))
    assert info.claimed_duration_s is None and claim_note(info) is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("request_", [{"num_frames": 8}, {"num_frames": 8, "exact": True}, {"fps": 2.0}])
def test_samples_of_a_lying_file_are_distinct_frames_of_its_real_content(lying_video, backend, request_):
    frames = sample_frames(lying_video, backend=backend, **request_)
    assert_honest_sample(frames, 8)
    assert frames.info.duration_s == pytest.approx(REAL_S, abs=0.11)
    assert frames.info.claimed_duration_s == pytest.approx(CLAIMED_S, rel=0.01)


def test_asking_a_lying_file_for_more_frames_than_it_holds_gives_each_once(lying_video):
    frames = sample_frames(lying_video, num_frames=64)
    assert sorted(read_frame_number(picture) for picture in frames.pixels) == list(range(REAL_FRAMES))


def test_the_duration_limit_judges_the_content_not_the_claim(lying_video):
    info = probe_video(lying_video, VideoLimits(max_duration_s=60.0))
    assert info.duration_s < 60.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stream_that_stops_early_while_sampling_is_sampled_again_over_its_real_end(
    lying_video, backend, monkeypatch
):
    # A lie probing cannot see (say, a demuxer that hides the last packets' times): decoding runs out early.
    import models.video as video

    monkeypatch.setattr(
        video, "_content_extent", lambda c, s, start, index, header_s, fps, n: (header_s, fps, n, None)
    )
    frames = sample_frames(lying_video, num_frames=8, backend=backend)
    assert_honest_sample(frames, 8)
    assert frames.info.duration_s == pytest.approx(REAL_S, abs=0.11)
    assert frames.info.claimed_duration_s is not None and frames.info.claimed_duration_s > 1000
    assert 5.0 <= frames.info.fps <= 20.0  # not "0 fps"
    assert frames.info.num_frames == pytest.approx(REAL_FRAMES, abs=1)


def test_the_live_reader_stops_at_the_real_end(lying_video):
    with StreamReader(lying_video, fps=2.0, max_side=None) as reader:
        assert len(reader.grid_s) == 8 and reader.grid_s[-1] < REAL_S
        pictures, times = zip(*reader.batches(batch_size=3), strict=True)
    pixels, times = np.concatenate(pictures), np.concatenate(times)
    numbers = [read_frame_number(picture) for picture in pixels]
    assert len(set(numbers)) == 8 and numbers == sorted(numbers)
    assert np.all(np.diff(times) > 0) and times[-1] < REAL_S


# ----------------------------------------------------------------------------------------------------------------
# Variable frame rate with a gap

GAP_TIMES = [i / 10 for i in range(10)] + [5 + i / 10 for i in range(10)]  # 1 s of frames, 4 s of nothing, 1 s


@pytest.fixture(scope="module")
def gap_video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("vfr") / "gap.mp4", frame_times_s=GAP_TIMES)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("count", [4, 8, 16])
def test_a_gap_in_a_variable_rate_video_never_gives_one_frame_twice(gap_video, backend, exact, count):
    frames = sample_frames(gap_video, num_frames=count, backend=backend, exact=exact)
    numbers = [read_frame_number(picture) for picture in frames.pixels]
    assert numbers == frames.indices.tolist()
    assert len(set(numbers)) == len(numbers)
    assert len({picture.tobytes() for picture in frames.pixels}) == len(frames)  # distinct pictures too
    assert np.all(np.diff(frames.timestamps_s) > 0)
    assert frames.timestamps_s.tolist() == pytest.approx([GAP_TIMES[n] for n in numbers])
    if count <= 8:  # the video has 20 frames: every sample asked for is there
        assert len(frames) == count
    assert any(t < 1 for t in frames.timestamps_s) and any(t >= 5 for t in frames.timestamps_s)


# ----------------------------------------------------------------------------------------------------------------
# Words and numbers shown to people


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (6.4, "6.4 s"),
        (0.25, "0.2 s"),
        (59.97, "1 min 00 s"),
        (185.0, "3 min 05 s"),
        (3599.6, "1 h 00 min"),
        (CLAIMED_S, "2 h 50 min"),
        (0.0, "0 s"),
    ],
)
def test_durations_read_the_same_everywhere(seconds, text):
    assert format_duration(seconds) == text


def test_rates_and_counts_read_like_english():
    assert format_fps(10.0) == "10 fps" and format_fps(29.97) == "29.97 fps"
    assert format_fps(400 / 25539) == "0.0157 fps"  # a slow rate is never "0 fps"
    assert plural(1, "frame") == "1 frame" and plural(2, "frame") == "2 frames" and plural(0, "clip") == "0 clips"
    assert plural(1, "clip") == "1 clip" and plural(3, "match", "matches") == "3 matches"


def test_the_duration_limit_message_uses_the_shared_format(make_video):
    path = make_video(duration_s=3.0)
    with pytest.raises(Exception, match=r"is 3\.0 s long; the longest accepted video is 1\.0 s"):
        probe_video(path, VideoLimits(max_duration_s=1.0))

"""Probe a video file and sample frames from it, without ever decoding the whole video.

`probe_video` reads a file's container metadata (and decodes its first frame, to be sure it is a video we can
read) and returns a `VideoInfo`; anything unusable raises a `VideoError` whose message is written for the person
who supplied the file. `sample_frames` picks target times (N frames centred in N equal segments, or every 1/fps
seconds capped at a maximum count) and fetches one frame per target by seeking. When a keyframe lies within half
the sampling interval of a target we take that keyframe: it decodes on its own, so a 64-frame sample of a long
clip costs about 64 single-frame decodes instead of decoding from each keyframe forward to the exact frame.
Otherwise (short intervals, sparse keyframes, or `exact=True`) we decode forward from the preceding keyframe to
the frame nearest the target, reusing the decoder position when the next target lies in the same group of
pictures. PyAV is the primary backend: on a 10-minute 720p clip with a keyframe every 8 s it samples 64 frames in
about 3% of the time a full decode takes, where decord's `get_batch` needs ~20% for the same keyframes and ~70%
for the nearest frames (`bench/bench_sampling.py`). decord is the fallback when PyAV fails to decode a file, and
can be forced with `backend="decord"`. Containers can claim more than they hold (an edited MP4's header or last
sample, a cut WebM's Segment duration): probing checks the claim against where the frames really end (a whole MP4
index for free, else one seek and a demux of the last packets) and plans over the content, keeping the claim in
`VideoInfo.claimed_duration_s`; should decoding still run out early, the samples are planned again over what was
decoded. One decoded frame is never returned as two samples.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

import av
import numpy as np

from models.base import Frames, VideoError, VideoInfo
from models.units import format_duration, format_fps, plural

DEFAULT_NUM_FRAMES = 32
BACKENDS = ("auto", "pyav", "decord")

# Timestamps are rationals turned into floats: compare them with this much slack (far below any frame interval).
_SLACK_S = 1e-6
# Without a seek index we cannot know where keyframes are; decoding forward this far is assumed cheaper than a
# blind seek that may land on a keyframe before where we already are.
_FORWARD_DECODE_WITHOUT_INDEX_S = 2.0
# Seeks that would decode at least this share of the frames up to the last target lose to one pass in order.
_SEQUENTIAL_SHARE = 0.7
# Container formats FFmpeg uses for single pictures: a PNG or JPEG renamed to .mp4 opens as a one-frame "video".
_STILL_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif_pipe"}
_MP4_BOX_TYPES = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"}


# ----------------------------------------------------------------------------------------------------------------
# Limits


def _env_number(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if not value > 0:
        raise ValueError(f"{name}={raw!r} must be positive")
    return value


@dataclass(frozen=True)
class VideoLimits:
    """What this studio agrees to read; anything beyond is refused with a `VideoError` before decoding.

    Sides are checked orientation-free: the longer side against `max_width`, the shorter against `max_height`,
    so a portrait 4320x7680 phone video passes like a landscape one. `max_output_bytes` bounds the sampled
    pixels one request may return (frames x height x width x 3).
    """

    max_bytes: int = 2 * 1024**3
    max_duration_s: float = 3 * 3600.0
    max_width: int = 7680
    max_height: int = 4320
    max_frames_per_request: int = 1024
    max_output_bytes: int = 2 * 1024**3

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> VideoLimits:
        """Defaults overridden by STUDIO_MAX_VIDEO_MB, STUDIO_MAX_VIDEO_SECONDS, STUDIO_MAX_VIDEO_SIDE (the longer
        side; the shorter side's limit keeps the default 16:9 proportion) and STUDIO_MAX_FRAMES."""
        environ = os.environ if environ is None else environ
        default = cls()
        max_side = int(_env_number(environ, "STUDIO_MAX_VIDEO_SIDE", default.max_width))
        return cls(
            max_bytes=int(_env_number(environ, "STUDIO_MAX_VIDEO_MB", default.max_bytes / 1024**2) * 1024**2),
            max_duration_s=_env_number(environ, "STUDIO_MAX_VIDEO_SECONDS", default.max_duration_s),
            max_width=max_side,
            max_height=max(1, round(max_side * default.max_height / default.max_width)),
            max_frames_per_request=int(_env_number(environ, "STUDIO_MAX_FRAMES", default.max_frames_per_request)),
        )


# ----------------------------------------------------------------------------------------------------------------
# Target times (pure)


def uniform_timestamps(duration_s: float, num_frames: int) -> np.ndarray:
    """Centres of `num_frames` equal segments of [0, duration_s): every part of the video is represented equally
    and neither the first nor the last frame (often black or a fade) is forced into the sample."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if not duration_s > 0:
        raise ValueError(f"duration must be positive, got {duration_s}")
    return (np.arange(num_frames) + 0.5) * (duration_s / num_frames)


def fps_timestamps(duration_s: float, fps: float, max_frames: int | None = None) -> np.ndarray:
    """One target every 1/fps seconds (centred in its interval); above `max_frames` targets, a uniform subset of
    them (every k-th, centred), so the sample still spans the whole video."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not duration_s > 0:
        raise ValueError(f"duration must be positive, got {duration_s}")
    count = math.floor(duration_s * fps + 1e-9)
    if count < 1:  # shorter than one interval: its middle
        return np.array([duration_s / 2])
    targets = (np.arange(count) + 0.5) / fps
    if max_frames is not None:
        if max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {max_frames}")
        if count > max_frames:
            chosen = np.floor((np.arange(max_frames) + 0.5) * (count / max_frames)).astype(int)
            targets = targets[chosen]
    return targets


def target_tolerances(targets: np.ndarray, duration_s: float) -> np.ndarray:
    """How far each returned frame may lie from its target: half the gap to the neighbouring targets (to the
    video's ends for the first and last), i.e. half the sampling interval. Frames within it keep their order and
    never stand in for a neighbour's target."""
    targets = np.asarray(targets, dtype=float)
    lower = np.empty_like(targets)
    upper = np.empty_like(targets)
    lower[0], upper[-1] = targets[0], duration_s - targets[-1]
    gaps = np.diff(targets) / 2
    lower[1:], upper[:-1] = gaps, gaps
    return np.maximum(np.minimum(lower, upper), 0.0)


# ----------------------------------------------------------------------------------------------------------------
# Probing


def _name(path: str) -> str:
    return f"'{os.path.basename(path) or path}'"


def _format_bytes(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _looks_like_mp4(path: str) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(8)
    return len(head) == 8 and head[4:8] in _MP4_BOX_TYPES


def _check_file(path: str, limits: VideoLimits) -> None:
    if not os.path.exists(path):
        raise VideoError(f"Video file {_name(path)} was not found (looked at {os.path.abspath(path)}).")
    if os.path.isdir(path):
        raise VideoError(f"{_name(path)} is a folder, not a video file.")
    size = os.path.getsize(path)
    if size == 0:
        raise VideoError(
            f"{_name(path)} is empty (0 bytes): the upload or the recording did not finish. Please choose the file "
            "again."
        )
    if size > limits.max_bytes:
        raise VideoError(
            f"{_name(path)} is {_format_bytes(size)}; this studio accepts videos up to "
            f"{_format_bytes(limits.max_bytes)} (the limit is set by STUDIO_MAX_VIDEO_MB)."
        )


def _open_container(path: str) -> av.container.InputContainer:
    try:
        return av.open(path, metadata_errors="ignore")
    except av.error.FFmpegError as error:
        if _looks_like_mp4(path):
            raise VideoError(
                f"{_name(path)} is incomplete: it starts like an MP4 video but its index is missing or cut off, "
                "which happens when a copy, upload or recording is interrupted. Please try the original file again."
            ) from error
        raise VideoError(
            f"{_name(path)} is not a video file this studio can read: FFmpeg does not recognise its contents "
            "(is it perhaps a document or an image renamed to a video extension?)."
        ) from error
    except OSError as error:
        raise VideoError(f"{_name(path)} cannot be opened: {error.strerror or error}.") from error


def _select_video_stream(container: av.container.InputContainer, path: str) -> av.video.stream.VideoStream:
    # Cover art in music files shows up as a one-picture "video" stream; it is not a video.
    candidates = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not candidates:
        kinds = sorted({s.type for s in container.streams})
        if "audio" in kinds:
            codecs = ", ".join(sorted({s.codec_context.name for s in container.streams.audio}))
            raise VideoError(
                f"{_name(path)} has no video stream: it contains only audio ({codecs}). Please choose a file with "
                "moving pictures."
            )
        found = ", ".join(kinds) if kinds else "nothing playable"
        raise VideoError(f"{_name(path)} has no video stream (it contains {found}).")
    default = [s for s in candidates if s.disposition & av.stream.Disposition.default]
    return (default or candidates)[0]


@dataclass
class _Metadata:
    """What the container tells us before decoding: enough to plan the sample."""

    duration_s: float
    fps: float
    num_frames: int
    coded_width: int
    coded_height: int
    codec: str
    start_pts: int
    keyframe_times: np.ndarray | None  # seconds from the stream start, ascending; None without a seek index
    frame_times: np.ndarray | None  # every frame's decode time, ascending (from the index, like keyframe_times)
    claimed_duration_s: float | None = None  # the header's duration when it overstates the content


def _index_times(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, start_pts: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(every indexed frame's time in seconds from the stream start, whether it is a keyframe), in index order, when
    the demuxer holds a whole-file index: MP4/MOV read theirs from the header, and it is whole when it lists as many
    samples as the header counts. Other formats (and fragmented MP4) fill theirs while reading, so a partial index
    would hide frames: None."""
    if "mp4" not in container.format.name:
        return None
    entries = stream.index_entries
    count = len(entries)
    if count == 0:
        return None
    stamps = np.empty(count, dtype=np.float64)
    is_key = np.empty(count, dtype=bool)
    for i, entry in enumerate(entries):
        stamps[i], is_key[i] = entry.timestamp, entry.is_keyframe
    return (stamps - start_pts) * float(stream.time_base), is_key


def _read_index(
    index: tuple[np.ndarray, np.ndarray] | None, duration_s: float
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(keyframe times, all frame times), ascending, from `_index_times`; (None, None) when the index does not
    reach the end of the video or has no keyframe."""
    if index is None:
        return None, None
    times, is_key = index
    if times.max() < duration_s - max(1.0, 0.05 * duration_s) or not is_key.any():
        return None, None
    return np.sort(times[is_key]), np.sort(times)


def _typical_interval(times_s: np.ndarray) -> float:
    """The usual gap between consecutive frame times (0 when there is no gap to measure)."""
    gaps = np.diff(np.sort(times_s))
    gaps = gaps[gaps > _SLACK_S]
    return float(np.median(gaps)) if gaps.size else 0.0


def _tail_times(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, start_pts: int, claimed_s: float
) -> np.ndarray | None:
    """Times (seconds from the stream start) of the packets from the last keyframe before `claimed_s` to the end
    of the file, read without decoding: where the content really ends when the header may overstate it. One seek
    and one group of pictures of demuxing; None when the demuxer cannot seek."""
    time_base = float(stream.time_base)
    try:
        container.seek(start_pts + math.floor(claimed_s / time_base), stream=stream, backward=True)
        stamps = [packet.pts for packet in container.demux(stream) if packet.pts is not None]
    except av.error.FFmpegError:
        stamps = []
    try:
        container.seek(start_pts, stream=stream, backward=True)
    except av.error.FFmpegError:
        return None
    if not stamps:
        return None
    return (np.asarray(stamps, dtype=np.float64) - start_pts) * time_base


def _claims_more(claimed_s: float, content_s: float, interval_s: float) -> bool:
    """Whether a header's duration overstates the content by more than edit lists, B-frame delays and a last
    frame's display time can explain."""
    return claimed_s - content_s > max(0.5, 4 * interval_s, 0.02 * content_s)


def _check_not_truncated(stream: av.video.stream.VideoStream, path: str) -> None:
    # An MP4 written with its index first ("faststart") opens fine even when its data is cut off; the index then
    # points past the end of the file. Entries are stored in file order, so the last few tell us.
    entries = stream.index_entries
    count = len(entries)
    if count == 0:
        return
    end = max(entries[i].pos + entries[i].size for i in range(max(0, count - 16), count))
    size = os.path.getsize(path)
    if end > size:
        raise VideoError(
            f"{_name(path)} is incomplete: the file is {_format_bytes(size)} but its video data runs to "
            f"{_format_bytes(end)}; it was probably cut off while copying or uploading. Please try the original file "
            "again."
        )


def _scan_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> tuple[float, int]:
    """(duration in seconds, packet count) by reading packet timestamps to the end, without decoding: for files
    whose header carries neither, such as WebM recorded by a browser."""
    first = last_end = None
    count = 0
    for packet in container.demux(stream):
        if packet.pts is None:
            continue
        count += 1
        first = packet.pts if first is None else min(first, packet.pts)
        end = packet.pts + (packet.duration or 0)
        last_end = end if last_end is None else max(last_end, end)
    container.seek(stream.start_time or 0, stream=stream, backward=True)
    if last_end is None or first is None:
        return 0.0, 0
    return float((last_end - first) * stream.time_base), count


def _duration_error(path: str, duration_s: float, limits: VideoLimits) -> VideoError:
    return VideoError(
        f"{_name(path)} is {format_duration(duration_s)} long; the longest accepted video is "
        f"{format_duration(limits.max_duration_s)} (the limit is set by STUDIO_MAX_VIDEO_SECONDS)."
    )


def _read_metadata(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: str, limits: VideoLimits
) -> _Metadata:
    format_name = container.format.name
    if format_name in _STILL_IMAGE_FORMATS:
        raise VideoError(f"{_name(path)} is a still image ({stream.codec_context.name}), not a video.")
    codec_context = stream.codec_context
    width, height = codec_context.width, codec_context.height
    if width <= 0 or height <= 0:
        raise VideoError(
            f"{_name(path)} has a video stream without a picture size (codec '{codec_context.name}'); it cannot be "
            "decoded."
        )
    long_side, short_side = max(width, height), min(width, height)
    if long_side > limits.max_width or short_side > limits.max_height:
        raise VideoError(
            f"{_name(path)} is {width}x{height} pixels; the largest accepted size is {limits.max_width}x"
            f"{limits.max_height} (either orientation; the limit is set by STUDIO_MAX_VIDEO_SIDE)."
        )
    _check_not_truncated(stream, path)

    time_base = stream.time_base or Fraction(1, 1)
    start_pts = int(stream.start_time) if stream.start_time is not None else 0
    duration_s = 0.0
    if stream.duration:
        duration_s = float(stream.duration * time_base)
    elif container.duration:
        duration_s = container.duration / av.time_base
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if not 0 < fps <= 1000:  # variable-rate files sometimes advertise 1000 or 90000 "fps": derived below instead
        fps = 0.0
    num_frames = stream.frames
    if duration_s <= 0 and num_frames and fps:
        duration_s = num_frames / fps
    index = _index_times(container, stream, start_pts)
    claimed_s = None
    if duration_s > 0:
        duration_s, fps, num_frames, claimed_s = _content_extent(
            container, stream, start_pts, index, duration_s, fps, num_frames
        )
    if duration_s > limits.max_duration_s:
        raise _duration_error(path, duration_s, limits)
    if duration_s <= 0:
        duration_s, num_frames = _scan_packets(container, stream)
        if duration_s > limits.max_duration_s:
            raise _duration_error(path, duration_s, limits)
    if fps <= 0:
        fps = num_frames / duration_s if num_frames and duration_s > 0 else 25.0
    if not num_frames:
        num_frames = max(1, round(duration_s * fps))
    if duration_s <= 0:
        # A single frame (or timestamps that do not move): give it one frame's worth of time.
        duration_s = num_frames / fps
    keyframe_times, frame_times = _read_index(index, duration_s)
    return _Metadata(
        duration_s=duration_s,
        fps=fps,
        num_frames=int(num_frames),
        coded_width=width,
        coded_height=height,
        codec=codec_context.name,
        start_pts=start_pts,
        keyframe_times=keyframe_times,
        frame_times=frame_times,
        claimed_duration_s=claimed_s,
    )


def _content_extent(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    start_pts: int,
    index: tuple[np.ndarray, np.ndarray] | None,
    header_s: float,
    fps: float,
    num_frames: int,
) -> tuple[float, float, int, float | None]:
    """(duration, fps, frame count, claimed duration or None) of what the file really holds. Edited MP4s and cut
    WebMs can carry a header (or a last-sample duration) hours longer than their frames; trusting it would plan
    samples past the end. A whole MP4 index says where the frames end at no cost; other formats get one seek to
    the claimed end and a demux of the packets after it."""
    whole_index = index is not None and len(index[0]) == num_frames
    times = index[0] if whole_index else _tail_times(container, stream, start_pts, header_s)
    if times is None or times.size == 0:
        return header_s, fps, num_frames, None
    interval = _typical_interval(times) or (1.0 / fps if fps > 0 else 0.0)
    content_s = float(times.max()) + interval
    if whole_index and interval > 0 and not 0.8 < fps * content_s / num_frames < 1.25:
        # The header's average rate is frames / header duration: a long last sample drags it towards 0 fps.
        fps = num_frames / content_s
    if not _claims_more(header_s, content_s, interval):
        return header_s, fps, num_frames, None
    if whole_index:
        fps = num_frames / content_s
    else:
        if interval > 0 and not 0.8 < fps * interval < 1.25:
            fps = 1.0 / interval
        num_frames = 0  # the header's count, if any, came from the claim: recounted from the rate by the caller
    return content_s, fps, num_frames, header_s


def _display_rotation(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that show the frame upright (phones store portrait video as landscape
    pictures plus a rotation tag)."""
    try:
        degrees = frame.rotation
    except (AttributeError, ValueError):
        return 0
    return int(round(degrees / 90)) % 4


def _video_info(path: str, metadata: _Metadata, rotation: int, backend: str) -> VideoInfo:
    width, height = metadata.coded_width, metadata.coded_height
    if rotation % 2:
        width, height = height, width
    return VideoInfo(
        path=str(path),
        duration_s=float(metadata.duration_s),
        fps=float(metadata.fps),
        num_frames=int(metadata.num_frames),
        width=int(width),
        height=int(height),
        codec=metadata.codec,
        backend=backend,
        claimed_duration_s=metadata.claimed_duration_s,
    )


def _decode_error(path: str, where_s: float | None, error: Exception) -> VideoError:
    where = f" near {where_s:.1f} s" if where_s is not None else ""
    detail = getattr(error, "strerror", None) or str(error).strip().splitlines()[-1][:200]
    return VideoError(
        f"{_name(path)} is damaged or incomplete: its video could not be decoded{where} ({detail}). Please try the "
        "original file again."
    )


def claim_note(info: VideoInfo) -> str | None:
    """One sentence for the person who supplied the file when its container claims more than it holds (None when
    they agree), e.g. "The file's header claims 2 h 50 min, but it holds 6.4 s of video (64 frames at 10 fps); the
    samples cover those 6.4 s."."""
    if info.claimed_duration_s is None:
        return None
    held = format_duration(info.duration_s)
    return (
        f"The file's header claims {format_duration(info.claimed_duration_s)}, but it holds {held} of video "
        f"({plural(info.num_frames, 'frame')} at {format_fps(info.fps)}); the samples cover those {held}."
    )


def probe_video(path: str | os.PathLike, limits: VideoLimits | None = None) -> VideoInfo:
    """Read what a video is (duration, fps, frame count, displayed size, codec) and check it against `limits`.

    Decodes only the first frame, to be sure the picture data is readable. Raises `VideoError` with a message for
    a person when the file is missing, empty, truncated, not a video, has no video stream, or exceeds a limit.
    """
    path = os.fspath(path)
    limits = limits or VideoLimits.from_env()
    _check_file(path, limits)
    with _open_container(path) as container:
        stream = _select_video_stream(container, path)
        metadata = _read_metadata(container, stream, path, limits)
        decoder = _PyAVDecoder(container, stream, metadata, path, frame_threads=False)
        first = decoder.first_frame()
        return _video_info(path, metadata, _display_rotation(first), backend="pyav")


# ----------------------------------------------------------------------------------------------------------------
# Decoding with PyAV


class _PyAVDecoder:
    """Frames of one stream by time, seeking only when decoding forward would cost more."""

    def __init__(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        metadata: _Metadata,
        path: str,
        frame_threads: bool,
    ):
        self.container = container
        self.stream = stream
        self.metadata = metadata
        self.path = path
        self.time_base = float(stream.time_base)
        self.start_s = metadata.start_pts * self.time_base
        # Frame threading decodes several frames in parallel but returns the first one only after a few packets:
        # worth it when decoding runs of frames, wasted when every seek needs a single keyframe.
        if not stream.codec_context.is_open:
            stream.codec_context.thread_type = "AUTO" if frame_threads else "SLICE"
        for other in container.streams:
            if other.index != stream.index:
                other.discard = av.stream.Discard.all
        self._frames: Iterator[av.VideoFrame] | None = None
        self._lookahead: av.VideoFrame | None = None
        self._position_s: float | None = None  # time of the last frame taken from the decoder
        self._last_time_s = -1.0 / metadata.fps
        self.latest_s: float | None = None  # the latest frame time decoded so far: the content reaches that far
        self.last_gap_s = 0.0  # between the last two frames decoded in a row: at the end, the last frame's interval

    # -- low level

    def frame_time(self, frame: av.VideoFrame) -> float:
        if frame.pts is not None:
            return frame.pts * self.time_base - self.start_s
        return self._last_time_s + 1.0 / self.metadata.fps  # no timestamp: assume a constant rate

    def _iter_frames(self) -> Iterator[av.VideoFrame]:
        try:
            yield from self.container.decode(self.stream)
        except av.error.FFmpegError as error:
            raise _decode_error(self.path, self._position_s, error) from error

    def _next(self) -> av.VideoFrame | None:
        if self._lookahead is not None:
            frame, self._lookahead = self._lookahead, None
        else:
            if self._frames is None:
                self._frames = self._iter_frames()
            frame = next(self._frames, None)
        if frame is not None:
            frame_s = self.frame_time(frame)
            if self._position_s is not None and frame_s > self._position_s:
                self.last_gap_s = frame_s - self._position_s
            self._position_s = self._last_time_s = frame_s
            self.latest_s = self._position_s if self.latest_s is None else max(self.latest_s, self._position_s)
        return frame

    def _seek(self, time_s: float) -> None:
        pts = self.metadata.start_pts + math.floor(max(0.0, time_s) / self.time_base)
        try:
            self.container.seek(pts, stream=self.stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            try:  # some demuxers refuse timestamps before their first keyframe: start from the beginning instead
                self.container.seek(self.metadata.start_pts, stream=self.stream, backward=True, any_frame=False)
            except av.error.FFmpegError as error:
                raise _decode_error(self.path, time_s, error) from error
        self._frames = None
        self._lookahead = None
        self._position_s = None

    def _keyframe_at_or_before(self, time_s: float) -> float | None:
        times = self.metadata.keyframe_times
        if times is None:
            return None
        i = int(np.searchsorted(times, time_s + _SLACK_S, side="right")) - 1
        return float(times[max(i, 0)])

    # -- by time

    def first_frame(self) -> av.VideoFrame:
        frame = self._next()
        if frame is None:
            raise VideoError(f"{_name(self.path)} contains no video frames.")
        self._lookahead = frame
        return frame

    def frame_after_seek(self, time_s: float) -> av.VideoFrame | None:
        """The first frame decodable after seeking to `time_s` (the keyframe at or before it), left in place as the
        next frame to decode until `consume` is called, in case a nearer one is needed."""
        self._seek(time_s)
        frame = self._next()
        self._lookahead = frame
        return frame

    def consume(self) -> None:
        """Take the frame `frame_after_seek` left in place: decoding goes on after it."""
        self._lookahead = None

    def can_continue_to(self, time_s: float) -> bool:
        """Whether decoding on from the current position reaches `time_s` more cheaply than seeking."""
        position = self._position_s
        if position is None or self._frames is None or time_s < position:
            return False
        keyframe = self._keyframe_at_or_before(time_s)
        if keyframe is not None:
            return keyframe <= position + _SLACK_S  # no keyframe in between: decoding on is cheapest
        return time_s - position <= _FORWARD_DECODE_WITHOUT_INDEX_S

    def nearest(
        self, time_s: float, tolerance_s: float, after_s: float = -math.inf, seek: bool = True
    ) -> av.VideoFrame | None:
        """The decoded frame nearest to `time_s` among those later than `after_s` (the previous target's frame), ties
        going to the earlier one; `seek=False` decodes on from the current position whatever the distance. None when
        the stream ends without a frame later than `after_s`: one decoded frame is never handed out twice."""
        # A variable frame rate can put the previous sample after this target: the first frame after it is wanted.
        wanted_s = max(time_s, after_s)
        if seek and not self.can_continue_to(wanted_s):
            self._seek_before(wanted_s, tolerance_s)
        previous = None
        while True:
            frame = self._next()
            if frame is None:  # end of stream: the last new frame (if any) is the nearest
                if self.latest_s is None:
                    raise _decode_error(self.path, time_s, RuntimeError("no frame after seeking"))
                return previous
            frame_s = self._position_s
            if frame_s <= after_s + _SLACK_S:
                continue
            if frame_s >= time_s:
                if previous is not None and time_s - self.frame_time(previous) <= frame_s - time_s + _SLACK_S:
                    self._lookahead = frame  # the next target may want it
                    return previous
                return frame
            previous = frame

    def _seek_before(self, time_s: float, tolerance_s: float) -> None:
        """Seek so that decoding starts at or before `time_s`. Formats without an index (or with a coarse one) can
        land after the target; step further back until they do not."""
        step = max(1.0, 2 * tolerance_s)
        seek_to = time_s
        for _ in range(8):
            frame = self.frame_after_seek(seek_to)
            if frame is None or self._position_s <= time_s + _SLACK_S or seek_to <= 0:
                return
            seek_to = max(0.0, seek_to - step)
            step *= 2
        self._seek(0.0)


def _output_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Displayed (width, height) after an optional downscale that keeps the aspect ratio."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


# How each target is fetched.
_EXACT = 0  # decode to the frame nearest the target
_KEYFRAME = 1  # seek to a keyframe the index says lies within tolerance and take it
_PROBE = 2  # no index: seek just inside the tolerance window; keep the keyframe found if it lies within it


@dataclass
class _Plan:
    targets_s: np.ndarray  # ascending
    tolerances_s: np.ndarray
    modes: np.ndarray  # one of _EXACT, _KEYFRAME, _PROBE per target
    keyframes_s: np.ndarray  # for _KEYFRAME targets: the keyframe to take (NaN otherwise)
    exact: bool  # the caller asked for the nearest frames, keyframes or not
    sequential: bool = False  # one pass in order without seeking (seeks would decode nearly all of it anyway)

    @property
    def needs_runs(self) -> bool:
        """Whether some targets will decode runs of frames (rather than single keyframes)."""
        return self.sequential or bool((self.modes != _KEYFRAME).any())


def _plan(targets_s: np.ndarray, tolerances_s: np.ndarray, keyframe_times: np.ndarray | None, exact: bool) -> _Plan:
    """Give each target the nearest still-unused keyframe within its tolerance, if allowed and there is one."""
    keyframes_s = np.full(targets_s.shape, np.nan)
    if exact:
        modes = np.full(targets_s.shape, _EXACT)
    elif keyframe_times is None or keyframe_times.size == 0:
        modes = np.full(targets_s.shape, _PROBE)
    else:
        modes = np.full(targets_s.shape, _EXACT)
        last_used = -np.inf
        for i, (target, tolerance) in enumerate(zip(targets_s, tolerances_s, strict=True)):
            # Strictly inside the window: a keyframe on its edge is as near the neighbouring target, and taking it
            # here would leave that target a frame further on (and a frame short at the end when every frame is asked).
            lo = np.searchsorted(keyframe_times, target - tolerance + _SLACK_S, side="left")
            hi = np.searchsorted(keyframe_times, target + tolerance - _SLACK_S, side="right")
            window = keyframe_times[lo:hi]
            window = window[window > last_used + _SLACK_S]
            if window.size:
                keyframes_s[i] = last_used = float(window[np.argmin(np.abs(window - target))])
                modes[i] = _KEYFRAME
    sequential = _seeking_decodes_most(targets_s, tolerances_s, modes, keyframe_times)
    return _Plan(targets_s, tolerances_s, modes, keyframes_s, exact, sequential)


def _seeking_decodes_most(
    targets_s: np.ndarray, tolerances_s: np.ndarray, modes: np.ndarray, keyframe_times: np.ndarray | None
) -> bool:
    """Whether seeking to each target would decode nearly every frame up to the last one anyway (targets closer than
    the keyframe interval): then one pass in order is cheaper, as it pays for no seek and decodes each frame once.

    Seeking to a non-keyframe target decodes from the keyframe at or before it to the target; the spans of all such
    targets, merged, are compared with the whole span a single pass decodes."""
    if keyframe_times is None or keyframe_times.size == 0 or targets_s.size == 0:
        return False
    spans = []
    for target, tolerance, mode in zip(targets_s, tolerances_s, modes, strict=True):
        if mode == _KEYFRAME:
            continue  # one keyframe: nearly free
        i = int(np.searchsorted(keyframe_times, target + _SLACK_S, side="right")) - 1
        spans.append((float(keyframe_times[max(i, 0)]), float(target + tolerance)))
    covered, reach = 0.0, -np.inf
    for start, end in sorted(spans):
        covered += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return covered >= _SEQUENTIAL_SHARE * float(targets_s[-1] + tolerances_s[-1])


def _fetch(decoder: _PyAVDecoder, plan: _Plan, i: int, previous_s: float) -> av.VideoFrame | None:
    """The frame for target `i`: a keyframe within tolerance where the plan allows one, else the nearest frame
    later than the previous sample's; None when the stream holds no frame after `previous_s`."""
    target, tolerance, mode = plan.targets_s[i], plan.tolerances_s[i], plan.modes[i]
    if plan.sequential:
        return decoder.nearest(target, tolerance, previous_s, seek=False)

    def acceptable(frame: av.VideoFrame | None) -> bool:
        # Index times can differ from presentation times (B-frames, edit lists): check what was decoded.
        if frame is None:
            return False
        frame_s = decoder.frame_time(frame)
        return abs(frame_s - target) <= tolerance + _SLACK_S and frame_s > previous_s + _SLACK_S

    if mode == _KEYFRAME:
        frame = decoder.frame_after_seek(plan.keyframes_s[i])
        if acceptable(frame):
            decoder.consume()
            return frame
    elif mode == _PROBE and not decoder.can_continue_to(target):
        # The keyframe at or before the window's end, if it lies inside the window, is as good as exact.
        frame = decoder.frame_after_seek(target + 0.999 * tolerance)
        if acceptable(frame):
            decoder.consume()
            return frame
        if frame is not None and decoder.frame_time(frame) < target:
            return decoder.nearest(target, tolerance, previous_s, seek=False)
    return decoder.nearest(target, tolerance, previous_s)


def _to_rgb(
    reformatter: av.video.reformatter.VideoReformatter,
    frame: av.VideoFrame,
    coded_size: tuple[int, int],
    rotation: int,
) -> np.ndarray:
    width, height = coded_size
    rgb = reformatter.reformat(frame, width=width, height=height, format="rgb24", interpolation="AREA")
    pixels = rgb.to_ndarray()
    return np.rot90(pixels, k=rotation) if rotation else pixels


def _sample_pyav(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    metadata: _Metadata,
    path: str,
    plan: _Plan,
    max_side: int | None,
    limits: VideoLimits,
    replan: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, VideoInfo]:
    """(pixels, timestamps, frame numbers, info) for the planned targets, decoded with PyAV. Every sample is a
    different decoded frame, later than the one before; `replan` raises `_ContentEnds` when the frames stop short
    of the plan."""
    decoder = _PyAVDecoder(container, stream, metadata, path, frame_threads=plan.needs_runs)
    first = decoder.first_frame()
    first_s = decoder.frame_time(first)
    rotation = _display_rotation(first)
    info = _video_info(path, metadata, rotation, backend="pyav")
    out_width, out_height = _output_size(info.width, info.height, max_side)
    _check_output_size(path, len(plan.targets_s), out_width, out_height, limits)
    coded_size = (out_height, out_width) if rotation % 2 else (out_width, out_height)

    # One shared reformatter: PyAV otherwise builds a new swscale context for every frame, which costs more than
    # decoding a keyframe.
    reformatter = av.video.reformatter.VideoReformatter()
    # Filled frame by frame: only the sampled frames are ever held, never a decoded run.
    pixels = np.empty((len(plan.targets_s), out_height, out_width, 3), dtype=np.uint8)
    times = np.empty(len(plan.targets_s))
    previous_s = -np.inf
    count = 0
    for i in range(len(plan.targets_s)):
        frame = _fetch(decoder, plan, i, previous_s)
        if frame is None:  # no frame left after the previous sample
            _check_content_end(metadata, decoder.latest_s, decoder.last_gap_s, plan.targets_s[i:], replan)
            break  # the few frames left went to earlier targets (variable rate): fewer samples, none repeated
        times[i] = previous_s = decoder.frame_time(frame)
        pixels[i] = _to_rgb(reformatter, frame, coded_size, rotation)
        count += 1
    pixels, times = pixels[:count], times[:count]
    return pixels, times, _frame_numbers(times, metadata, first_s), info


class _ContentEnds(Exception):
    """The stream ended well before the duration the samples were planned over: plan again up to `end_s`."""

    def __init__(self, end_s: float, interval_s: float):
        super().__init__(f"the frames end at {end_s:.3f} s")
        self.end_s = end_s
        self.interval_s = interval_s  # the last frames' spacing: the real frame rate when the header's is not


def _check_content_end(
    metadata: _Metadata, last_frame_s: float | None, interval_s: float, targets_left: np.ndarray, replan: bool
) -> None:
    """Raise `_ContentEnds` when the frames stop before the targets still to fetch (the header overstated the
    video in a way probing did not catch), so the samples are spread over the real content instead."""
    if not replan or last_frame_s is None or not len(targets_left):
        return
    # The header's rate may come from the overstated duration (frames / claimed time): the observed spacing wins.
    interval_s = min(interval_s, 1.0 / metadata.fps) if interval_s > 0 else 1.0 / metadata.fps
    end_s = last_frame_s + interval_s
    if targets_left[-1] > end_s and end_s < metadata.duration_s - interval_s:
        raise _ContentEnds(end_s, interval_s)


def _ended_at(metadata: _Metadata, ended: _ContentEnds) -> _Metadata:
    """`metadata` for a video found, while decoding, to end at `ended.end_s`."""
    end_s, interval_s = ended.end_s, ended.interval_s
    claimed = metadata.claimed_duration_s
    if claimed is None and _claims_more(metadata.duration_s, end_s, interval_s):
        claimed = metadata.duration_s
    frame_times = metadata.frame_times
    keyframe_times = metadata.keyframe_times
    fps = metadata.fps
    if frame_times is not None:
        frame_times = frame_times[frame_times < end_s]
        num_frames = max(1, len(frame_times))
        fps = num_frames / end_s
    else:
        if not 0.8 < fps * interval_s < 1.25:
            fps = 1.0 / interval_s
        num_frames = max(1, round(end_s * fps))
    if keyframe_times is not None:
        keyframe_times = keyframe_times[keyframe_times < end_s]
    return replace(
        metadata,
        duration_s=end_s,
        fps=fps,
        num_frames=num_frames,
        frame_times=frame_times,
        keyframe_times=keyframe_times if keyframe_times is None or keyframe_times.size else None,
        claimed_duration_s=claimed,
    )


def _frame_numbers(times_s: np.ndarray, metadata: _Metadata, first_s: float) -> np.ndarray:
    """Source frame numbers of frames shown at `times_s`. With an index, the rank of the nearest indexed frame
    (exact for variable frame rates too); otherwise time x average rate."""
    if metadata.frame_times is not None and len(metadata.frame_times) > 1:
        # Index times are decode times, which B-frames shift by a constant delay: align the first with the first
        # presented frame.
        shown = metadata.frame_times - metadata.frame_times[0] + first_s
        right = np.clip(np.searchsorted(shown, times_s), 1, len(shown) - 1)
        left = right - 1
        nearer_left = np.abs(times_s - shown[left]) <= np.abs(shown[right] - times_s)
        return np.where(nearer_left, left, right).astype(np.int64)
    numbers = np.round((times_s - first_s) * metadata.fps)
    return np.clip(numbers, 0, max(0, metadata.num_frames - 1)).astype(np.int64)


# ----------------------------------------------------------------------------------------------------------------
# Decoding with decord


def _sample_decord(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    metadata: _Metadata,
    path: str,
    plan: _Plan,
    max_side: int | None,
    limits: VideoLimits,
    replan: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, VideoInfo]:
    """Like `_sample_pyav`, with decord: its own index gives frame numbers and keyframes."""
    try:
        import decord
    except ImportError as error:
        raise RuntimeError("backend='decord' was requested but decord is not installed") from error

    try:  # the displayed size needs the rotation tag, which PyAV reads from the first frame
        rotation = _display_rotation(
            _PyAVDecoder(container, stream, metadata, path, frame_threads=False).first_frame()
        )
    except VideoError:
        rotation = 0
    info = _video_info(path, metadata, rotation, backend="decord")
    # decord applies the rotation tag itself, and takes the output size as displayed.
    out_width, out_height = _output_size(info.width, info.height, max_side)
    _check_output_size(path, len(plan.targets_s), out_width, out_height, limits)
    resize = {} if (out_width, out_height) == (info.width, info.height) else {"width": out_width, "height": out_height}
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=0, **resize)
        frame_times = reader.get_frame_timestamp(np.arange(len(reader)))[:, 0]
        frame_times = frame_times - frame_times.min()
        _check_content_end(metadata, float(frame_times.max()), _typical_interval(frame_times), plan.targets_s, replan)
        keyframes = np.asarray(reader.get_key_indices(), dtype=int)
        keyframe_times = frame_times[keyframes] if keyframes.size else None
        plan = _plan(plan.targets_s, plan.tolerances_s, keyframe_times, plan.exact)  # decord's own index
        indices = [
            int(keyframes[np.argmin(np.abs(keyframe_times - keyframe))])
            if mode == _KEYFRAME
            else int(np.argmin(np.abs(frame_times - target)))
            for target, mode, keyframe in zip(plan.targets_s, plan.modes, plan.keyframes_s, strict=True)
        ]
        indices = _distinct_increasing(indices, len(reader)).tolist()
        batch = reader.get_batch(indices).asnumpy()
    except (decord.DECORDError, RuntimeError) as error:
        raise _decode_error(path, None, error) from error
    return batch, frame_times[indices], np.asarray(indices, dtype=np.int64), info


def _distinct_increasing(indices: list[int], total: int) -> np.ndarray:
    """Frame numbers made strictly increasing by moving a repeated one to the next free neighbour (a variable frame
    rate can make two targets' nearest frame the same one): never one frame as two samples."""
    numbers = np.asarray(indices, dtype=np.int64)
    if len(numbers) > total:
        return np.unique(numbers)
    for i in range(1, len(numbers)):
        numbers[i] = max(numbers[i], numbers[i - 1] + 1)
    if len(numbers):
        numbers[-1] = min(numbers[-1], total - 1)
    for i in range(len(numbers) - 2, -1, -1):
        numbers[i] = min(numbers[i], numbers[i + 1] - 1)
    return numbers


# ----------------------------------------------------------------------------------------------------------------
# Sampling


def _check_output_size(path: str, count: int, width: int, height: int, limits: VideoLimits) -> None:
    size = count * width * height * 3
    if size > limits.max_output_bytes:
        raise VideoError(
            f"{count} frames of {width}x{height} from {_name(path)} would take {_format_bytes(size)} of memory; the "
            f"limit is {_format_bytes(limits.max_output_bytes)}. Ask for fewer frames or a smaller max_side."
        )


def _requested_targets(
    duration_s: float,
    available_frames: int,
    num_frames: int | None,
    fps: float | None,
    max_frames: int | None,
    limits: VideoLimits,
) -> np.ndarray:
    """Target times for a request, never more than the video has frames nor than the limits allow."""
    if fps is not None:
        cap = max_frames if max_frames is not None else num_frames
        targets = fps_timestamps(duration_s, fps, cap)
    else:
        count = num_frames if num_frames is not None else DEFAULT_NUM_FRAMES
        if count < 1:
            raise ValueError(f"num_frames must be at least 1, got {count}")
        if max_frames is not None:
            count = min(count, max_frames)
        # More targets than the video has frames would only repeat frames.
        targets = uniform_timestamps(duration_s, min(count, max(1, available_frames)))
    if fps is not None and len(targets) > available_frames > 0:
        targets = uniform_timestamps(duration_s, available_frames)
    if len(targets) > limits.max_frames_per_request:
        raise VideoError(
            f"{len(targets)} frames were requested; one request may take at most {limits.max_frames_per_request} "
            "(the limit is set by STUDIO_MAX_FRAMES)."
        )
    return targets


def sample_frames(
    path: str | os.PathLike,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    limits: VideoLimits | None = None,
    backend: str = "auto",
    max_side: int | None = None,
    exact: bool = False,
) -> Frames:
    """Sample frames from a video without decoding all of it.

    Uniform mode (default, `num_frames` or 32): one frame per centre of `num_frames` equal segments. Rate mode
    (`fps` set): a frame every 1/fps seconds, capped at `max_frames` (or `num_frames`) by uniform subsampling. No
    more frames than the video has are returned. Each frame lies within half the sampling interval of its target:
    a keyframe when one is that close (fast), else the frame nearest the target; `exact=True` always takes the
    nearest frame. `max_side` downsizes frames while decoding, keeping the aspect ratio. Portrait videos tagged
    with a rotation come out upright.

    backend: "auto" (PyAV, falling back to decord if PyAV cannot decode the file), "pyav" or "decord".
    Returns `Frames` with uint8 (T, H, W, 3) RGB pixels, source frame numbers (from the file's index where it has
    one, which holds for variable frame rates too; else timestamp x average rate) and presentation timestamps in
    seconds from the video's start.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    path = os.fspath(path)
    limits = limits or VideoLimits.from_env()
    _check_file(path, limits)
    request = (num_frames, fps, max_frames, exact, backend, max_side, limits)
    with _open_container(path) as container:
        stream = _select_video_stream(container, path)
        metadata = _read_metadata(container, stream, path, limits)
        try:
            return _sample_once(container, stream, metadata, path, *request, replan=True)
        except _ContentEnds as ended:
            # The frames stopped short of the header's duration: spread the samples over what the file holds.
            metadata = _ended_at(metadata, ended)
    with _open_container(path) as container:  # afresh: the first decoder is at the end of the stream
        stream = _select_video_stream(container, path)
        return _sample_once(container, stream, metadata, path, *request, replan=False)


def _sample_once(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    metadata: _Metadata,
    path: str,
    num_frames: int | None,
    fps: float | None,
    max_frames: int | None,
    exact: bool,
    backend: str,
    max_side: int | None,
    limits: VideoLimits,
    replan: bool,
) -> Frames:
    targets = _requested_targets(metadata.duration_s, metadata.num_frames, num_frames, fps, max_frames, limits)
    tolerances = target_tolerances(targets, metadata.duration_s)
    plan = _plan(targets, tolerances, metadata.keyframe_times, exact)
    args = (container, stream, metadata, path, plan, max_side, limits, replan)
    if backend == "decord":
        pixels, times, indices, info = _sample_decord(*args)
    else:
        try:
            pixels, times, indices, info = _sample_pyav(*args)
        except VideoError as error:
            if backend == "pyav" or not _decord_available() or not _is_decode_failure(error):
                raise
            pixels, times, indices, info = _sample_decord(*args)
    return Frames(pixels=pixels, indices=indices, timestamps_s=times.astype(np.float64), info=info)


def _decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def _is_decode_failure(error: VideoError) -> bool:
    return isinstance(error.__cause__, av.error.FFmpegError)


def frames_at(path: str | os.PathLike, timestamps_s: Sequence[float], max_side: int | None = None) -> Frames:
    """The frames nearest to given times (seconds from the start), e.g. the frames an answer was given, again;
    upright and downsized like `sample_frames`. Times past the end give no frame."""
    path = os.fspath(path)
    limits = VideoLimits.from_env()
    _check_file(path, limits)
    with _open_container(path) as container:
        stream = _select_video_stream(container, path)
        metadata = _read_metadata(container, stream, path, limits)
        targets = np.clip(np.asarray(sorted(float(t) for t in timestamps_s), dtype=np.float64), 0, None)
        plan = _plan(targets, target_tolerances(targets, metadata.duration_s), metadata.keyframe_times, True)
        pixels, times, indices, info = _sample_pyav(container, stream, metadata, path, plan, max_side, limits)
    return Frames(pixels=pixels, indices=indices, timestamps_s=times.astype(np.float64), info=info)

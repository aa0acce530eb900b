"""Frames of a video on a fixed-rate grid, decoded forward the way a player shows them.

An online assistant sees a video as a stream: at 2 fps it wants, for every grid time k/fps + 1/(2 fps) that the
playback has passed, the picture on screen at that time. `models/video.py` samples a whole video in one call;
here a `StreamReader` keeps one PyAV decoder open per session and decodes forward from where it stopped, so
ingesting the next half second costs a dozen frame decodes, not a seek and a fresh decoder, and a one-hour video
is never held in memory. It seeks only when the playback jumps (backwards, or more than a few seconds ahead).
The file is checked with `probe_video` first, so unusable uploads get the same messages as everywhere else, and
the grid is `fps_timestamps` (the same centred grid `sample_frames(fps=...)` uses), so a live session and a
server-side replay of the same file see the same frames.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator

import av
import numpy as np

from models.base import VideoError, VideoInfo
from models.video import VideoLimits, fps_timestamps, probe_video

# Decoding forward this far is cheaper than a seek plus the decode from the keyframe before the target.
SEEK_AHEAD_S = 4.0
_SLACK_S = 1e-6


class StreamReader:
    """The pictures shown at grid times of one video, decoded on demand (thread-safe, one decoder per reader).

    fps: grid rate (2.0 as in VideoLLM-online); max_side: longest side of the returned frames (aspect kept).
    `grid_s` holds every grid time of the video; `read(times)` returns (pixels (T, H, W, 3) uint8, frame times).
    """

    def __init__(
        self, path: str | os.PathLike, fps: float = 2.0, max_side: int | None = 448, limits: VideoLimits | None = None
    ):
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = os.fspath(path)
        self.info: VideoInfo = probe_video(self.path, limits)
        self.fps = float(fps)
        self.max_side = max_side
        self.grid_s = fps_timestamps(self.info.duration_s, self.fps)
        self._lock = threading.Lock()
        self._container: av.container.InputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._shown: tuple[float, av.VideoFrame] | None = None  # the last frame decoded at or before the position
        self._next: tuple[float, av.VideoFrame] | None = None  # decoded, but later than the last target
        self._reformatter = av.video.reformatter.VideoReformatter()
        self._rotation = 0

    # -- grid

    def grid_between(self, after_s: float | None, until_s: float) -> np.ndarray:
        """Grid times t with after_s < t <= until_s (after_s None: from the start)."""
        lo = 0 if after_s is None else int(np.searchsorted(self.grid_s, after_s + _SLACK_S, side="left"))
        hi = int(np.searchsorted(self.grid_s, until_s + _SLACK_S, side="right"))
        return self.grid_s[lo:hi]

    def batches(self, batch_size: int = 16) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The whole grid as (pixels, times) batches, for a server-side replay."""
        for start in range(0, len(self.grid_s), batch_size):
            yield self.read(self.grid_s[start : start + batch_size])

    # -- decoding

    def read(self, targets_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The frames on screen at `targets_s` (ascending): (pixels (T, H, W, 3) uint8, their presentation times)."""
        targets = np.asarray(targets_s, dtype=float)
        if len(targets) and np.any(np.diff(targets) < 0):
            raise ValueError("targets must be ascending")
        with self._lock:
            pictures, times = [], []
            for target in targets:
                time_s, frame = self._shown_at(float(target))
                pictures.append(self._to_rgb(frame))
                times.append(time_s)
        if not pictures:
            return np.zeros((0, 0, 0, 3), dtype=np.uint8), np.zeros(0)
        return np.stack(pictures), np.asarray(times)

    def close(self) -> None:
        with self._lock:
            if self._container is not None:
                self._container.close()
            self._container = self._stream = self._frames = self._shown = self._next = None

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open(self) -> None:
        try:
            self._container = av.open(self.path)
        except av.error.FFmpegError as error:
            raise VideoError(f"'{os.path.basename(self.path)}' could not be opened again: {error}") from error
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"  # decoding runs of frames: frame threading pays off
        for other in self._container.streams:
            if other.index != self._stream.index:
                other.discard = av.stream.Discard.all
        self._start_s = float((self._stream.start_time or 0) * self._stream.time_base)
        self._frames = self._iter_frames()

    def _iter_frames(self) -> Iterator[av.VideoFrame]:
        try:
            yield from self._container.decode(self._stream)
        except av.error.FFmpegError as error:
            where = f" near {self._shown[0]:.1f} s" if self._shown else ""
            raise VideoError(
                f"'{os.path.basename(self.path)}' is damaged: its video could not be decoded{where} ({error})."
            ) from error

    def _decode_next(self) -> tuple[float, av.VideoFrame] | None:
        if self._next is not None:
            item, self._next = self._next, None
            return item
        frame = next(self._frames, None)
        if frame is None:
            return None
        if frame.pts is not None:
            time_s = float(frame.pts * self._stream.time_base) - self._start_s
        else:  # no timestamp: assume a constant rate after the previous frame
            time_s = (self._shown[0] if self._shown else -1.0 / self.info.fps) + 1.0 / self.info.fps
        if self._shown is None:
            self._rotation = _display_rotation(frame)
        return time_s, frame

    def _seek(self, time_s: float) -> None:
        pts = (self._stream.start_time or 0) + math.floor(max(0.0, time_s) / float(self._stream.time_base))
        try:
            self._container.seek(pts, stream=self._stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            self._container.seek(self._stream.start_time or 0, stream=self._stream, backward=True)
        self._frames = self._iter_frames()
        self._shown = self._next = None

    def _shown_at(self, target_s: float) -> tuple[float, av.VideoFrame]:
        """The last frame whose presentation time is <= target_s (the first frame for targets before it)."""
        if self._container is None:
            self._open()
        position = self._shown[0] if self._shown else None
        if position is not None and (target_s < position - _SLACK_S or target_s - position > SEEK_AHEAD_S):
            self._seek_before(target_s)
        while True:
            item = self._decode_next()
            if item is None:  # end of stream: the last frame stays on screen
                if self._shown is None:
                    raise VideoError(f"'{os.path.basename(self.path)}' has no decodable frame near {target_s:.1f} s.")
                return self._shown
            if item[0] > target_s + _SLACK_S and self._shown is not None:
                self._next = item
                return self._shown
            self._shown = item

    def _seek_before(self, target_s: float) -> None:
        """Seek so that decoding resumes at or before target_s (coarse indexes may land after it: step back)."""
        step = 1.0
        seek_to = target_s
        for _ in range(8):
            self._seek(seek_to)
            first = self._decode_next()
            if first is None or first[0] <= target_s + _SLACK_S or seek_to <= 0:
                self._next = first
                return
            seek_to = max(0.0, seek_to - step)
            step *= 2
        self._seek(0.0)

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        width, height = frame.width, frame.height
        if self.max_side is not None and max(width, height) > self.max_side:
            scale = self.max_side / max(width, height)
            width, height = max(2, round(width * scale)), max(2, round(height * scale))
        rgb = self._reformatter.reformat(frame, width=width, height=height, format="rgb24", interpolation="AREA")
        pixels = rgb.to_ndarray()
        return np.ascontiguousarray(np.rot90(pixels, k=self._rotation)) if self._rotation else pixels


def _display_rotation(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that show a phone video upright (it stores a rotation tag)."""
    try:
        degrees = frame.rotation
    except (AttributeError, ValueError):
        return 0
    return int(round(degrees / 90)) % 4

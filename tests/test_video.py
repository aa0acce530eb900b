"""Probing and frame sampling as a caller sees them: the right frames at the right times, upright, small when
asked, and a message a person can act on for every file that is not a usable video."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import BAD_VIDEO_KINDS, read_frame_number

from models.base import VideoError
from models.video import (
    VideoLimits,
    fps_timestamps,
    probe_video,
    sample_frames,
    target_tolerances,
    uniform_timestamps,
)

BACKENDS = ["pyav", "decord"]


def frame_numbers_shown(frames) -> list[int]:
    return [read_frame_number(picture) for picture in frames.pixels]


# ----------------------------------------------------------------------------------------------------------------
# Target times


def test_uniform_targets_sit_in_the_middle_of_equal_segments():
    targets = uniform_timestamps(10.0, 4)
    assert targets.tolist() == pytest.approx([1.25, 3.75, 6.25, 8.75])
    assert target_tolerances(targets, 10.0).tolist() == pytest.approx([1.25] * 4)


def test_rate_targets_are_capped_by_spreading_them_over_the_whole_video():
    every_half_second = fps_timestamps(10.0, 2.0)
    assert len(every_half_second) == 20
    assert np.diff(every_half_second) == pytest.approx(np.full(19, 0.5))
    capped = fps_timestamps(10.0, 2.0, max_frames=5)
    assert len(capped) == 5
    assert capped[0] < 1.5 and capped[-1] > 8.5
    assert set(capped.tolist()) <= set(every_half_second.tolist())
    assert fps_timestamps(0.4, 1.0).tolist() == pytest.approx([0.2])  # shorter than one interval: still inside


@pytest.mark.parametrize("bad", [{"duration_s": 0.0, "num_frames": 3}, {"duration_s": 5.0, "num_frames": 0}])
def test_uniform_targets_reject_impossible_requests(bad):
    with pytest.raises(ValueError):
        uniform_timestamps(**bad)


# ----------------------------------------------------------------------------------------------------------------
# Probing


def test_probe_reports_what_the_file_is(make_video):
    info = probe_video(make_video(duration_s=3.0, fps=10.0, width=96, height=64))
    assert (info.width, info.height) == (96, 64)
    assert info.duration_s == pytest.approx(3.0, abs=0.01)
    assert info.fps == pytest.approx(10.0)
    assert info.num_frames == 30
    assert info.codec == "h264"


def test_probe_finds_the_duration_of_a_file_whose_header_has_none(make_video):
    path = make_video("recording.mkv", duration_s=3.0, fps=10.0, seekable=False)
    info = probe_video(path)
    assert info.duration_s == pytest.approx(3.0, abs=0.11)
    assert info.num_frames == 30
    frames = sample_frames(path, num_frames=6)
    assert frame_numbers_shown(frames) == frames.indices.tolist()
    assert np.abs(frames.timestamps_s - uniform_timestamps(3.0, 6)).max() <= 0.25 + 1e-6


# ----------------------------------------------------------------------------------------------------------------
# Sampling


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("exact", [False, True])
def test_uniform_sample_returns_the_frames_it_claims_near_their_targets(make_video, backend, exact):
    path = make_video(duration_s=6.0, fps=10.0, keyframe_interval_s=1.0)
    frames = sample_frames(path, num_frames=8, backend=backend, exact=exact)

    assert frames.pixels.dtype == np.uint8 and frames.pixels.shape == (8, 64, 96, 3)
    assert frame_numbers_shown(frames) == frames.indices.tolist()
    assert np.all(np.diff(frames.timestamps_s) > 0)
    errors = np.abs(frames.timestamps_s - uniform_timestamps(6.0, 8))
    assert errors.max() <= 6.0 / 8 / 2 + 1e-6
    if exact:
        assert errors.max() <= 0.05 + 1e-6  # the nearest frame: half a frame at 10 fps
    assert frames.info.backend == backend


def test_sparse_keyframes_still_give_frames_near_each_target(make_video):
    path = make_video(duration_s=8.0, fps=10.0, keyframe_interval_s=4.0)
    frames = sample_frames(path, num_frames=16)
    assert frame_numbers_shown(frames) == frames.indices.tolist()
    assert np.abs(frames.timestamps_s - uniform_timestamps(8.0, 16)).max() <= 0.25 + 1e-6
    assert len(set(frames.indices.tolist())) == 16


def test_rate_sampling_with_a_cap_spans_the_video(make_video):
    path = make_video(duration_s=5.0, fps=10.0)
    all_of_them = sample_frames(path, fps=2.0)
    assert len(all_of_them) == 10
    assert np.abs(all_of_them.timestamps_s - fps_timestamps(5.0, 2.0)).max() <= 0.25 + 1e-6

    capped = sample_frames(path, fps=2.0, max_frames=4)
    assert len(capped) == 4
    assert capped.timestamps_s[0] <= 1.25 and capped.timestamps_s[-1] >= 3.75  # first and last quarter
    assert frame_numbers_shown(capped) == capped.indices.tolist()


def test_asking_for_more_frames_than_the_video_has_returns_each_frame_once(make_video):
    frames = sample_frames(make_video(duration_s=1.0, fps=10.0), num_frames=50)
    assert sorted(frame_numbers_shown(frames)) == list(range(10))


def test_max_side_shrinks_frames_and_keeps_their_shape(make_video):
    path = make_video(width=320, height=180, duration_s=1.0)
    frames = sample_frames(path, num_frames=3, max_side=80)
    assert frames.pixels.shape == (3, 45, 80, 3)
    assert frame_numbers_shown(frames) == frames.indices.tolist()
    assert (frames.info.width, frames.info.height) == (320, 180)  # the source, not the sample


@pytest.mark.parametrize("backend", BACKENDS)
def test_portrait_phone_video_comes_out_upright(make_video, backend):
    path = make_video(width=64, height=96, rotation=90, duration_s=2.0)
    info = probe_video(path)
    assert (info.width, info.height) == (64, 96)
    frames = sample_frames(path, num_frames=4, backend=backend)
    assert frames.pixels.shape == (4, 96, 64, 3)
    assert frame_numbers_shown(frames) == frames.indices.tolist()


def test_variable_frame_rate_gives_true_timestamps_and_frame_numbers(make_video):
    shown_at = [0.0, 0.1, 0.15, 0.5, 0.55, 1.2, 1.3, 1.9, 2.0]
    frames = sample_frames(make_video(frame_times_s=shown_at), num_frames=4)
    numbers = frame_numbers_shown(frames)
    assert frames.indices.tolist() == numbers
    assert frames.timestamps_s.tolist() == pytest.approx([shown_at[n] for n in numbers])


@pytest.mark.parametrize("exact", [False, True])
def test_b_frames_do_not_confuse_times_or_numbers(make_video, exact):
    path = make_video(duration_s=4.0, fps=10.0, bframes=2, keyframe_interval_s=1.0)
    frames = sample_frames(path, num_frames=7, exact=exact)
    assert frame_numbers_shown(frames) == frames.indices.tolist()
    assert frames.timestamps_s.tolist() == pytest.approx((frames.indices / 10.0).tolist())
    assert np.abs(frames.timestamps_s - uniform_timestamps(4.0, 7)).max() <= 4.0 / 7 / 2 + 1e-6


def test_a_video_with_sound_samples_like_one_without(make_video):
    path = make_video(duration_s=2.0, with_audio=True)
    frames = sample_frames(path, num_frames=4, exact=True)
    assert frames.indices.tolist() == [2, 7, 12, 17]
    assert frame_numbers_shown(frames) == [2, 7, 12, 17]


def test_segments_of_images_are_shown_for_their_durations(make_video):
    red = np.zeros((40, 40, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((40, 40, 3), np.uint8)
    blue[..., 2] = 255
    path = make_video(segments=[(red, 1.0), (blue, 2.0)], fps=10.0)
    assert probe_video(path).duration_s == pytest.approx(3.0, abs=0.01)
    frames = sample_frames(path, num_frames=3, exact=True)
    mean_colour = frames.pixels.mean(axis=(1, 2))
    assert mean_colour[0, 0] > 200 and mean_colour[0, 2] < 50  # 0.5 s: red
    assert mean_colour[2, 2] > 200 and mean_colour[2, 0] < 50  # 2.5 s: blue


def test_sampling_is_repeatable(tiny_video):
    first = sample_frames(tiny_video, num_frames=5)
    again = sample_frames(tiny_video, num_frames=5)
    assert np.array_equal(first.pixels, again.pixels)
    assert np.array_equal(first.indices, again.indices)


def test_unknown_backend_and_impossible_requests_are_refused(tiny_video):
    with pytest.raises(ValueError, match="backend"):
        sample_frames(tiny_video, backend="opencv")
    with pytest.raises(ValueError, match="num_frames"):
        sample_frames(tiny_video, num_frames=0)
    with pytest.raises(ValueError, match="fps"):
        sample_frames(tiny_video, fps=-1.0)


# ----------------------------------------------------------------------------------------------------------------
# Unusable inputs


@pytest.mark.parametrize("kind", BAD_VIDEO_KINDS)
def test_every_unusable_file_gets_a_clear_message(bad_videos, kind):
    bad = bad_videos[kind]
    for attempt in (lambda: probe_video(bad.path), lambda: sample_frames(bad.path, num_frames=4)):
        with pytest.raises(VideoError) as caught:
            attempt()
        message = str(caught.value)
        assert bad.message.lower() in message.lower()
        assert bad.path.name in message  # says which file
        assert not re.search(r"Errno|0x[0-9a-f]{6,}|Traceback", message)  # written for a person, not a programmer


def test_limits_are_configurable(make_video):
    path = make_video(duration_s=2.0, width=96, height=64)
    with pytest.raises(VideoError, match="96x64"):
        probe_video(path, VideoLimits(max_width=64, max_height=48))
    with pytest.raises(VideoError, match="long"):
        probe_video(path, VideoLimits(max_duration_s=1.0))
    with pytest.raises(VideoError, match="STUDIO_MAX_VIDEO_MB"):
        probe_video(path, VideoLimits(max_bytes=100))
    with pytest.raises(VideoError, match="at most 4"):
        sample_frames(path, num_frames=10, limits=VideoLimits(max_frames_per_request=4))
    with pytest.raises(VideoError, match="max_side"):
        sample_frames(path, num_frames=10, limits=VideoLimits(max_output_bytes=10_000))
    assert len(sample_frames(path, num_frames=10, max_side=16, limits=VideoLimits(max_output_bytes=10_000))) == 10


def test_limits_follow_environment_variables(make_video, monkeypatch):
    path = make_video(duration_s=2.0)
    monkeypatch.setenv("STUDIO_MAX_VIDEO_SECONDS", "1.5")
    with pytest.raises(VideoError, match="STUDIO_MAX_VIDEO_SECONDS"):
        sample_frames(path, num_frames=2)
    monkeypatch.setenv("STUDIO_MAX_VIDEO_SECONDS", "60")
    monkeypatch.setenv("STUDIO_MAX_VIDEO_SIDE", "80")
    with pytest.raises(VideoError, match="STUDIO_MAX_VIDEO_SIDE"):
        probe_video(path)
    monkeypatch.setenv("STUDIO_MAX_VIDEO_SIDE", "a lot")
    with pytest.raises(ValueError, match="STUDIO_MAX_VIDEO_SIDE"):
        VideoLimits.from_env()


@pytest.mark.parametrize("exact", [False, True])
def test_damaged_data_gives_frames_or_a_clear_message_never_a_crash(make_video, exact):
    path = make_video(duration_s=4.0, fps=10.0)
    data = np.frombuffer(path.read_bytes(), dtype=np.uint8).copy()
    rng = np.random.default_rng(7)
    middle = rng.integers(len(data) // 3, 2 * len(data) // 3, size=400)
    data[middle] = rng.integers(0, 256, size=400, dtype=np.uint8)
    path.write_bytes(data.tobytes())
    try:
        frames = sample_frames(path, num_frames=8, exact=exact)
    except VideoError as error:
        assert path.name in str(error)
    else:
        assert frames.pixels.shape == (8, 64, 96, 3)


def test_auto_backend_falls_back_to_decord_when_pyav_cannot_decode(tiny_video, monkeypatch):
    import av

    import models.video as video

    def pyav_fails(*args, **kwargs):
        error = av.error.InvalidDataError(1094995529, "Invalid data found when processing input")
        raise VideoError("cannot decode") from error

    monkeypatch.setattr(video, "_sample_pyav", pyav_fails)
    frames = sample_frames(tiny_video, num_frames=4)
    assert frames.info.backend == "decord"
    assert frame_numbers_shown(frames) == frames.indices.tolist()
    with pytest.raises(VideoError, match="cannot decode"):
        sample_frames(tiny_video, num_frames=4, backend="pyav")

"""Render the example clips in `assets/` and their ground truth `assets/examples.json` from scikit-image photos.

Each clip is a sequence of shots; a shot is one real photo shipped by scikit-image (Chelsea the cat, the coffee
cup, the rocket, ...) filmed by a virtual camera that pans and zooms between keyframes (a Ken Burns move) or holds
still. Consecutive shots are joined by hard cuts at times that fall exactly on frame boundaries, so the cut times
written to `examples.json` are ground truth for scene-change detection, token budgets and attention tests.

The clips are H.264 (yuv420p, 24 fps, 512x384) in mp4 with a keyframe at every cut and at least every two seconds,
so seeking samplers land close to their targets. Rendering is pure arithmetic on fixed photos, so every run gives
the same frames. Run `python assets/make_examples.py` (a few seconds per clip).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import av
import numpy as np
import skimage.data
from PIL import Image

ASSETS_DIR = Path(__file__).resolve().parent
FRAMES_PER_SECOND = 24
# 4:3 like most of the photos. 512 wide on purpose: at 480x360 this x264 build encoded identical input to different
# bitstreams run to run (240-pixel chroma rows are not a multiple of 32 bytes); 512 and 640 wide were stable.
FRAME_WIDTH = 512
FRAME_HEIGHT = 384
KEYFRAME_INTERVAL_FRAMES = 2 * FRAMES_PER_SECOND
# Constant quality: the textured photos (fur, wood grain) stay recognisable while a 10 s clip stays near 300 kB.
X264_CRF = 27


@dataclass(frozen=True)
class CameraKey:
    """Where the virtual camera looks at `time_s` seconds into its shot.

    `center_x`/`center_y` are fractions of the photo's width/height; `zoom` 1.0 frames the largest 4:3 window that
    fits the photo, 2.0 a window half as wide. Windows that would leave the photo are slid back inside it.
    """

    time_s: float
    center_x: float
    center_y: float
    zoom: float


@dataclass(frozen=True)
class Shot:
    photo: str
    subject: str
    duration_s: float
    camera_keys: tuple[CameraKey, ...]


@dataclass(frozen=True)
class ExampleClip:
    file_name: str
    title: str
    shots: tuple[Shot, ...]
    questions: tuple[str, ...]

    @property
    def duration_s(self) -> float:
        return sum(shot.duration_s for shot in self.shots)

    @property
    def cut_times_s(self) -> list[float]:
        shot_starts = np.cumsum([0.0] + [shot.duration_s for shot in self.shots])
        return [float(start) for start in shot_starts[1:-1]]


def load_photo(name: str) -> np.ndarray:
    """An RGB uint8 photo from `skimage.data`, by the name used in `examples.json`."""
    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()


def still(time_s: float, center_x: float, center_y: float, zoom: float) -> CameraKey:
    return CameraKey(time_s, center_x, center_y, zoom)


CHELSEA_FACE = (0.40, 0.45)
COFFEE_CUP = (0.45, 0.33)

EXAMPLE_CLIPS = (
    ExampleClip(
        file_name="cat.mp4",
        title="Chelsea the cat (one shot: zoom in on her face, hold, drift right)",
        shots=(
            Shot(
                "chelsea",
                "Chelsea, a tabby cat, in close-up",
                10.0,
                (
                    still(0.0, 0.5, 0.5, 1.0),
                    still(4.0, *CHELSEA_FACE, 1.35),
                    still(7.0, *CHELSEA_FACE, 1.35),
                    still(10.0, 0.6, 0.5, 1.15),
                ),
            ),
        ),
        questions=("What animal is in the video?", "What colour are the animal's eyes?", "Is there a cut?"),
    ),
    ExampleClip(
        file_name="coffee.mp4",
        title="A cup of espresso (one shot: pull back from the cup to the table)",
        shots=(
            Shot(
                "coffee",
                "an espresso cup on a saucer, with a spoon, on a wooden table",
                8.0,
                (still(0.0, *COFFEE_CUP, 1.6), still(5.0, 0.5, 0.5, 1.0), still(8.0, 0.55, 0.5, 1.05)),
            ),
        ),
        questions=("What drink is shown?", "What is the cup standing on?", "What object is next to the cup?"),
    ),
    ExampleClip(
        file_name="cat_then_coffee.mp4",
        title="The cat, then a hard cut to a cup of coffee",
        shots=(
            Shot(
                "chelsea",
                "Chelsea, a tabby cat, in close-up",
                5.0,
                (still(0.0, 0.5, 0.5, 1.0), still(5.0, *CHELSEA_FACE, 1.25)),
            ),
            Shot(
                "coffee",
                "an espresso cup on a saucer on a wooden table",
                5.0,
                (still(0.0, *COFFEE_CUP, 1.3), still(5.0, 0.5, 0.5, 1.0)),
            ),
        ),
        questions=(
            "What animal is in the video?",
            "What happens after the cut?",
            "What is shown first and what is shown second?",
        ),
    ),
    ExampleClip(
        file_name="montage.mp4",
        title="Montage: rocket, astronaut, cat (held still), coffee, motorcycle",
        shots=(
            Shot(
                "rocket",
                "a Falcon 9 rocket on its launch pad at dusk",
                3.5,
                (still(0.0, 0.5, 0.8, 1.8), still(3.5, 0.5, 0.3, 1.8)),
            ),
            Shot(
                "astronaut",
                "astronaut Eileen Collins in an orange flight suit",
                3.5,
                (still(0.0, 0.5, 0.5, 1.0), still(3.5, 0.45, 0.3, 1.35)),
            ),
            Shot(
                "chelsea",
                "Chelsea, a tabby cat, in close-up (camera still, then a zoom)",
                5.0,
                (still(0.0, *CHELSEA_FACE, 1.1), still(3.5, *CHELSEA_FACE, 1.1), still(5.0, *CHELSEA_FACE, 1.4)),
            ),
            Shot(
                "coffee",
                "an espresso cup on a saucer on a wooden table",
                3.0,
                (still(0.0, 0.42, 0.45, 1.2), still(3.0, 0.55, 0.4, 1.2)),
            ),
            Shot(
                "motorcycle",
                "a red motorcycle parked in a garage",
                3.0,
                (still(0.0, 0.38, 0.6, 1.3), still(3.0, 0.52, 0.6, 1.3)),
            ),
        ),
        questions=(
            "What animal appears in the video?",
            "List the things shown, in order.",
            "What is shown right after the astronaut?",
        ),
    ),
    ExampleClip(
        file_name="static_cat.mp4",
        title="Chelsea the cat for 18 s with only a slow zoom (as long as the montage, no cuts)",
        shots=(
            Shot(
                "chelsea",
                "Chelsea, a tabby cat, in close-up",
                18.0,
                (still(0.0, 0.48, 0.48, 1.0), still(18.0, 0.45, 0.47, 1.15)),
            ),
        ),
        questions=("What animal is in the video?", "Does the scene change?"),
    ),
)


def smoothstep(fraction: float) -> float:
    # Zero velocity at each key, so moves ease in and out and a repeated key is a true hold.
    return fraction * fraction * (3.0 - 2.0 * fraction)


def camera_at(keys: tuple[CameraKey, ...], time_s: float) -> CameraKey:
    if time_s <= keys[0].time_s:
        return keys[0]
    for start, end in pairwise(keys):
        if time_s <= end.time_s:
            weight = smoothstep((time_s - start.time_s) / (end.time_s - start.time_s))
            return CameraKey(
                time_s,
                center_x=start.center_x + (end.center_x - start.center_x) * weight,
                center_y=start.center_y + (end.center_y - start.center_y) * weight,
                zoom=start.zoom + (end.zoom - start.zoom) * weight,
            )
    return keys[-1]


def crop_box(photo_width: int, photo_height: int, camera: CameraKey) -> tuple[float, float, float, float]:
    """The (left, top, right, bottom) window of the photo, in photo pixels, that the camera sees."""
    aspect = FRAME_WIDTH / FRAME_HEIGHT
    full_width = min(photo_width, photo_height * aspect)
    window_width = full_width / camera.zoom
    window_height = window_width / aspect
    left = np.clip(camera.center_x * photo_width - window_width / 2, 0.0, photo_width - window_width)
    top = np.clip(camera.center_y * photo_height - window_height / 2, 0.0, photo_height - window_height)
    return float(left), float(top), float(left + window_width), float(top + window_height)


def prepare_photo(pixels: np.ndarray) -> Image.Image:
    # Photos much larger than the frame are reduced once with a proper low-pass filter, so pans do not shimmer.
    photo = Image.fromarray(pixels).convert("RGB")
    full_width = min(photo.width, photo.height * FRAME_WIDTH / FRAME_HEIGHT)
    scale = 1.3 * FRAME_WIDTH / full_width
    if scale < 1.0:
        photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.LANCZOS)
    return photo


def render_shot_frames(shot: Shot):
    """Yield the shot's frames as (FRAME_HEIGHT, FRAME_WIDTH, 3) uint8 arrays."""
    photo = prepare_photo(load_photo(shot.photo))
    num_frames = round(shot.duration_s * FRAMES_PER_SECOND)
    for frame_index in range(num_frames):
        camera = camera_at(shot.camera_keys, frame_index / FRAMES_PER_SECOND)
        box = crop_box(photo.width, photo.height, camera)
        view = photo.transform((FRAME_WIDTH, FRAME_HEIGHT), Image.Transform.EXTENT, box, Image.Resampling.BICUBIC)
        yield np.asarray(view)


def write_clip(clip: ExampleClip, output_path: Path) -> None:
    for shot in clip.shots:
        if abs(shot.duration_s * FRAMES_PER_SECOND - round(shot.duration_s * FRAMES_PER_SECOND)) > 1e-9:
            raise ValueError(f"{clip.file_name}: shot of {shot.duration_s} s is not a whole number of frames")
    with av.open(str(output_path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=FRAMES_PER_SECOND)
        stream.width = FRAME_WIDTH
        stream.height = FRAME_HEIGHT
        stream.pix_fmt = "yuv420p"
        stream.options = {
            "crf": str(X264_CRF),
            "preset": "slow",
            "g": str(KEYFRAME_INTERVAL_FRAMES),
            "forced-idr": "1",
        }
        # x264's bitstream depends on how many threads share the work; one thread gives the same bytes on any machine.
        stream.codec_context.thread_count = 1
        frame_index = 0
        for shot in clip.shots:
            for shot_frame_index, pixels in enumerate(render_shot_frames(shot)):
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts = frame_index
                frame.time_base = Fraction(1, FRAMES_PER_SECOND)
                if shot_frame_index == 0:
                    frame.pict_type = av.video.frame.PictureType.I
                for packet in stream.encode(frame):
                    container.mux(packet)
                frame_index += 1
        for packet in stream.encode():
            container.mux(packet)


def still_spans(clip: ExampleClip) -> list[list[float]]:
    """Stretches where the camera holds still inside one shot, as [start_s, end_s] in clip time."""
    spans = []
    shot_start_s = 0.0
    for shot in clip.shots:
        for start, end in pairwise(shot.camera_keys):
            if (start.center_x, start.center_y, start.zoom) == (end.center_x, end.center_y, end.zoom):
                spans.append([shot_start_s + start.time_s, shot_start_s + end.time_s])
        shot_start_s += shot.duration_s
    return spans


def clip_record(clip: ExampleClip, output_dir: Path) -> dict:
    shot_starts = [0.0, *clip.cut_times_s]
    return {
        "file": clip.file_name,
        "title": clip.title,
        "duration_s": clip.duration_s,
        "fps": FRAMES_PER_SECOND,
        "width": FRAME_WIDTH,
        "height": FRAME_HEIGHT,
        "size_bytes": (output_dir / clip.file_name).stat().st_size,
        "photos": list(dict.fromkeys(shot.photo for shot in clip.shots)),
        "cut_times_s": clip.cut_times_s,
        "shots": [
            {"start_s": start, "end_s": start + shot.duration_s, "photo": shot.photo, "subject": shot.subject}
            for start, shot in zip(shot_starts, clip.shots, strict=True)
        ],
        "still_spans_s": still_spans(clip),
        "questions": list(clip.questions),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=ASSETS_DIR)
    parser.add_argument("--only", nargs="*", help="file names to render (default: all); examples.json lists all")
    args = parser.parse_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for clip in EXAMPLE_CLIPS:
        if args.only and clip.file_name not in args.only:
            continue
        write_clip(clip, args.output_dir / clip.file_name)
        size_kb = (args.output_dir / clip.file_name).stat().st_size / 1000
        print(f"{clip.file_name}: {clip.duration_s:.1f} s, {size_kb:.0f} kB, cuts at {clip.cut_times_s}")
    records = [clip_record(clip, args.output_dir) for clip in EXAMPLE_CLIPS]
    examples = {
        "generator": "assets/make_examples.py",
        "image_sources": "assets/SOURCES.md",
        "cut_time_meaning": "time of the first frame of the new shot (a frame boundary)",
        "still_span_meaning": "[start_s, end_s] inside one shot where the camera does not move",
        "clips": records,
    }
    (args.output_dir / "examples.json").write_text(json.dumps(examples, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

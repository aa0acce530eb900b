"""The chat request an engine gets: the studio's sampled frames as JPEGs inside OpenAI-style content parts.

`video` input is vLLM's frame list: one `video_url` part whose URL is `data:video/jpeg;base64,<f1>,<f2>,...` (the
frames in order), with the request's `media_io_kwargs` saying how to read it: `num_frames` in the list,
`frames_indices` in the source, and the source's `fps`, `total_num_frames` and `duration`, from which the server's
processor turns indices into times, so the model reads the times the studio sampled rather than a rate it would
assume. `images` input sends one `image_url` part per frame, each preceded by its time, for servers whose model
takes images only. The frames travel at most `max_side` pixels on their longest side (the server's processor
resizes anyway; smaller JPEGs keep requests small).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

JPEG_QUALITY = 90


@dataclass(frozen=True)
class FrameSelection:
    """The frames an engine is sent. pixels: (T, H, W, 3) uint8; indices: source frame numbers; timestamps_s: times;
    source_fps / source_frames / source_duration_s: the source video's rate, frame count and length."""

    pixels: np.ndarray
    indices: list[int]
    timestamps_s: list[float]
    source_fps: float
    source_frames: int
    source_duration_s: float


def jpeg_base64(frame: np.ndarray, max_side: int | None = None) -> str:
    """One (H, W, 3) uint8 frame as base64 JPEG text, shrunk to `max_side` on its longest side when larger."""
    image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
    if max_side and max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def video_data_url(selection: FrameSelection, max_side: int | None = None) -> str:
    """vLLM's frame list: `data:video/jpeg;base64,` then the frames' base64 JPEGs joined by commas, in order."""
    return "data:video/jpeg;base64," + ",".join(jpeg_base64(frame, max_side) for frame in selection.pixels)


def media_io_kwargs(selection: FrameSelection) -> dict[str, Any]:
    """The request's `media_io_kwargs`: how many frames the list holds, the source's rate, frame count and length,
    and the sent frames' numbers in the source."""
    total = max(int(selection.source_frames), int(max(selection.indices, default=0)) + 1, len(selection.indices))
    return {
        "video": {
            "num_frames": len(selection.indices),  # vLLM keeps only the first 32 frames of a list by default
            "fps": float(selection.source_fps or 1.0),
            "frames_indices": [int(i) for i in selection.indices],
            "total_num_frames": total,
            "duration": float(max(0.0, selection.source_duration_s)),
        }
    }


def visual_parts(selection: FrameSelection, input_kind: str, max_side: int | None = None) -> list[dict[str, Any]]:
    """The content parts that carry the frames: one `video_url`, or a time label and an `image_url` per frame."""
    if input_kind == "video":
        return [{"type": "video_url", "video_url": {"url": video_data_url(selection, max_side)}}]
    if input_kind != "images":
        raise ValueError(f"frames go to an engine as 'video' or 'images', not {input_kind!r}")
    parts: list[dict[str, Any]] = []
    for frame, time_s in zip(selection.pixels, selection.timestamps_s):
        parts.append({"type": "text", "text": f"Frame at {time_s:.1f} s:"})
        url = "data:image/jpeg;base64," + jpeg_base64(frame, max_side)
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def chat_request(
    model: str,
    messages: list[dict[str, Any]],
    generation: dict[str, Any],
    selection: FrameSelection | None = None,
    input_kind: str = "video",
) -> dict[str, Any]:
    """The body of a streaming `/chat/completions` request, with usage in the last chunk (and per-frame timing for a
    video)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        **generation,
    }
    if selection is not None and input_kind == "video":
        body["media_io_kwargs"] = media_io_kwargs(selection)
    return body


def with_frames(
    messages: list[dict[str, Any]], selection: FrameSelection, input_kind: str, max_side: int | None = None
) -> list[dict[str, Any]]:
    """`messages` with the frames put before the text of the first user message (the turn that asks about the
    video), so follow-up turns share the same prefix on the server."""
    out = [dict(message) for message in messages]
    for message in out:
        if message["role"] == "user":
            text = message["content"]
            message["content"] = [*visual_parts(selection, input_kind, max_side), {"type": "text", "text": text}]
            break
    return out

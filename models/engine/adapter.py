"""A remote video model as a `VideoLLM`: the studio samples and allocates frames, the engine runs the model.

encode: the pooled frames are planned into clips (`models/engine/allocate.py`) and the frames each clip is given
are kept as the payload; the Compression view shows them per clip, in frames. stream: the conversation goes to the
engine with the frames in its first user turn (`models/engine/payload.py`), the answer streams back, and the token
counts the server reports replace the frame counts: each clip is credited with its frames' share of the visual
tokens when the server reports them per modality. There is no attention from a remote engine; the attention view
says so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from models.base import Answer, Attention, ClipBudget, EncodeParams, Frames, GenerationParams, Message, TokenStats
from models.base import VisualContext as Context
from models.compression import split_by_weights
from models.engine.allocate import chosen_positions, plan_frames
from models.engine.client import EngineClient, Usage
from models.engine.config import EngineConfig
from models.engine.payload import FrameSelection, chat_request, with_frames
from models.thumbnails import thumbnails

NO_ATTENTION = (
    "Attention is not available from a remote engine: OpenAI-compatible servers return text and token counts, never "
    "attention weights. Run the model in the studio to see where it looked."
)


def remote_attention() -> Attention:
    """An empty attention whose source line is the reason the view has nothing to draw."""
    return Attention(frame_weights=np.zeros(0), source=NO_ATTENTION)


def generation_body(params: GenerationParams) -> dict[str, Any]:
    """The sampling fields of a chat request (greedy when temperature is 0)."""
    body: dict[str, Any] = {"max_tokens": int(params.max_new_tokens), "temperature": float(params.temperature)}
    if params.temperature > 0:
        body.update(top_p=float(params.top_p), seed=int(params.seed))
    return body


def served_model(client: EngineClient) -> str:
    """The configured model id, else the first model the server lists (an unreachable server: `EngineError`)."""
    if client.config.model:
        return client.config.model
    problem = client.problem()
    if problem:
        raise client.error(problem)
    return client.models()[0]


class EngineVideoLLM:
    """A model behind an OpenAI-compatible server, fed the studio's frames as a video or as images."""

    def __init__(self, config: EngineConfig, name: str | None = None, client: EngineClient | None = None):
        self.name = name or config.name
        self.config = config
        self.decode_max_side = 448  # what the frames travel at (the server's processor resizes them anyway)
        self.client = client or EngineClient(config)
        self.model_id = served_model(self.client)

    def encode(self, frames: Frames, params: EncodeParams, video_sha256: str) -> Context:
        started = time.perf_counter()
        plan = plan_frames(frames, params.compressor, params.budget_pct)
        positions = chosen_positions(plan)
        duration = frames.info.duration_s
        pool_clips = plan.to_clip_budgets(frames.timestamps_s, duration)
        clips = [_sent_clip(clip, positions) for clip in pool_clips]
        sent = frames.pixels[positions]
        selection = FrameSelection(
            pixels=sent,
            indices=[int(frames.indices[p]) for p in positions],
            timestamps_s=[float(frames.timestamps_s[p]) for p in positions],
            source_fps=float(frames.info.fps),
            source_frames=int(frames.info.num_frames),
            source_duration_s=float(duration),
        )
        stats = TokenStats(
            clips=clips,
            global_budget=plan.effective_budget,
            compressor=plan.compressor,
            budget_pct=plan.budget_pct,
            official_tokens=len(frames),
            native_tokens=len(frames),
            fast_tokens=len(positions),
            per_frame_fast=[1] * len(positions),
            unit="frames",
            note=f"frames sent to the engine: {len(positions)} of the {len(frames)} sampled ({plan.compressor}); "
            "the engine's own tokens per frame show after its first answer",
            timings_s={"allocate_frames": time.perf_counter() - started},
        )
        return Context(
            model_name=self.name,
            video_sha256=video_sha256,
            params=params,
            frame_indices=selection.indices,
            timestamps_s=selection.timestamps_s,
            thumbnails=thumbnails(torch.from_numpy(np.ascontiguousarray(sent)).permute(0, 3, 1, 2)),
            stats=stats,
            payload=selection,
            info=frames.info,
        )

    def stream(
        self,
        context: Context | None,
        history: list[Message],
        question: str,
        params: GenerationParams,
        want_attention: bool = True,
    ) -> Iterator[str | Answer]:
        messages: list[dict[str, Any]] = [*history, {"role": "user", "content": question}]
        selection = context.payload if context is not None else None
        if selection is not None:
            messages = with_frames(messages, selection, self.config.input, self.decode_max_side)
        body = chat_request(self.model_id, messages, generation_body(params), selection, self.config.input)
        text, usage, timings = yield from stream_text(self.client, body)
        stats = TokenStats()
        if context is not None:
            context.stats = stats = reported_stats(context.stats, usage)
        yield engine_answer(text, usage, timings, stats, with_video=context is not None)


def engine_answer(text: str, usage: Usage, timings: dict[str, float], stats: TokenStats, with_video: bool) -> Answer:
    """The one `Answer` an engine's stream ends with: the server's token counts, no attention (it returns none)."""
    return Answer(
        text=text.strip(),
        attention=remote_attention() if with_video else None,
        stats=stats,
        timings_s=timings,
        prompt_tokens=usage.prompt_tokens,
        new_tokens=usage.completion_tokens,
    )


def stream_text(client: EngineClient, body: dict[str, Any]):
    """Relay a streamed answer's text; returns (text, usage, timings with first_token and generate seconds)."""
    started = time.perf_counter()
    parts: list[str] = []
    usage, first_token_s = Usage(), None
    for item in client.stream_chat(body):
        if isinstance(item, Usage):
            usage = item
            continue
        if first_token_s is None:
            first_token_s = time.perf_counter() - started
        parts.append(item)
        yield item
    timings = {"first_token": first_token_s or 0.0, "generate": time.perf_counter() - started}
    return "".join(parts), usage, timings


def _sent_clip(clip: ClipBudget, positions: list[int]) -> ClipBudget:
    """A pool clip re-indexed onto the sent frames: its positions among them and its frame counts."""
    members = set(clip.frame_positions)
    sent = [i for i, p in enumerate(positions) if p in members]
    text = f"{len(sent)} of {len(clip.frame_positions)} sampled frames sent"
    return replace(clip, frame_positions=sent, used_tokens=len(sent), text=text)


def reported_stats(stats: TokenStats, usage: Usage) -> TokenStats:
    """The clips' counts in the tokens the server reported for the frames (split by frames sent per clip), or the
    frame counts with the prompt total in the note when it reports no per-modality split."""
    visual = usage.visual_tokens()
    frames_per_clip = [len(clip.frame_positions) for clip in stats.clips]
    if not usage.reported:
        return replace(stats, note=stats.note.split(";")[0] + "; the engine reported no token counts")
    if not visual:
        note = (
            f"{sum(frames_per_clip)} frames sent; the engine reported {usage.prompt_tokens} prompt tokens in all "
            "(text and frames) and no per-modality split (vLLM: --enable-prompt-tokens-details)"
        )
        return replace(stats, note=note)
    per_clip = split_by_weights(visual, frames_per_clip)
    baseline = split_by_weights(visual, [1] * len(per_clip))
    clips = [
        replace(
            clip, budget=tokens, used_tokens=tokens, baseline_budget=base, text=f"{n} frames sent · {tokens} tokens"
        )
        for clip, tokens, base, n in zip(stats.clips, per_clip, baseline, frames_per_clip)
    ]
    per_frame = visual / max(1, sum(frames_per_clip))
    return replace(
        stats,
        clips=clips,
        unit="tokens",
        global_budget=visual,
        fast_tokens=visual,
        per_frame_fast=[],
        note=f"{sum(frames_per_clip)} frames sent; the engine reported {visual} visual tokens ({per_frame:.0f} per "
        f"frame) of {usage.prompt_tokens} prompt tokens",
    )


def load(name: str, config: EngineConfig) -> EngineVideoLLM:
    return EngineVideoLLM(config, name=name)

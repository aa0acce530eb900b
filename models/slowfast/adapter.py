"""The Slow-Fast model behind the studio's `VideoLLM` protocol: encode once, then chat with streaming answers.

`encode` preprocesses the sampled frames, runs the vision tower once and keeps the fast and slow tokens in the
`VisualContext` (the studio caches it per video, so follow-up questions never re-run the tower). `stream`
builds the ChatML prompt from the history (the video placeholder sits in the first user turn), generates with
the KV cache and yields text as it comes, then an `Answer` with token stats and, when asked, the hybrid layers'
cross-attention from the question's tokens to the slow tokens: per frame and per cell of the 9x9 grid.
A conversation without a video is plain Qwen2 chat (the official code crashes there).

The GPU work (the tower, then prefill, decode and the attention maps of one answer) runs in two `gpu_task`s of
`models.zerogpu`, which take and return only CPU data and find the model by name: on a ZeroGPU Space they run in
ZeroGPU's worker process, each asking for the seconds its work needs.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator

import numpy as np
import torch

from models.base import (
    Answer,
    Attention,
    EncodeParams,
    Frames,
    GenerationParams,
    Message,
    TokenStats,
    VideoError,
    VisualContext,
    input_fingerprint,
    own_payload,
)
from models.compression import PLANNER_COMPRESSORS, TRAINING_FREE_NOTE, Describe, check_compressor
from models.experts import load_expert
from models.experts.base import describe_clips
from models.slowfast.generation import generate
from models.slowfast.modeling import PromptInputs, SlowFastForCausalLM, VideoTokens
from models.slowfast.preprocessing import normalize, resize_short_side_and_crop
from models.slowfast.prompting import (
    DEFAULT_SYSTEM_PROMPT,
    TokenizedPrompt,
    assembled_position,
    render_chatml,
    sanitize_user_text,
    tokenize_with_placeholder,
)
from models.thumbnails import thumbnails
from models.zerogpu import gpu_seconds, gpu_task, live_model, model_billions, register_live

logger = logging.getLogger(__name__)


def _encode_seconds(model_name: str, pixel_values: torch.Tensor, *args: object, **kwargs: object) -> int:
    """ZeroGPU calls this with `_encode_on_device`'s own arguments: (T, 3, S, S) pixels."""
    frames, _, height, width = (int(v) for v in pixel_values.shape)
    return gpu_seconds(frames=frames, frame_pixels=height * width, billions=model_billions(model_name))


def _generate_seconds(
    model_name: str, prompt: TokenizedPrompt, video: VideoTokens | None, params: GenerationParams, *args, **kwargs
) -> int:
    """ZeroGPU calls this with `_generate_on_device`'s own arguments (the last one: want_attention)."""
    want_attention = bool(args[0] if args else kwargs.get("want_attention", False))
    visual = 0 if video is None else int(video.fast_tokens.shape[0]) + int(video.slow_tokens.shape[0])
    return gpu_seconds(
        prompt_tokens=len(prompt.input_ids) + visual,
        new_tokens=int(params.max_new_tokens),
        attention=want_attention and video is not None,
        billions=model_billions(model_name),
    )


@gpu_task(duration=_encode_seconds)
def _encode_on_device(
    model_name: str,
    pixel_values: torch.Tensor,
    compressor: str,
    budget_pct: float,
    timestamps_s: list[float],
    describe: Describe | None = None,
) -> VideoTokens:
    adapter = live_model(model_name)
    return adapter.model.encode_video(
        pixel_values,
        frames_per_chunk=adapter.frames_per_chunk,
        compressor=compressor,
        budget_pct=budget_pct,
        timestamps_s=timestamps_s,
        describe=describe,
    )


@gpu_task(duration=_generate_seconds)
def _generate_on_device(
    model_name: str, prompt: TokenizedPrompt, video: VideoTokens | None, params: GenerationParams, want_attention: bool
) -> Iterator[tuple[str, object]]:
    """Yield ("prompt", length), then ("attention", (Nq, Nv) array) if asked, then ("token", id) per new token."""
    adapter = live_model(model_name)
    model = adapter.model
    inputs = model.embed_prompt(prompt.input_ids, video.fast_tokens if video is not None else None)
    yield "prompt", inputs.inputs_embeds.shape[1]
    record_rows = _question_rows(prompt, inputs, video) if want_attention and video is not None else None
    steps = generate(
        model,
        inputs,
        video,
        max_new_tokens=params.max_new_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        seed=params.seed,
        stop_token_ids=adapter.stop_token_ids,
        prefill_only_cross_attention=adapter.prefill_only_cross_attention,
        record_rows=record_rows,
    )
    for step in steps:
        if step.cross_attention:  # (Nq, Nv) per hybrid layer -> their mean
            yield "attention", torch.stack(list(step.cross_attention.values())).mean(0).float().cpu().numpy()
        yield "token", step.token_id


def _question_rows(prompt: TokenizedPrompt, inputs: PromptInputs, video: VideoTokens) -> list[int]:
    """Rows of the assembled prompt that hold the question; every text row if it cannot be found (or was cut)."""
    num_fast = video.fast_tokens.shape[0]
    rows = [assembled_position(p, prompt.placeholder_index, num_fast) for p in prompt.question_positions]
    rows = [row for row in rows if row < inputs.token_types.shape[0]]
    return rows if len(rows) == len(prompt.question_positions) and rows else inputs.text_rows.tolist()


def _note(plan, grid_tokens: int) -> str:
    """One honest line for the chart: what the fast tokens are and whether the checkpoint ever saw such input."""
    if plan.compressor == "official":
        return "official fast tokens: the rule the checkpoint was trained with; slow tokens are never compressed"
    what = f"{plan.compressor} merging at {plan.budget_pct:g}% of its {plan.official_tokens} fast tokens"
    note = TRAINING_FREE_NOTE.format(what=what)
    if plan.effective_budget < plan.global_budget:
        note += (
            f"; the budget of {plan.global_budget} exceeds the {grid_tokens} tokens these frames hold, so "
            f"{plan.effective_budget} were used"
        )
    return note


def _timings(total_s: float, captioned) -> dict[str, float]:
    """Encode timings: the language expert's seconds (`langdc`) apart from the rest of the encode."""
    if captioned is None:
        return {"encode": total_s}
    return {"encode": total_s - captioned.seconds, "language_expert": captioned.seconds}


class SlowFastVideoLLM:
    """A loaded Slow-Fast checkpoint speaking the studio's `VideoLLM` protocol."""

    def __init__(
        self,
        name: str,
        model: SlowFastForCausalLM,
        tokenizer,
        *,
        stop_token_ids: tuple[int, ...] = (),
        prefill_only_cross_attention: bool = True,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        frames_per_chunk: int = 8,
    ):
        self.name = name
        self.decode_max_side = 1024  # preprocessing resizes the short side to 576: decode big enough for that
        self.model = model
        self.tokenizer = tokenizer
        self.stop_token_ids = tuple(stop_token_ids) or tuple(
            token_id for token_id in (tokenizer.eos_token_id,) if token_id is not None
        )
        self.prefill_only_cross_attention = prefill_only_cross_attention
        self.system_prompt = system_prompt
        self.frames_per_chunk = frames_per_chunk
        register_live(name, self, model)

    @property
    def training_frames(self) -> int | None:
        return self.model.config.mm_training_video_frames

    def encode(self, frames: Frames, params: EncodeParams, video_sha256: str) -> VisualContext:
        num_frames = len(frames)
        if num_frames == 0:
            raise VideoError("no frames could be read from this video")
        if self.training_frames and num_frames != self.training_frames:
            warnings.warn(
                f"{self.name} was trained with {self.training_frames} frames per video but got {num_frames}; "
                "answers may be worse (the official demos always sample exactly that many)",
                stacklevel=2,
            )
        check_compressor(params.compressor, PLANNER_COMPRESSORS)
        start = time.perf_counter()
        crops = resize_short_side_and_crop(frames.pixels, self.model.config.image_size)  # (T, 3, S, S) uint8
        timestamps = [float(t) for t in frames.timestamps_s]
        describe, captioned = (None, None)
        if params.compressor == "langdc":  # the language expert reads the sampled frames, inside the encode
            describe, captioned = describe_clips(load_expert(params.expert, host=self), frames)
        video = _encode_on_device(
            self.name, normalize(crops), params.compressor, params.budget_pct, timestamps, describe
        )
        grid = self.model.config.image_size // 32
        slow_per_frame = video.slow_grid[0] * video.slow_grid[1]
        plan = video.compression
        stats = TokenStats(
            clips=plan.to_clip_budgets(timestamps, frames.info.duration_s),
            global_budget=plan.effective_budget,
            slow_tokens=num_frames * slow_per_frame,
            fast_tokens=int(video.fast_tokens.shape[0]),
            per_frame_slow=[slow_per_frame] * num_frames,
            per_frame_fast=list(video.fast_per_frame),
            native_tokens=num_frames * grid * grid,  # the tower's own grid, before any pooling
            timings_s=_timings(time.perf_counter() - start, captioned),
            compressor=plan.compressor,
            budget_pct=plan.budget_pct,
            official_tokens=video.fast_plan.num_fast_tokens,
            note=_note(plan, num_frames * slow_per_frame),
        )
        return VisualContext(
            model_name=self.name,
            video_sha256=video_sha256,
            params=params,
            frame_indices=[int(i) for i in frames.indices],
            timestamps_s=[float(t) for t in frames.timestamps_s],
            thumbnails=thumbnails(crops, "area"),
            stats=stats,
            payload=video,
            info=frames.info,
            fingerprint=input_fingerprint(
                video.fast_tokens.detach().float().cpu().numpy(), video.slow_tokens.detach().float().cpu().numpy()
            ),
        )

    def stream(
        self,
        context: VisualContext | None,
        history: list[Message],
        question: str,
        params: GenerationParams,
        want_attention: bool = True,
    ) -> Iterator[str | Answer]:
        start = time.perf_counter()
        video = self._video_of(context)
        prompt = self._fit_prompt(history, question, video)
        new_ids: list[int] = []
        emitted = ""
        question_attention = None
        prompt_length = 0
        first_token_s = None
        for kind, value in _generate_on_device(self.name, prompt, video, params, want_attention):
            if kind == "prompt":
                prompt_length = value
            elif kind == "attention":
                question_attention = value
            elif value not in self.stop_token_ids:
                first_token_s = first_token_s or time.perf_counter() - start
                new_ids.append(value)
                text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
                if not text.endswith("\ufffd") and len(text) > len(emitted):  # hold back half a UTF-8 character
                    yield text[len(emitted) :]
                    emitted = text
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        if len(text) > len(emitted):
            yield text[len(emitted) :]
        attention = None
        if question_attention is not None:
            attention = self._attention_view(question_attention, prompt, video, context)
        total = time.perf_counter() - start
        yield Answer(
            text=text.strip(),
            attention=attention,
            stats=context.stats if context is not None else TokenStats(),
            timings_s={"first_token": first_token_s or total, "generate": total},
            prompt_tokens=prompt_length,
            new_tokens=len(new_ids),
        )

    # ------------------------------------------------------------------------------------------------------------

    def _video_of(self, context: VisualContext | None) -> VideoTokens | None:
        return own_payload(context, self.name, VideoTokens)

    def _fit_prompt(self, history: list[Message], question: str, video: VideoTokens | None) -> TokenizedPrompt:
        """The prompt, dropping the oldest turns while it would exceed the model's `tokenizer_model_max_length`
        (the official model would instead cut the end of the prompt: the question itself)."""
        turns = [{"role": message["role"], "content": sanitize_user_text(message["content"])} for message in history]
        question = sanitize_user_text(question)
        cap = self.model.config.tokenizer_model_max_length
        num_fast = video.fast_tokens.shape[0] if video is not None else 0
        while True:
            text, span = render_chatml(turns, question, video is not None, self.system_prompt)
            prompt = tokenize_with_placeholder(text, self.tokenizer, span)
            length = len(prompt.input_ids) + (num_fast - 1 if video is not None else 0)
            dialogue = [i for i, turn in enumerate(turns) if turn["role"] != "system"]
            if not cap or length <= cap or not dialogue:
                if cap and length > cap:
                    logger.warning("prompt of %d rows exceeds the model's cap of %d; its end is cut", length, cap)
                return prompt
            for index in reversed(dialogue[:2]):  # the oldest exchange; the placeholder moves to the next user turn
                del turns[index]

    def _attention_view(
        self, weights: np.ndarray, prompt: TokenizedPrompt, video: VideoTokens, context: VisualContext
    ) -> Attention:
        """(Nq, Nv) weights -> per-frame weights (sum 1), per-token rows and per-frame (h, w) maps in [0, 1]."""
        height, width = video.slow_grid
        per_cell = weights.reshape(weights.shape[0], video.num_frames, height, width)  # (Nq, T, h, w)
        token_frame = per_cell.sum(axis=(2, 3))
        token_frame = token_frame / token_frame.sum(axis=1, keepdims=True)
        frame_weights = token_frame.mean(axis=0)
        maps = per_cell.mean(axis=0)  # (T, h, w)
        peaks = maps.reshape(video.num_frames, -1).max(axis=1).reshape(-1, 1, 1)
        maps = maps / np.maximum(peaks, 1e-12)
        question_ids = [prompt.input_ids[p] for p in prompt.question_positions]
        tokens = [self.tokenizer.decode([token_id]) for token_id in question_ids]
        if len(tokens) != token_frame.shape[0]:
            tokens = [f"text row {i}" for i in range(token_frame.shape[0])]
        layers = self.model.config.hybrid_layer_indices
        return Attention(
            frame_weights=frame_weights / frame_weights.sum(),
            tokens=tokens,
            token_frame_weights=token_frame,
            spatial={position: maps[position] for position in range(video.num_frames)},
            rows="question",  # the hybrid layers' cross-attention is recorded at the question's rows
            source=(
                f"cross-attention from the question's tokens to the slow tokens ({height}x{width} per frame) in "
                f"hybrid layers {layers}, averaged over heads and layers"
            ),
        )

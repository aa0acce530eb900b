"""The engine shared by the three HF family adapters: load, encode once, splice, stream with a reused KV cache.

A family adapter (qwen2_5_vl.py, llava_onevision.py, smolvlm2.py) says four things: how frames become pixel
tensors, how pixels become a grid of visual tokens per LLM frame (computed once per video and kept in the
`VisualContext`), how the video block is written in the prompt (placeholder rows, per-frame text), and, for
Qwen2.5-VL, the 3-D positions of each kept token. Everything else is here: the compressor call (the grid goes
through `official`, `uniform`, `dynamic` or `sf-llava`), the prompt with the chosen tokens scattered into the
placeholder rows, a decode loop over the family's own language model and `lm_head` (so positions stay ours and the
cache can be kept between turns), streaming token by token, and an eager scoring pass over the answer tokens alone
(the cache holds the prompt) for attention from answer to frames. The GPU halves (`encode_tokens`, `generate_steps`)
run as `models.zerogpu` tasks that take and return CPU data, so on a ZeroGPU Space every family gets a GPU per call
with a duration sized from its frames and tokens; there the KV cache lives only as long as one answer.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.base import (
    Answer,
    Attention,
    EncodeParams,
    Frames,
    GenerationParams,
    Message,
    ModelUnavailableError,
    TokenStats,
    VideoError,
    VisualContext,
    input_fingerprint,
    own_payload,
)
from models.experts import load_expert
from models.experts.base import describe_clips
from models.hf.compressors import VisualTokens, compress_grids, grid_tokens
from models.hf.preprocessing import pil_resize
from models.hub import resolve_folder
from models.thumbnails import thumbnails
from models.zerogpu import gpu_seconds, gpu_task, live_model, model_billions, on_zero_gpu, register_live

logger = logging.getLogger(__name__)
SCORED_ANSWER_TOKENS = 64  # the attention pass scores at most this many answer tokens
KEPT_INFO = ("llm_frame_positions", "frames_seen", "second_per_grid", "extras")  # from `_family_encode`'s info


@dataclass
class HFPayload:
    """What `encode` keeps for a video: the chosen tokens and how LLM frames map to sampled frames."""

    visual: VisualTokens
    grid_hw: tuple[int, int]  # the LLM grid of one frame (after merging/pooling), before compression
    llm_frame_positions: list[list[int]]  # sampled-frame positions behind each LLM frame (Qwen: 2 per frame)
    timestamps_s: list[float]  # per sampled frame
    duration_s: float
    second_per_grid: float = 1.0  # Qwen: seconds between LLM frames (temporal patch / sampling fps)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def num_llm_frames(self) -> int:
        return len(self.llm_frame_positions)


@dataclass
class EncodedVideo:
    """What the GPU half of `encode` hands back: the chosen tokens, the compressor's plan and what the payload and
    thumbnails need (`info`: llm_frame_positions, frames_seen, second_per_grid, extras; no pixel tensors)."""

    visual: VisualTokens
    grid_hw: tuple[int, int]
    official_tokens: int
    clips: list
    note: str
    global_budget: int
    info: dict[str, Any]
    timings_s: dict[str, float]


def _encode_seconds(model_name: str, frames: Frames, *args: object, **kwargs: object) -> int:
    """ZeroGPU calls this with `_encode_on_device`'s own arguments: the sampled (T, H, W, 3) frames."""
    num_frames, height, width = (int(v) for v in frames.pixels.shape[:3])
    return gpu_seconds(frames=num_frames, frame_pixels=height * width, billions=model_billions(model_name))


@gpu_task(duration=_encode_seconds)
def _encode_on_device(model_name: str, frames: Frames, params: EncodeParams) -> EncodedVideo:
    return live_model(model_name).encode_tokens(frames, params)


def _generate_seconds(model_name: str, payload, history, question, params: GenerationParams, *args, **kwargs) -> int:
    """ZeroGPU calls this with `_generate_on_device`'s own arguments: the prompt is about the visual tokens plus
    the conversation's text (a generous 2 characters a token), the answer at most `max_new_tokens`, and the
    attention pass when asked (a video's only), counted as SCORED_ANSWER_TOKENS more steps."""
    want_attention = bool(args[0] if args else kwargs.get("want_attention", False))
    text = sum(len(str(message.get("content", ""))) for message in history) + len(question)
    visual = len(payload.visual) if payload is not None else 0
    return gpu_seconds(
        prompt_tokens=visual + text // 2,
        new_tokens=int(params.max_new_tokens) + (SCORED_ANSWER_TOKENS if want_attention and visual else 0),
        attention=want_attention and visual > 0,
        billions=model_billions(model_name),
    )


@gpu_task(duration=_generate_seconds)
def _generate_on_device(model_name: str, payload, history, question, params: GenerationParams, want_attention: bool):
    yield from live_model(model_name).generate_steps(payload, history, question, params, want_attention)


def has_gpu() -> bool:
    return torch.cuda.is_available()


def attention_implementation(device: str) -> str:
    """flash-attn only when it is importable on CUDA; SDPA everywhere else (eager only for the scoring pass)."""
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def model_type_of(folder: Path) -> str:
    config = folder / "config.json"
    if not config.is_file():
        raise ModelUnavailableError(f"{folder} has no config.json: it is not a transformers checkpoint")
    return str(json.loads(config.read_text()).get("model_type", ""))


def spread_over_frames(counts_per_llm_frame: list[int], llm_frame_positions: list[list[int]], num_frames: int):
    """Per-LLM-frame counts -> per-sampled-frame counts (a Qwen token covers 2 frames: split, first gets extra)."""
    per_frame = [0] * num_frames
    for count, positions in zip(counts_per_llm_frame, llm_frame_positions):
        share, extra = divmod(count, len(positions))
        for rank, position in enumerate(positions):
            per_frame[position] += share + (1 if rank < extra else 0)
    return per_frame


def sanitize(text: str, special_tokens: list[str]) -> str:
    """Typed (or echoed) special tokens must stay text, not become placeholders or turn ends."""
    for token in special_tokens:
        if token and token in text:
            text = text.replace(token, token[:1] + " " + token[1:])
    return text


class HFVideoLLM:
    """Base of the family adapters; subclasses implement the `_family_*` hooks."""

    family = ""
    video_marker = "<video>"  # what the chat template writes for a video slot

    def __init__(
        self,
        name: str,
        model,
        tokenizer,
        folder: Path | None,
        *,
        video_settings: dict,
        chat_template: str,
        stop_token_ids: tuple[int, ...],
    ):
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.folder = folder
        self.video_settings = video_settings
        self.chat_template = chat_template
        self.stop_token_ids = stop_token_ids
        self.decode_max_side = 640
        self._lock = threading.RLock()  # one generation at a time per model (the cache is shared state)
        self._session: dict[str, Any] | None = None  # the KV cache of the last conversation
        self.last_answer_ids: list[int] = []
        self.last_prompt_ids: list[int] = []
        self.cache_stats = {"reused_tokens": 0, "fed_tokens": 0}
        self._specials = [str(t) for t in tokenizer.all_special_tokens] + list(self._extra_specials())
        register_live(name, self, model)

    @property
    def device(self) -> torch.device:
        """Where the weights are now: read at each use, because on ZeroGPU they move to the GPU only inside a task."""
        return next(self.model.parameters()).device

    # ---- hooks -------------------------------------------------------------------------------------------------

    def _extra_specials(self) -> list[str]:
        return []

    def _family_encode(self, frames: Frames) -> tuple[torch.Tensor, dict]:
        """Frames -> (grids (G, h, w, D) on the LLM side, info: llm_frame_positions, frames_seen (the (T, 3, h, w)
        uint8 frames the tower saw, for the thumbnails), extras...)."""
        raise NotImplementedError

    def _family_official(self, grids: torch.Tensor) -> VisualTokens:
        """The checkpoint's own rule: every grid token in the order transformers feeds them, each at its (t, y, x),
        then whatever `finish` adds."""
        return self.finish(grid_tokens(grids))

    def finish(self, visual: VisualTokens) -> VisualTokens:
        """The tokens a family adds after the video's, whatever the compressor (OneVision: its newline); none here."""
        return visual

    def _family_video_text(self, payload: HFPayload) -> str:
        """The text that replaces the video marker, with one placeholder per visual token."""
        raise NotImplementedError

    def _family_positions(self, ids: torch.Tensor, payload: HFPayload | None) -> tuple[torch.Tensor, int]:
        """Position ids for a full prompt (1-D families: (1, L)) and the delta decode steps add to their index."""
        return torch.arange(ids.shape[0]).unsqueeze(0), 0

    def _placeholder_id(self) -> int:
        raise NotImplementedError

    def _language_model(self):
        return self.model.get_decoder()

    # ---- encode ------------------------------------------------------------------------------------------------

    def encode(self, frames: Frames, params: EncodeParams, video_sha256: str) -> VisualContext:
        if len(frames) == 0:
            raise VideoError("no frames could be read from this video")
        encoded = _encode_on_device(self.name, frames, params)
        visual, info = encoded.visual, encoded.info
        num_frames = len(frames)
        llm_positions = info["llm_frame_positions"]
        fast = spread_over_frames(
            visual.count_per_llm_frame(len(llm_positions), slow=False), llm_positions, num_frames
        )
        slow = spread_over_frames(visual.count_per_llm_frame(len(llm_positions), slow=True), llm_positions, num_frames)
        payload = HFPayload(
            visual=visual,
            grid_hw=encoded.grid_hw,
            llm_frame_positions=llm_positions,
            timestamps_s=[float(t) for t in frames.timestamps_s],
            duration_s=float(frames.info.duration_s) if frames.info is not None else float(frames.timestamps_s[-1]),
            second_per_grid=info.get("second_per_grid", 1.0),
            extras=info.get("extras", {}),
        )
        stats = TokenStats(
            clips=encoded.clips,
            global_budget=encoded.global_budget,
            slow_tokens=sum(slow),
            fast_tokens=len(visual) - sum(slow),
            per_frame_slow=slow,
            per_frame_fast=fast,
            native_tokens=encoded.official_tokens,
            compressor=params.compressor,
            budget_pct=float(params.budget_pct),
            official_tokens=encoded.official_tokens,
            note=encoded.note,
            timings_s=encoded.timings_s,
        )
        return VisualContext(
            model_name=self.name,
            video_sha256=video_sha256,
            params=params,
            frame_indices=[int(i) for i in frames.indices],
            timestamps_s=[float(t) for t in frames.timestamps_s],
            thumbnails=thumbnails(info["frames_seen"], partial(pil_resize, filter_name="bilinear")),
            stats=stats,
            payload=payload,
            info=frames.info,
            fingerprint=input_fingerprint(
                visual.tokens.detach().float().cpu().numpy(),
                visual.positions.cpu().numpy(),
                self._family_video_text(payload),
            ),
        )

    @torch.no_grad()
    def encode_tokens(self, frames: Frames, params: EncodeParams) -> EncodedVideo:
        """The GPU half of `encode`: the tower, then the compressor over its grids (under `langdc`, after the
        language expert has described each clip)."""
        start = time.perf_counter()
        with self._lock:
            grids, info = self._family_encode(frames)
        encoded = time.perf_counter()
        official = self._family_official(grids)
        compressor, budget_pct = params.compressor, float(params.budget_pct)
        describe, captioned = self._describer(frames, info, params) if compressor == "langdc" else (None, None)
        visual, clips, note, global_budget = compress_grids(
            grids, official, info, compressor, budget_pct, frames, self.finish, describe
        )
        timings = {"encode": encoded - start}
        if captioned is not None:
            timings["language_expert"] = captioned.seconds
        timings["compress"] = time.perf_counter() - encoded - timings.get("language_expert", 0.0)
        kept = {key: info[key] for key in KEPT_INFO if key in info}
        return EncodedVideo(
            visual=visual,
            grid_hw=(int(grids.shape[1]), int(grids.shape[2])),
            official_tokens=len(official),
            clips=clips,
            note=note,
            global_budget=global_budget,
            info=kept,
            timings_s=timings,
        )

    def _describer(self, frames: Frames, info: dict, params: EncodeParams):
        """`langdc`'s (describe, timer): the chosen expert describes clips of LLM frames, read as sampled frames."""
        groups = info["llm_frame_positions"]
        expert = load_expert(params.expert, host=self)
        return describe_clips(expert, frames, lambda start, end: (groups[start][0], groups[end - 1][-1] + 1))

    # ---- prompt ------------------------------------------------------------------------------------------------

    def render_prompt(self, history: list[Message], question: str, payload: HFPayload | None) -> str:
        """The conversation in the checkpoint's chat template, the video block written out in the first user turn."""
        messages, video_placed = [], payload is None
        for message in [*history, {"role": "user", "content": question}]:
            text = sanitize(str(message["content"]), self._specials)
            role = message["role"]
            if role == "user" and not video_placed:
                messages.append({"role": role, "content": [{"type": "video"}, {"type": "text", "text": text}]})
                video_placed = True
            else:
                messages.append({"role": role, "content": [{"type": "text", "text": text}]})
        rendered = self.tokenizer.apply_chat_template(
            messages, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
        )
        if payload is not None:
            if rendered.count(self.video_marker) != 1:
                raise RuntimeError(f"the chat template of {self.name} did not place exactly one video slot")
            rendered = rendered.replace(self.video_marker, self._family_video_text(payload))
        return rendered

    def prompt_ids(self, history: list[Message], question: str, payload: HFPayload | None) -> torch.Tensor:
        text = self.render_prompt(history, question, payload)
        ids = torch.tensor(self.tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
        if payload is not None:
            found = int((ids == self._placeholder_id()).sum())
            if found != len(payload.visual):
                raise RuntimeError(f"prompt holds {found} visual placeholders for {len(payload.visual)} tokens")
        return ids

    def embed(self, ids: torch.Tensor, payload: HFPayload | None) -> torch.Tensor:
        """(L,) ids -> (1, L, D) embeddings with the visual tokens scattered into the placeholder rows."""
        embeddings = self.model.get_input_embeddings()(ids.to(self.device)).unsqueeze(0)
        if payload is not None and len(payload.visual):
            mask = (ids == self._placeholder_id()).to(self.device)
            embeddings[0, mask] = payload.visual.tokens.to(self.device, embeddings.dtype)
        return embeddings

    def positions(self, ids: torch.Tensor, payload: HFPayload | None) -> tuple[torch.Tensor, int]:
        return self._family_positions(ids, payload)

    # ---- forward -----------------------------------------------------------------------------------------------

    def _forward(self, embeddings, position_ids, cache, output_attentions: bool = False):
        out = self._language_model()(
            inputs_embeds=embeddings,
            position_ids=position_ids.to(self.device),
            past_key_values=cache,
            use_cache=True,
            output_attentions=output_attentions,
        )
        logits = self.model.lm_head(out.last_hidden_state[:, -1:]).float()
        return logits[0, -1], out

    def _payload_of(self, context: VisualContext | None) -> HFPayload | None:
        return own_payload(context, self.name, HFPayload)

    # ---- streaming ---------------------------------------------------------------------------------------------

    def stream(
        self,
        context: VisualContext | None,
        history: list[Message],
        question: str,
        params: GenerationParams,
        want_attention: bool = True,
    ) -> Iterator[str | Answer]:
        start = time.perf_counter()
        payload = self._payload_of(context)
        answer_ids: list[int] = []
        emitted = ""
        first_token_s = None
        done: dict[str, Any] = {}
        for kind, value in _generate_on_device(self.name, payload, history, question, params, want_attention):
            if kind == "token":
                first_token_s = first_token_s or time.perf_counter() - start
                answer_ids.append(value)
                text = self.tokenizer.decode(answer_ids, skip_special_tokens=True)
                if not text.endswith("\ufffd") and len(text) > len(emitted) and text.startswith(emitted):
                    yield text[len(emitted) :]  # held back while it ends in half a UTF-8 character
                    emitted = text
            else:
                done[kind] = value
        text = self.tokenizer.decode(answer_ids, skip_special_tokens=True)
        if len(text) > len(emitted) and text.startswith(emitted):
            yield text[len(emitted) :]
        self.last_prompt_ids, self.last_answer_ids = done["prompt_ids"], answer_ids
        self.cache_stats = done["cache_stats"]
        total = time.perf_counter() - start
        yield Answer(
            text=text.strip(),
            attention=done.get("attention"),
            stats=context.stats if context is not None else TokenStats(),
            timings_s={"first_token": first_token_s or total, "generate": total, **done["timings"]},
            prompt_tokens=len(done["prompt_ids"]),
            new_tokens=len(answer_ids),
        )

    def _reusable_prefix(self, ids: torch.Tensor, payload: HFPayload | None):
        """(cache, reused): the last conversation's KV cache cut to the prompt rows it shares with `ids`, or a new
        cache. Only the same `payload` object counts (a ZeroGPU task gets a copy, and keeps no session)."""
        from transformers import DynamicCache

        session = self._session
        reused = 0
        if session is not None and session["payload"] is payload:
            cached = session["ids"]
            limit = min(len(cached), int(ids.shape[0]) - 1)
            while reused < limit and cached[reused] == int(ids[reused]):
                reused += 1
        if not reused:
            return DynamicCache(config=self._language_model().config), 0
        crop_to(session["cache"], reused)
        return session["cache"], reused

    @torch.no_grad()
    def generate_steps(self, payload, history, question, params: GenerationParams, want_attention: bool):
        """The GPU half of `stream`: yield ("token", id) per answer token, then ("attention", Attention) when asked,
        then the prompt ids, cache counts and timings, each as (name, value)."""
        with self._lock:
            started = time.perf_counter()
            ids = self.prompt_ids(history, question, payload)
            position_ids, delta = self.positions(ids, payload)
            length = int(ids.shape[0])
            cache, reused = self._reusable_prefix(ids, payload)
            embeddings = self.embed(ids[reused:], payload) if payload is None else self.embed(ids, payload)[:, reused:]
            logits, _ = self._forward(embeddings, position_ids[..., reused:], cache)
            prefill_s = time.perf_counter() - started
            generator = torch.Generator(device="cpu").manual_seed(params.seed)
            answer_ids: list[int] = []
            fed = [int(i) for i in ids]  # what the cache holds
            for step in range(params.max_new_tokens):
                token = _pick(logits, params, generator)
                if token in self.stop_token_ids:
                    break
                answer_ids.append(token)
                yield "token", token
                if step + 1 == params.max_new_tokens:
                    break
                step_positions = torch.full((*position_ids.shape[:-1], 1), length + step + delta, dtype=torch.long)
                logits, _ = self._forward(self.embed(torch.tensor([token]), None), step_positions, cache)
                fed.append(token)
            generated_s = time.perf_counter() - started
            if want_attention and payload is not None and answer_ids:
                yield "attention", self._score_attention(ids, payload, answer_ids, delta, cache, position_ids)
                fed = [int(i) for i in ids] + answer_ids[:SCORED_ANSWER_TOKENS]
            self._session = None if on_zero_gpu() else {"payload": payload, "ids": fed, "cache": cache}
            yield "prompt_ids", [int(i) for i in ids]
            yield "cache_stats", {"reused_tokens": reused, "fed_tokens": length - reused}
            yield (
                "timings",
                {
                    "prefill": prefill_s,
                    "decode": generated_s - prefill_s,
                    "attention": time.perf_counter() - started - generated_s,
                    "reused_prompt_tokens": reused,
                },
            )

    def _score_attention(self, ids, payload: HFPayload, answer_ids, delta, cache, position_ids) -> Attention:
        """Eager pass over the answer tokens only (the cache holds the prompt): their attention to each frame."""
        scored = answer_ids[:SCORED_ANSWER_TOKENS]
        length = int(ids.shape[0])
        crop_to(cache, length)
        positions = torch.arange(length, length + len(scored)) + delta
        positions = positions.view(*([1] * (position_ids.ndim - 1)), -1).expand(*position_ids.shape[:-1], -1)
        previous = self.model.config._attn_implementation
        self.model.set_attn_implementation("eager")
        try:
            _, out = self._forward(self.embed(torch.tensor(scored), None), positions, cache, output_attentions=True)
        finally:
            self.model.set_attn_implementation(previous)
        layers = out.attentions[len(out.attentions) // 2 :]  # upper half: where answers read the video
        weights = torch.stack([layer[0].float().mean(0) for layer in layers]).mean(0)  # (n, length + n)
        visual_rows = (ids == self._placeholder_id()).nonzero().flatten()
        to_visual = weights[:, visual_rows.to(weights.device)].cpu()  # (n, M)
        llm_frame = payload.visual.llm_frame
        keep = llm_frame >= 0
        per_llm_frame = torch.zeros(len(scored), payload.num_llm_frames)
        per_llm_frame.index_add_(1, llm_frame[keep], to_visual[:, keep])
        num_frames = len(payload.timestamps_s)
        per_frame = torch.zeros(len(scored), num_frames)
        for group, frame_positions in enumerate(payload.llm_frame_positions):
            for position in frame_positions:
                per_frame[:, position] += per_llm_frame[:, group] / len(frame_positions)
        per_frame = per_frame.numpy()
        per_frame = per_frame / np.maximum(per_frame.sum(axis=1, keepdims=True), 1e-12)
        frame_weights = per_frame.mean(axis=0)
        return Attention(
            frame_weights=frame_weights / max(frame_weights.sum(), 1e-12),
            tokens=[self.tokenizer.decode([t]) for t in scored],
            token_frame_weights=per_frame,
            spatial=spatial_maps(to_visual.mean(0), payload),
            source=(
                f"attention from the answer tokens to each frame's visual tokens, layers {len(out.attentions) // 2}"
                f"-{len(out.attentions) - 1}, averaged over heads and layers (an eager scoring pass)"
            ),
        )


def spatial_maps(weights: torch.Tensor, payload: HFPayload) -> dict[int, np.ndarray]:
    """(M,) attention on each visual token -> sampled frame position -> (h, w) map in [0, 1] on the LLM grid: each
    token's weight lands on its (y, x) in its LLM frame (a merged token at its centre's cell), then each frame is
    scaled by its own peak. Every sampled frame of an LLM frame shares that frame's map."""
    height, width = payload.grid_hw
    maps = torch.zeros(payload.num_llm_frames, height, width)
    keep = payload.visual.llm_frame >= 0
    where = payload.visual.positions[keep].long()
    maps.index_put_(
        (payload.visual.llm_frame[keep].long(), where[:, 1].clamp(0, height - 1), where[:, 2].clamp(0, width - 1)),
        weights[keep].float(),
        accumulate=True,
    )
    peaks = maps.flatten(1).amax(1).clamp(min=1e-12)[:, None, None]
    maps = (maps / peaks).numpy()
    return {p: maps[group] for group, positions in enumerate(payload.llm_frame_positions) for p in positions}


def crop_to(cache, length: int) -> None:
    """Keep the first `length` positions of a DynamicCache (5.23's `crop` takes the count to remove, negated)."""
    excess = cache.get_seq_length() - length
    if excess > 0:
        cache.crop(-excess)


def _pick(logits: torch.Tensor, params: GenerationParams, generator: torch.Generator) -> int:
    if params.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.cpu() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        keep = sorted_probs.cumsum(0) - sorted_probs < params.top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))


# ----------------------------------------------------------------------------------------------------------------
# Loading


def load_parts(repo_or_path: str, *, device: str | None = None, dtype: str | None = None):
    """(folder, model, tokenizer) for a hub id or folder; SDPA (flash-attn when importable on CUDA)."""
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    folder = resolve_folder(repo_or_path)
    device = device or ("cuda" if has_gpu() else "cpu")
    torch_dtype = torch.float32 if device == "cpu" else getattr(torch, dtype or "bfloat16")
    model = AutoModelForImageTextToText.from_pretrained(
        folder, dtype=torch_dtype, attn_implementation=attention_implementation(device)
    )
    model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return folder, model, tokenizer


def chat_template_of(folder: Path, tokenizer, fallback: str) -> str:
    """The checkpoint's chat template: the tokenizer's, else the processor's saved one, else our family layout."""
    if getattr(tokenizer, "chat_template", None):
        template = tokenizer.chat_template
        return template if isinstance(template, str) else dict(template).get("default", fallback)
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    saved = folder / "chat_template.json"
    if saved.is_file():
        return json.loads(saved.read_text()).get("chat_template", fallback)
    return fallback


def stop_ids(tokenizer, model, tokens: tuple[str, ...]) -> tuple[int, ...]:
    vocab = tokenizer.get_vocab()
    ids = [vocab[token] for token in tokens if token in vocab]
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids += eos if isinstance(eos, list) else [eos] if eos is not None else []
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return tuple(dict.fromkeys(int(i) for i in ids))

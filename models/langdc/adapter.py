"""LangDC behind the studio's `VideoLLM` protocol: encode once (towers, pool branch, captions), then chat.

`encode` picks the release's 16 frames among the sampled ones, runs both towers, the pool branch and the
captioner, and keeps the LLM's visual rows (832 pool tokens, then every clip's soft caption tokens) with the
official plan: 4 clips, each budgeted its 208 pool tokens plus its caption's length, with the decoded caption (the
studio caches the context per video, so a follow-up question never re-runs the captioner). `stream` writes the
release's chat layout, generates with the KV cache and yields text as it comes, then an `Answer`; with attention
asked for, an eager scoring pass over the answer tokens (the cache holds the prompt) measures how much they read
each frame's pool tokens (its context image's 6x6 cells, its 4x4 video cells) and each clip's caption tokens
(shared by the clip's 4 frames), plus a 6x6 map per frame from the context cells.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

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
    own_payload,
)
from models.compression import CompressionPlan, check_compressor
from models.langdc.budgets import official_plan, per_frame_counts
from models.langdc.checkpoint import LoadedLangDC
from models.langdc.generation import generate
from models.langdc.modeling import (
    POOL_CONTEXT_SIDE,
    POOL_FRAME_SIDE,
    LangDCVisual,
    PromptEmbeddings,
)
from models.langdc.preprocessing import FRAMES_PER_CLIP, context_pixels, frame_positions, video_pixels
from models.langdc.prompting import caption_prompt_ids, render, tokenize_with_placeholders
from models.thumbnails import thumbnails

COMPRESSORS = ("official",)  # the captioner's own rule; no other compressor has been shown honest for LangDC
SCORED_ANSWER_TOKENS = 64
CONTEXT_TOKENS = POOL_CONTEXT_SIDE**2  # 36 per context image
FRAME_TOKENS = POOL_FRAME_SIDE**2  # 16 per frame
NOTE = (
    "official LangDC: every frame gives 52 pool tokens (36 from its CLIP context image, 16 from InternVideo2; "
    "'slow' here) and each clip adds its caption's length in soft caption tokens ('fast', split over its 4 frames); "
    "the captioner decides the caption lengths"
)


@dataclass
class LangDCPayload:
    """What `encode` keeps: the LLM's visual rows, the plan, and which sampled frames the towers read."""

    visual: LangDCVisual
    plan: CompressionPlan
    read_positions: list[int]  # 16 positions into the sampled frames (repeats when fewer were sampled)
    num_frames: int


class LangDCVideoLLM:
    """A loaded LangDC release speaking the studio's `VideoLLM` protocol."""

    def __init__(self, name: str, loaded: LoadedLangDC, *, stop_token_ids: tuple[int, ...] = ()):
        self.name = name
        self.decode_max_side = 640  # the towers read 224 px and 336 px (short side): decode a little above that
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        vocab = self.tokenizer.get_vocab()
        defaults = [vocab[t] for t in ("<|im_end|>", "<|endoftext|>") if t in vocab]
        self.stop_token_ids = tuple(dict.fromkeys([*stop_token_ids, *defaults]))
        self._lock = threading.RLock()  # one encode or generation at a time (the model is shared)

    # ---- encode ------------------------------------------------------------------------------------------------

    def encode(self, frames: Frames, params: EncodeParams, video_sha256: str) -> VisualContext:
        if len(frames) == 0:
            raise VideoError("no frames could be read from this video")
        check_compressor(params.compressor, COMPRESSORS)
        start = time.perf_counter()
        positions = frame_positions(len(frames))
        chosen = frames.pixels[positions]
        caption_ids = torch.tensor(
            caption_prompt_ids(self.loaded.caption_tokenizer, len(positions) // FRAMES_PER_CLIP)
        )
        with self._lock:
            visual = self.model.encode(video_pixels(chosen), context_pixels(chosen), caption_ids, seed=0)
        tokenizer = self.loaded.caption_tokenizer
        visual.texts = [
            tokenizer.decode(visual.captions.caption_ids(c), skip_special_tokens=True).strip()
            for c in range(visual.num_clips)
        ]
        timestamps = [float(t) for t in frames.timestamps_s]
        plan = official_plan(visual.counts, visual.texts, visual.pool_per_clip, positions, len(frames), timestamps)
        pool, caption = per_frame_counts(visual.counts, CONTEXT_TOKENS + FRAME_TOKENS, positions, len(frames))
        duration = float(frames.info.duration_s) if frames.info is not None else None
        stats = TokenStats(
            clips=plan.to_clip_budgets(timestamps, duration, texts=visual.texts),
            global_budget=plan.effective_budget,
            slow_tokens=sum(pool),
            fast_tokens=sum(caption),
            per_frame_slow=pool,
            per_frame_fast=caption,
            native_tokens=len(positions) * (256 + 576),  # InternVideo2 and CLIP tokens before any pooling
            timings_s={"encode": time.perf_counter() - start},
            compressor="official",
            budget_pct=100.0,
            official_tokens=plan.official_tokens,
            note=NOTE,
        )
        pixels = torch.from_numpy(np.ascontiguousarray(frames.pixels)).permute(0, 3, 1, 2)
        return VisualContext(
            model_name=self.name,
            video_sha256=video_sha256,
            params=params,
            frame_indices=[int(i) for i in frames.indices],
            timestamps_s=timestamps,
            thumbnails=thumbnails(pixels),
            stats=stats,
            payload=LangDCPayload(visual, plan, positions, len(frames)),
            info=frames.info,
        )

    # ---- stream ------------------------------------------------------------------------------------------------

    def _payload_of(self, context: VisualContext | None) -> LangDCPayload | None:
        return own_payload(context, self.name, LangDCPayload)

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
        ids = torch.tensor(tokenize_with_placeholders(render(history, question, payload is not None), self.tokenizer))
        with self._lock:
            prompt = self.model.embed_prompt(ids, payload.visual if payload is not None else None)
            from transformers import DynamicCache

            cache = DynamicCache(config=self.model.llm.config)
            new_ids: list[int] = []
            emitted, first_token_s = "", None
            steps = generate(self.model.llm, prompt.inputs_embeds, max_new_tokens=params.max_new_tokens,
                             temperature=params.temperature, top_p=params.top_p, seed=params.seed,
                             stop_ids=self.stop_token_ids, cache=cache)  # fmt: skip
            for step in steps:
                if step.token_id in self.stop_token_ids:
                    break
                first_token_s = first_token_s or time.perf_counter() - start
                new_ids.append(step.token_id)
                text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
                if not text.endswith("\ufffd") and len(text) > len(emitted):  # hold back half a UTF-8 character
                    yield text[len(emitted) :]
                    emitted = text
            generated = time.perf_counter() - start
            attention = None
            if want_attention and payload is not None and new_ids:
                attention = self._attention(prompt, payload, new_ids, cache)
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        if len(text) > len(emitted) and text.startswith(emitted):
            yield text[len(emitted) :]
        total = time.perf_counter() - start
        yield Answer(
            text=text.strip(),
            attention=attention,
            stats=context.stats if context is not None else TokenStats(),
            timings_s={"first_token": first_token_s or total, "generate": generated, "total": total},
            prompt_tokens=int(prompt.inputs_embeds.shape[1]),
            new_tokens=len(new_ids),
        )

    # ---- attention ---------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def _visual_attention(self, prompt: PromptEmbeddings, answer_ids: list[int], cache) -> tuple[torch.Tensor, str]:
        """(n, S) attention of up to SCORED_ANSWER_TOKENS answer tokens to the prompt rows (upper half of the
        layers, mean over heads and layers), from an eager pass with the cache cut back to the prompt."""
        scored = answer_ids[:SCORED_ANSWER_TOKENS]
        length = int(prompt.inputs_embeds.shape[1])
        excess = cache.get_seq_length() - length
        if excess > 0:
            cache.crop(-excess)
        llm = self.model.llm
        embedded = llm.get_input_embeddings()(torch.tensor([scored], device=self.model.device))
        positions = torch.arange(length, length + len(scored), device=self.model.device).unsqueeze(0)
        previous = llm.config._attn_implementation
        llm.set_attn_implementation("eager")
        try:
            out = llm.model(inputs_embeds=embedded, position_ids=positions, past_key_values=cache, use_cache=True,
                            output_attentions=True)  # fmt: skip
        finally:
            llm.set_attn_implementation(previous)
        layers = out.attentions[len(out.attentions) // 2 :]
        weights = torch.stack([layer[0].float().mean(0) for layer in layers]).mean(0)[:, :length]
        first = len(out.attentions) // 2
        return weights.cpu(), f"layers {first}-{len(out.attentions) - 1}"

    def _attention(self, prompt: PromptEmbeddings, payload: LangDCPayload, answer_ids, cache) -> Attention:
        weights, layers = self._visual_attention(prompt, answer_ids, cache)
        read = len(payload.read_positions)
        pool = weights[:, prompt.pool_start : prompt.caption_start]
        context = pool[:, : read * CONTEXT_TOKENS].reshape(-1, read, CONTEXT_TOKENS)  # (n, 16, 36)
        video = pool[:, read * CONTEXT_TOKENS :].reshape(-1, read, FRAME_TOKENS)  # (n, 16, 16)
        per_read = context.sum(-1) + video.sum(-1)
        offset = prompt.caption_start
        for clip, count in enumerate(payload.visual.counts):  # a clip's caption tokens speak for its 4 frames
            share = weights[:, offset : offset + count].sum(-1, keepdim=True) / FRAMES_PER_CLIP
            per_read[:, clip * FRAMES_PER_CLIP : (clip + 1) * FRAMES_PER_CLIP] += share
            offset += count
        per_frame = torch.zeros(per_read.shape[0], payload.num_frames)
        maps = torch.zeros(payload.num_frames, CONTEXT_TOKENS)
        for index, position in enumerate(payload.read_positions):
            per_frame[:, position] += per_read[:, index]
            maps[position] += context[:, index].mean(0)
        rows = per_frame.numpy()
        rows = rows / np.maximum(rows.sum(axis=1, keepdims=True), 1e-12)
        frame_weights = rows.mean(axis=0)
        side = POOL_CONTEXT_SIDE
        spatial = {
            int(p): (maps[p] / maps[p].max().clamp_min(1e-12)).reshape(side, side).numpy()
            for p in sorted(set(payload.read_positions))
        }
        return Attention(
            frame_weights=frame_weights / max(float(frame_weights.sum()), 1e-12),
            tokens=[self.tokenizer.decode([t]) for t in answer_ids[:SCORED_ANSWER_TOKENS]],
            token_frame_weights=rows,
            spatial=spatial,
            source=(
                f"attention from the answer tokens to each frame's pool tokens (36 context + 16 video cells) and "
                f"to each clip's caption tokens (shared by its 4 frames), {layers}, averaged over heads and "
                "layers (an eager scoring pass); the maps are the context image's 6x6 cells"
            ),
        )

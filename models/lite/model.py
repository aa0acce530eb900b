"""`slowfast-lite`: the embedded default video LLM, training-free and offline.

encode: EfficientNet-Lite0 over the sampled frames (fast pathway: a label distribution per frame; slow pathway:
3x3 region labels on a few frames) -> per-clip budgets (by visual change, or by description length under
`langdc`) -> a timeline written as language within the
budget. stream: SmolLM2-135M-Instruct answers from the timeline; afterwards the attention of each answer token on
each clip's span of the prompt is mapped back to frames, and class activation maps of the labels the answer names
give the spatial overlays.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from models.base import (
    Answer,
    Attention,
    ClipBudget,
    EncodeParams,
    Frames,
    GenerationParams,
    Message,
    TokenStats,
    VisualContext,
    input_fingerprint,
)
from models.compression import PLANNER_COMPRESSORS, CompressionPlan, check_compressor
from models.experts import check_expert, load_expert
from models.experts.base import CaptionTimer, describe_clips
from models.experts.lite import LiteExpert
from models.lite.compressor import (
    OFFICIAL_BUDGET,
    CompressorSettings,
    FrameEvidence,
    compress,
    uncompressed_tokens,
)
from models.lite.expert import VisualExpert
from models.lite.labels import class_groups, class_names
from models.lite.llm import Generated, SmolLM
from models.lite.prompt import build_messages, timeline_text
from models.lite.relevance import ClipMatcher
from models.thumbnails import thumbnails


def _note(plan: CompressionPlan) -> str:
    """One line under the chart: the budget in language tokens and that no compressor here was trained."""
    if plan.compressor == "official":
        return (
            f"language tokens: the default's own rule, per-clip budgets by visual change at {OFFICIAL_BUDGET} tokens"
        )
    rule = {
        "dynamic": "per-clip budgets by visual change",
        "langdc": "per-clip budgets by the length of a language expert's description",
    }.get(plan.compressor, "equal-length clips at a fixed rate")
    return (
        f"language tokens: {rule} at {plan.budget_pct:g}% of {OFFICIAL_BUDGET} = {plan.global_budget} tokens "
        "(training-free; a clip's line may use less than its budget)"
    )


@dataclass
class LitePayload:
    timeline: str
    clips: list[ClipBudget]
    evidence: FrameEvidence
    cams: dict[int, dict[int, np.ndarray]] = field(repr=False)
    hints: dict[str, str | None] = field(default_factory=dict)  # question -> "Most relevant" line


class LiteVideoLLM:
    def __init__(self, name: str = "slowfast-lite", settings: CompressorSettings | None = None, llm=None):
        """`llm`: what counts tokens and answers (default: SmolLM2 in this process; a remote engine passes a
        tokenizer-only stand-in and answers itself)."""
        self.name = name
        self.decode_max_side = 448  # EfficientNet sees 224 px crops; thumbnails are 96 px high
        self.settings = settings or CompressorSettings()
        started = time.perf_counter()
        self.expert = VisualExpert()
        self.llm = llm if llm is not None else SmolLM()
        self.matcher = ClipMatcher()
        self._language_expert: LiteExpert | None = None  # `langdc`'s describer, built on first use
        self.load_s = time.perf_counter() - started
        self.weights_source = self.llm.source

    # -- encode -----------------------------------------------------------------------------------------------

    def encode(self, frames: Frames, params: EncodeParams, video_sha256: str) -> VisualContext:
        started = time.perf_counter()
        evidence, cams = self.expert.analyse(frames.pixels, frames.timestamps_s, frames.info.duration_s)
        expert_s = time.perf_counter() - started
        check_compressor(params.compressor, PLANNER_COMPRESSORS)
        describe, captioned = (
            self._describer(frames, evidence, params) if params.compressor == "langdc" else (None, None)
        )
        plan, clips, per_frame_fast, per_frame_slow = compress(
            evidence, self.llm.count_tokens, self.settings, params.compressor, params.budget_pct, describe
        )
        timings = {"visual_expert": expert_s}
        if captioned is not None:
            timings["language_expert"] = captioned.seconds
        timings["compress"] = time.perf_counter() - started - sum(timings.values())
        timeline = timeline_text(clips, frames.info.duration_s)
        stats = TokenStats(
            clips=clips,
            global_budget=plan.effective_budget,
            compressor=plan.compressor,
            budget_pct=plan.budget_pct,
            official_tokens=OFFICIAL_BUDGET,
            note=_note(plan),
            slow_tokens=sum(per_frame_slow),
            fast_tokens=sum(per_frame_fast),
            per_frame_slow=per_frame_slow,
            per_frame_fast=per_frame_fast,
            native_tokens=uncompressed_tokens(evidence, self.llm.count_tokens),
            timings_s=timings,
        )
        return VisualContext(
            model_name=self.name,
            video_sha256=video_sha256,
            params=params,
            frame_indices=[int(i) for i in frames.indices],
            timestamps_s=[float(t) for t in frames.timestamps_s],
            thumbnails=thumbnails(torch.from_numpy(np.ascontiguousarray(frames.pixels)).permute(0, 3, 1, 2)),
            stats=stats,
            payload=LitePayload(timeline, clips, evidence, cams),
            info=frames.info,
            fingerprint=input_fingerprint(timeline),  # the LLM reads the timeline and nothing else of the video
        )

    def _describer(self, frames: Frames, evidence: FrameEvidence, params: EncodeParams):
        """`langdc`'s (describe, timer): `lite` and `self` are this model's own networks (its labels, its LLM)
        describing each clip from the evidence it already has; other experts read the frames."""
        check_expert(params.expert)
        if params.expert not in ("lite", "self"):
            return describe_clips(load_expert(params.expert, host=self), frames)
        if self._language_expert is None:
            self._language_expert = LiteExpert(self.expert, self.llm)
        timer = CaptionTimer()

        def describe(ranges):
            started = time.perf_counter()
            captions = self._language_expert.describe(frames, ranges, evidence=evidence)
            timer.seconds += time.perf_counter() - started
            return [(caption.text, caption.tokens) for caption in captions]

        return describe, timer

    # -- answer -----------------------------------------------------------------------------------------------

    def stream(
        self,
        context: VisualContext | None,
        history: list[Message],
        question: str,
        params: GenerationParams,
        want_attention: bool = True,
    ) -> Iterator[str | Answer]:
        payload: LitePayload | None = context.payload if context is not None else None
        messages = self.chat_messages(context, history, question)
        prompt = self.llm.render(messages)
        prompt_ids, offsets = self.llm.encode_with_offsets(prompt)
        generated: Generated | None = None
        for item in self.llm.stream(prompt_ids, params):
            if isinstance(item, Generated):
                generated = item
            else:
                yield item
        assert generated is not None
        timings = {"first_token": generated.first_token_s, "generate": generated.total_s}
        timings["reused_prompt_tokens"] = float(generated.reused_prefix)
        attention = None
        if payload is not None and want_attention and generated.ids:
            started = time.perf_counter()
            attention = self._attention(payload, prompt, prompt_ids, offsets, generated)
            timings["attention"] = time.perf_counter() - started
        yield Answer(
            text=generated.text,
            attention=attention,
            stats=context.stats if context is not None else TokenStats(),
            timings_s=timings,
            prompt_tokens=len(prompt_ids),
            new_tokens=len(generated.ids),
        )

    def chat_messages(self, context: VisualContext | None, history: list[Message], question: str) -> list[Message]:
        """The chat SmolLM2 answers: system line, few-shot turns, then the conversation with the timeline."""
        payload: LitePayload | None = context.payload if context is not None else None
        if payload is None:
            return build_messages(None, history, question)
        return build_messages(payload.timeline, history, question, lambda q: self._hint(payload, q))

    def _hint(self, payload: LitePayload, question: str) -> str | None:
        """The "Most relevant" clip line for a question, memoised per video so a turn renders the same every time."""
        if question not in payload.hints:
            lines = [clip.text for clip in payload.clips if clip.text]
            payload.hints[question] = self.matcher.most_relevant(question, lines)
        return payload.hints[question]

    def _attention(
        self,
        payload: LitePayload,
        prompt: str,
        prompt_ids: list[int],
        offsets: list[tuple[int, int]],
        generated: Generated,
    ) -> Attention:
        rows = self.llm.answer_attention(generated, prompt_ids).numpy()  # (n_answer, prompt_len)
        spans = clip_token_spans(prompt, payload.timeline, payload.clips, offsets)
        num_frames = len(payload.evidence.timestamps_s)
        clip_mass = np.stack([rows[:, lo:hi].sum(axis=1) for lo, hi in spans], axis=1)  # (n_answer, K)
        per_token = np.zeros((len(rows), num_frames))
        for clip, (lo, hi) in zip(payload.clips, spans):
            # Normalise by span length so long clips do not win by having more tokens to attend to.
            density = clip_mass[:, clip.index] / max(1, hi - lo)
            per_token[:, clip.frame_positions] = density[:, None] / len(clip.frame_positions)
        visual_share = clip_mass.sum(axis=1)  # how much each answer token looked at the video at all
        per_token = per_token / np.maximum(per_token.sum(axis=1, keepdims=True), 1e-12)
        words, word_rows = merge_into_words(self.llm.tokenizer, generated.ids, per_token, visual_share)
        frame_weights = (per_token * visual_share[:, None]).sum(axis=0)
        frame_weights = frame_weights / max(frame_weights.sum(), 1e-12)
        return Attention(
            frame_weights=frame_weights,
            tokens=words,
            token_frame_weights=word_rows,
            spatial=self._spatial_maps(payload, generated.text),
            source="SmolLM2 attention (upper half of layers, mean over heads) from each answer token's producing "
            "query to each clip's span of the timeline, spread over the clip's frames; overlays are EfficientNet "
            "class activation maps of the object the answer names (else the frame's top class).",
        )

    def _spatial_maps(self, payload: LitePayload, answer: str) -> dict[int, np.ndarray]:
        words = set(re.findall(r"[a-z]+", answer.lower()))
        maps = {}
        for position, cams in payload.cams.items():
            probs = payload.evidence.probs[position]
            named = [k for k in cams if _names_class(k, words)]
            best = max(named or list(cams), key=lambda k: probs[k])
            maps[position] = cams[best]
        return maps


def _names_class(index: int, words: set[str]) -> bool:
    name_words = set(re.findall(r"[a-z]+", class_names()[index].lower()))
    group = class_groups()[index]
    group_words = set(re.findall(r"[a-z]+", group)) - {"or"} if group else set()
    return bool((name_words | group_words) & words - {"a", "the", "of"})


def clip_token_spans(
    prompt: str, timeline: str, clips: list[ClipBudget], offsets: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Token [lo, hi) of each clip's line inside the rendered prompt (the real timeline, not the few-shot one)."""
    base = prompt.rindex(timeline)
    spans, cursor = [], base
    for clip in clips:
        if not clip.text:
            spans.append((0, 0))
            continue
        start = prompt.index(clip.text, cursor)
        end = start + len(clip.text)
        cursor = end
        tokens = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
        spans.append((tokens[0], tokens[-1] + 1) if tokens else (0, 0))
    return spans


def merge_into_words(tokenizer, ids: list[int], rows: np.ndarray, weights: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Group answer tokens into words (a new word starts at a space); a word's row: weighted mean of its tokens."""
    words: list[str] = []
    groups: list[list[int]] = []
    for position, token_id in enumerate(ids):
        piece = tokenizer.decode([token_id])
        if not groups or piece.startswith((" ", "\n")) or not piece.strip() or not words[-1].strip():
            words.append(piece.strip() or piece)
            groups.append([position])
        else:
            words[-1] += piece
            groups[-1].append(position)
    merged = []
    for group in groups:
        w = weights[group] + 1e-9
        row = (rows[group] * w[:, None]).sum(axis=0) / w.sum()
        merged.append(row / max(row.sum(), 1e-12))
    keep = [i for i, word in enumerate(words) if word.strip()]
    return [words[i] for i in keep], np.array([merged[i] for i in keep]).reshape(len(keep), rows.shape[1])


def load(name: str = "slowfast-lite") -> LiteVideoLLM:
    return LiteVideoLLM(name=name)

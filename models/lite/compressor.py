"""The compressors of the embedded default, in language space: clips written as lines of text within their budgets.

Under `dynamic` (and the default's own rule) budgets follow visual change, FastVID-style: the shared planner
(`models.compression`) cuts the timeline into clips at scene changes and splits the global budget over them by
content (the same rule every model uses); under `langdc` they follow the length of a language expert's description
of each clip (`models/experts/`). Each clip is written here as a line of text within its budget, counted with the
LLM's tokenizer: rich clips get labels, regions and motion words, redundant ones only "same scene". A line is made
of whole phrases separated by "; " — a phrase that does not fit is replaced by a shorter whole form of itself or
left out, never cut in half. Everything here is pure numpy and text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from models.base import ClipBudget
from models.compression import (
    CompressionPlan,
    Describe,
    PlannerSettings,
    global_budget_for,
    plan_clips,
    plan_langdc,
    plan_uniform,
    split_by_weights,
)
from models.lite.labels import class_groups, class_names, describe_class

TokenCounter = Callable[[str], int]
REGION_NAMES = ("top-left", "top", "top-right", "left", "center", "right", "bottom-left", "bottom", "bottom-right")


@dataclass
class FrameEvidence:
    """What the visual expert saw in each sampled frame.

    probs: (T, 1000) class probabilities; embeddings: (T, D) L2-normalised pooled features; region_labels:
    (T, 9) top class per 3x3 cell; region_probs: (T, 9) its probability; slow_positions: frames of the slow
    pathway (the only ones whose regions are written into the timeline).
    """

    timestamps_s: np.ndarray
    probs: np.ndarray
    embeddings: np.ndarray
    region_labels: np.ndarray
    region_probs: np.ndarray
    duration_s: float
    slow_positions: list[int] = field(default_factory=list)


LITE_PLANNER = PlannerSettings(
    cut_similarity=0.78,  # a cosine distance of 0.22 between EfficientNet embeddings is a scene change
    min_clips=1,  # no rank cuts: pooled label embeddings cut only at real scene changes (and at max_clip_frames)
    max_clip_frames=8,
    min_tokens_per_clip=16,  # room for the time range and a few words
    min_tokens_per_frame=0,
    tokens_per_frame=None,  # text has no per-frame cap
)
OFFICIAL_BUDGET = 192  # the default's own rule: the dynamic planner at 192 language tokens
PHRASE_SEPARATOR = "; "


@dataclass(frozen=True)
class CompressorSettings:
    planner: PlannerSettings = LITE_PLANNER
    same_scene_novelty: float = 0.08  # below this novelty against the previous clip a clip is "same scene"
    label_threshold: float = 0.08  # mean class probability for a label to be worth naming
    region_threshold: float = 0.25
    num_slow_frames: int = 6
    langdc_min_tokens_per_clip: int = 8  # `langdc` cuts more, shorter clips (LangDC's 4 frames): smaller floors


def cosine_distances(embeddings: np.ndarray) -> np.ndarray:
    """(T, D) normalised -> (T-1,) distances between consecutive frames."""
    if len(embeddings) < 2:
        return np.zeros(0)
    return 1.0 - np.sum(embeddings[1:] * embeddings[:-1], axis=1)


def _normalised(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-8)


def line_text(header: str, phrases: list[str]) -> str:
    """'[0.0-2.0 s] first phrase; second phrase': whole phrases, always separated."""
    return " ".join(part for part in (header, PHRASE_SEPARATOR.join(phrases)) if part)


def fit_phrases(header: str, phrases: list[list[str]], budget: int, count: TokenCounter) -> list[str]:
    """For each phrase (in priority order) its first whole form that keeps the line within `budget` tokens.

    Each phrase is a list of forms from richest to barest ("tabby cat (a cat), tiger cat" -> "tabby cat (a cat)" ->
    "tabby cat"); a phrase none of whose forms fits is left out. Nothing is ever cut mid-phrase.
    """
    chosen: list[str] = []
    for forms in phrases:
        for form in forms:
            if form and count(line_text(header, [*chosen, form])) <= budget:
                chosen.append(form)
                break
    return chosen


def _region_forms(evidence: FrameEvidence, position: int, settings: CompressorSettings) -> list[str]:
    """'detail: window screen at top-left, tabby cat at center' and its shorter whole forms (fewer regions)."""
    cells: dict[str, list[str]] = {}
    for cell, (label, prob) in enumerate(zip(evidence.region_labels[position], evidence.region_probs[position])):
        if prob >= settings.region_threshold:
            cells.setdefault(class_names()[int(label)], []).append(REGION_NAMES[cell])
    if not cells:
        return []
    parts = []
    for name, where in sorted(cells.items(), key=lambda item: -len(item[1])):
        parts.append(f"{name} everywhere" if len(where) >= 7 else f"{name} at {'/'.join(where[:3])}")
    return ["detail: " + ", ".join(parts[:n]) for n in range(len(parts), 0, -1)]


def write_clip(
    evidence: FrameEvidence,
    clip: tuple[int, int],
    time_range: tuple[float, float],
    novelty_is_low: bool,
    budget: int,
    count: TokenCounter,
    settings: CompressorSettings,
) -> tuple[str, int, int]:
    """Write one clip as a line of whole phrases within `budget` tokens. Returns (text, fast_tokens, slow_tokens)."""
    start, end = clip
    header = f"[{time_range[0]:.1f}-{time_range[1]:.1f} s]"
    mean_probs = evidence.probs[start:end].mean(axis=0)
    ranked = [int(i) for i in np.argsort(-mean_probs)[:6]]
    confident = [i for i in ranked if mean_probs[i] >= settings.label_threshold] or ranked[:1]
    labels, hinted = [], set()
    for i in confident:  # the group hint once per group: "missile (a rocket), projectile"
        labels.append(describe_class(i, with_group=class_groups()[i] not in hinted))
        hinted.add(class_groups()[i])
    bare = class_names()[confident[0]]
    phrases: list[list[str]] = []
    if novelty_is_low:
        phrases.append([f"same scene ({labels[0]})", f"same scene ({bare})", "same scene"])
    else:
        phrases.append([", ".join(labels[:2]), labels[0], bare] if len(labels) > 1 else [labels[0], bare])
        slow = [p for p in evidence.slow_positions if start <= p < end]
        if slow:
            phrases.append(_region_forms(evidence, slow[0], settings))
        motion = cosine_distances(evidence.embeddings[start:end])
        if len(motion) and motion.mean() > 0.04:
            phrases.append(["the camera moves"])
        phrases.extend([[label] for label in labels[2:4]])
    header = header if count(header) <= budget else ""
    kept = fit_phrases(header, [forms for forms in phrases if forms], budget, count)
    text = line_text(header, kept)
    slow_text = next((p for p in kept if p.startswith("detail:")), "")
    slow_tokens = count(slow_text) if slow_text else 0
    used = count(text) if text else 0
    return text, max(0, used - slow_tokens), slow_tokens


def plan_for(
    evidence: FrameEvidence,
    compressor: str,
    budget_pct: float,
    settings: CompressorSettings,
    describe: Describe | None = None,
) -> CompressionPlan:
    """The shared planner on the expert's per-frame embeddings: `official` is dynamic at 192 tokens; `langdc`
    needs `describe` (a language expert's captions of the clips)."""
    if compressor == "official":
        budget_pct = 100.0
    budget = global_budget_for(OFFICIAL_BUDGET, budget_pct)
    if compressor == "langdc":
        if describe is None:
            raise ValueError("the langdc compressor needs a language expert to describe the clips")
        planner = replace(settings.planner, min_tokens_per_clip=settings.langdc_min_tokens_per_clip)
        plan = plan_langdc(evidence.embeddings, evidence.timestamps_s, budget, describe, planner)
    else:
        planner = plan_uniform if compressor == "uniform" else plan_clips
        plan = planner(evidence.embeddings, evidence.timestamps_s, budget, settings.planner)
    plan.compressor, plan.budget_pct, plan.official_tokens = compressor, float(budget_pct), OFFICIAL_BUDGET
    return plan


def compress(
    evidence: FrameEvidence,
    count: TokenCounter,
    settings: CompressorSettings | None = None,
    compressor: str = "official",
    budget_pct: float = 100.0,
    describe: Describe | None = None,
) -> tuple[CompressionPlan, list[ClipBudget], list[int], list[int]]:
    """Plan the clips, write each within its budget; returns the plan, the clips with their text, and per-frame
    fast and slow token counts."""
    settings = settings or CompressorSettings()
    plan = plan_for(evidence, compressor, budget_pct, settings, describe)
    ranges = plan.time_ranges(evidence.duration_s)
    densities = np.array([clip.density for clip in plan.clips])
    # Slow pathway: the middle frame of the densest clips gets region detail.
    densest = np.argsort(-densities, kind="stable")[: settings.num_slow_frames]
    evidence.slow_positions = sorted((plan.clips[i].start + plan.clips[i].end - 1) // 2 for i in densest)
    num_frames = len(evidence.timestamps_s)
    per_frame_fast, per_frame_slow = [0] * num_frames, [0] * num_frames
    texts, previous = [], None
    for index, clip in enumerate(plan.clips):
        start, end = clip.start, clip.end
        mean_embedding = _normalised(evidence.embeddings[start:end].mean(axis=0))
        novelty_is_low = previous is not None and 1.0 - float(mean_embedding @ previous) < settings.same_scene_novelty
        text, fast, slow = write_clip(
            evidence, (start, end), ranges[index], novelty_is_low, clip.budget, count, settings
        )
        for position, share in zip(range(start, end), split_by_weights(fast, [1.0] * (end - start))):
            per_frame_fast[position] = share
        slow_frames = [p for p in evidence.slow_positions if start <= p < end]
        if slow_frames and slow:
            per_frame_slow[slow_frames[0]] = slow
        clip.used_tokens = fast + slow
        texts.append(text)
        previous = mean_embedding
    return plan, plan.to_clip_budgets(duration_s=evidence.duration_s, texts=texts), per_frame_fast, per_frame_slow


def uncompressed_tokens(evidence: FrameEvidence, count: TokenCounter) -> int:
    """Tokens needed to write every sampled frame at full detail (top-5 labels and all nine regions)."""
    names = class_names()
    total = 0
    for position, t in enumerate(evidence.timestamps_s):
        top5 = ", ".join(names[int(i)] for i in np.argsort(-evidence.probs[position])[:5])
        regions = ", ".join(
            f"{REGION_NAMES[c]}: {names[int(label)]}" for c, label in enumerate(evidence.region_labels[position])
        )
        total += count(f"[{t:.1f} s] {top5}; {regions}")
    return total

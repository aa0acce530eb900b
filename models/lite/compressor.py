"""The LangDC-style dynamic compressor of the embedded default, in language space.

LangDC lets a small language expert caption each clip, and the caption's length *is* the clip's token count, so
rich clips get more tokens than redundant ones. Training-free, we do the same with a visual expert's evidence:
the timeline is cut into clips at scene changes (bounded in length), each clip gets a semantic density (novelty
against the previous clip, how many distinct things are confidently seen, entropy, motion), the global token
budget is split across clips in proportion to density, and each clip is written as a line of text that stays
within its budget (counted with the LLM's tokenizer): rich clips get labels, regions and motion words, redundant
ones only "same scene". The fixed-rate baseline (an equal split of the same global budget) is kept alongside.
Everything here is pure numpy and text: no model weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.base import ClipBudget
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


@dataclass(frozen=True)
class CompressorSettings:
    cut_distance: float = 0.22  # cosine distance between consecutive frames that counts as a scene change
    max_clip_frames: int = 8
    same_scene_novelty: float = 0.08  # below this novelty a clip is written as "same scene"
    label_threshold: float = 0.08  # mean class probability for a label to be worth naming
    region_threshold: float = 0.25
    min_tokens_per_clip: int = 16  # room for the time range and a few words
    num_slow_frames: int = 6


def cosine_distances(embeddings: np.ndarray) -> np.ndarray:
    """(T, D) normalised -> (T-1,) distances between consecutive frames."""
    if len(embeddings) < 2:
        return np.zeros(0)
    return 1.0 - np.sum(embeddings[1:] * embeddings[:-1], axis=1)


def segment_clips(embeddings: np.ndarray, settings: CompressorSettings) -> list[tuple[int, int]]:
    """Cut at scene changes and at `max_clip_frames`: returns [start, end) frame-position ranges."""
    distances = cosine_distances(embeddings)
    clips, start = [], 0
    for position in range(1, len(embeddings)):
        if distances[position - 1] > settings.cut_distance or position - start >= settings.max_clip_frames:
            clips.append((start, position))
            start = position
    clips.append((start, len(embeddings)))
    return clips


def _normalised(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-8)


def clip_densities(evidence: FrameEvidence, clips: list[tuple[int, int]], settings: CompressorSettings) -> np.ndarray:
    """Semantic density in [0, 1] per clip: novelty, distinct confident labels, entropy, motion."""
    densities, previous = [], None
    for start, end in clips:
        mean_embedding = _normalised(evidence.embeddings[start:end].mean(axis=0))
        mean_probs = evidence.probs[start:end].mean(axis=0)
        novelty = 1.0 if previous is None else float(np.clip((1.0 - mean_embedding @ previous) / 0.3, 0.0, 1.0))
        distinct = len(set(evidence.probs[start:end].argmax(axis=1))) + int(
            np.sum(mean_probs > settings.label_threshold)
        )
        labels = min(1.0, distinct / 8.0)
        entropy = float(-(mean_probs * np.log(mean_probs + 1e-12)).sum() / np.log(len(mean_probs)))
        motion = (
            float(np.clip(cosine_distances(evidence.embeddings[start:end]).mean() / 0.15, 0, 1))
            if end - start > 1
            else 0.0
        )
        densities.append(0.55 * novelty + 0.2 * labels + 0.15 * entropy + 0.1 * motion)
        previous = mean_embedding
    return np.clip(np.asarray(densities, dtype=float), 0.02, 1.0)


def split_by_weights(total: int, weights: Sequence[float]) -> list[int]:
    """Integer split of `total` proportional to `weights` (largest remainder), summing exactly to `total`."""
    weights = np.asarray(weights, dtype=float)
    if len(weights) == 0:
        return []
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(weights), 1.0 / len(weights))
    raw = weights * total
    shares = np.floor(raw).astype(int)
    for index in np.argsort(-(raw - shares), kind="stable")[: total - int(shares.sum())]:
        shares[index] += 1
    return shares.tolist()


def allocate_budgets(densities: np.ndarray, global_budget: int, min_tokens: int) -> list[int]:
    """Each clip gets a floor, the rest goes by density; the budgets sum exactly to `global_budget`."""
    floor = min(min_tokens, global_budget // max(1, len(densities)))
    extra = split_by_weights(global_budget - floor * len(densities), densities)
    return [floor + share for share in extra]


def fixed_rate_budgets(num_clips: int, global_budget: int) -> list[int]:
    return split_by_weights(global_budget, [1.0] * num_clips)


def _fit(phrases: list[str], budget: int, count: TokenCounter, separator: str = "; ") -> tuple[list[str], int]:
    """Keep phrases in priority order while the joined text fits in `budget` tokens."""
    kept: list[str] = []
    for phrase in phrases:
        if count(separator.join([*kept, phrase])) <= budget:
            kept.append(phrase)
    return kept, count(separator.join(kept)) if kept else 0


def _region_phrase(evidence: FrameEvidence, position: int, settings: CompressorSettings, main_label: int) -> str:
    """'top-left: window screen, center: tabby cat' — only confident cells, merged when they agree."""
    cells: dict[str, list[str]] = {}
    for cell, (label, prob) in enumerate(zip(evidence.region_labels[position], evidence.region_probs[position])):
        if prob >= settings.region_threshold:
            cells.setdefault(class_names()[int(label)], []).append(REGION_NAMES[cell])
    if not cells:
        return ""
    parts = []
    for name, where in sorted(cells.items(), key=lambda item: -len(item[1])):
        parts.append(f"{name} everywhere" if len(where) >= 7 else f"{name} at {'/'.join(where[:3])}")
    return "detail: " + ", ".join(parts)


def write_clip(
    evidence: FrameEvidence,
    clip: tuple[int, int],
    time_range: tuple[float, float],
    density: float,
    novelty_is_low: bool,
    budget: int,
    count: TokenCounter,
    settings: CompressorSettings,
) -> tuple[str, int, int]:
    """Write one clip as a line of text within `budget` tokens. Returns (text, fast_tokens, slow_tokens)."""
    start, end = clip
    header = f"[{time_range[0]:.1f}-{time_range[1]:.1f} s]"
    mean_probs = evidence.probs[start:end].mean(axis=0)
    ranked = [int(i) for i in np.argsort(-mean_probs)[:6]]
    confident = [i for i in ranked if mean_probs[i] >= settings.label_threshold] or ranked[:1]
    labels, hinted = [], set()
    for i in confident:  # the group hint once per group: "missile (a rocket), projectile"
        labels.append(describe_class(i, with_group=class_groups()[i] not in hinted))
        hinted.add(class_groups()[i])
    motion = cosine_distances(evidence.embeddings[start:end])
    phrases: list[str] = []
    if novelty_is_low:
        phrases.append(
            f"same scene ({labels[0]})" if count(f"{header} same scene ({labels[0]})") <= budget else "same scene"
        )
    else:
        phrases.append(", ".join(labels[:2]))
        slow = [p for p in evidence.slow_positions if start <= p < end]
        if slow:
            phrases.append(_region_phrase(evidence, slow[0], settings, ranked[0]))
        if len(motion) and motion.mean() > 0.04:
            phrases.append("the camera moves")
        phrases.extend(labels[2:4])
    phrases = [p for p in phrases if p]
    kept, _ = _fit([header, *phrases], budget, count, separator=" ")
    if len(kept) == 1 and budget > count(header):  # even the first phrase is too long: cut it to the budget
        words = phrases[0].split()
        while words and count(f"{header} {' '.join(words)}") > budget:
            words.pop()
        kept = [header, " ".join(words)] if words else kept
    text = " ".join(kept)
    slow_text = next((p for p in kept if p.startswith("detail:")), "")
    slow_tokens = count(slow_text) if slow_text else 0
    return text, max(0, count(text) - slow_tokens), slow_tokens


def clip_time_ranges(evidence: FrameEvidence, clips: list[tuple[int, int]]) -> list[tuple[float, float]]:
    """Clip boundaries half-way between the last frame of one clip and the first of the next."""
    t = evidence.timestamps_s
    bounds = [0.0] + [float(t[start - 1] + t[start]) / 2 for start, _ in clips[1:]] + [float(evidence.duration_s)]
    return [(bounds[i], max(bounds[i + 1], bounds[i])) for i in range(len(clips))]


def compress(
    evidence: FrameEvidence, global_budget: int, count: TokenCounter, settings: CompressorSettings | None = None
) -> tuple[list[ClipBudget], list[int], list[int]]:
    """Clips with dynamic and baseline budgets and their text; plus per-frame fast and slow token counts."""
    settings = settings or CompressorSettings()
    clips = segment_clips(evidence.embeddings, settings)
    densities = clip_densities(evidence, clips, settings)
    budgets = allocate_budgets(densities, global_budget, settings.min_tokens_per_clip)
    baseline = fixed_rate_budgets(len(clips), global_budget)
    ranges = clip_time_ranges(evidence, clips)
    # Slow pathway: the middle frame of the densest clips gets region detail.
    densest = np.argsort(-densities, kind="stable")[: settings.num_slow_frames]
    evidence.slow_positions = sorted((clips[i][0] + clips[i][1] - 1) // 2 for i in densest)
    per_frame_fast = [0] * len(evidence.timestamps_s)
    per_frame_slow = [0] * len(evidence.timestamps_s)
    result, previous = [], None
    for index, ((start, end), density, budget) in enumerate(zip(clips, densities, budgets)):
        mean_embedding = _normalised(evidence.embeddings[start:end].mean(axis=0))
        novelty_is_low = previous is not None and 1.0 - float(mean_embedding @ previous) < settings.same_scene_novelty
        text, fast, slow = write_clip(
            evidence, (start, end), ranges[index], float(density), novelty_is_low, budget, count, settings
        )
        for position, share in zip(range(start, end), split_by_weights(fast, [1.0] * (end - start))):
            per_frame_fast[position] = share
        slow_frames = [p for p in evidence.slow_positions if start <= p < end]
        if slow_frames and slow:
            per_frame_slow[slow_frames[0]] = slow
        result.append(
            ClipBudget(
                index=index,
                start_s=ranges[index][0],
                end_s=ranges[index][1],
                frame_positions=list(range(start, end)),
                density=float(density),
                budget=int(budget),
                baseline_budget=int(baseline[index]),
                used_tokens=fast + slow,
                text=text,
            )
        )
        previous = mean_embedding
    return result, per_frame_fast, per_frame_slow


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

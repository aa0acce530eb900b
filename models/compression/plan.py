"""The shared planner: per-frame features + a global token budget -> clips and per-clip budgets that sum exactly.

Every model plans its clips here, so the studio has one notion of a clip and a budget. The rule is the DySeg
segmentation of the FastVID paper with HoliTom-style content counting, plus one exact allocation of our own:
consecutive frames are compared per position (`s_t(q)`, cosine), a clip starts where the mean similarity `m_t` is
below `cut_similarity` or among the `min_clips - 1` lowest (only where it is below `rank_guard`, so a static video
is not cut at noise); clips shorter than `min_clip_frames` join their more similar neighbour, long ones are split
into equal parts of at most `max_clip_frames`, and the clip count is capped so every clip can get its floor. A
frame's novelty is how many of its positions changed since the previous frame (`clip((1 - s) / (1 -
token_similarity), 0, 1)` summed; the first frame is all new); a clip's content is the sum over its frames. Budgets:
a floor per clip, the rest by `alpha * length share + (1 - alpha) * content share`, by largest remainder with ties
to earlier clips, clamped to caps (the tokens a clip holds) with the excess handed on until nothing moves. Rounding
happens in this one place. The `uniform` plan is the content-blind baseline: equal-length clips at a fixed rate per
frame. `describe_official` turns a plan into a description of tokens a fixed rule chose (its clips, their counts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from models.base import ClipBudget


@dataclass(frozen=True)
class PlannerSettings:
    """Knobs of the planner. Token models keep the defaults; language-space models set their own floors."""

    cut_similarity: float = 0.85  # m_t below this always starts a clip (FastVID uses 0.9 on SigLIP features)
    min_clips: int = 8  # DySeg's c: cut at the c-1 lowest m_t ...
    rank_guard: float = 0.98  # ... but only where m_t is below this (a static video stays one clip)
    token_similarity: float = 0.8  # a position whose similarity to the previous frame is above this is static
    min_clip_frames: int = 2  # shorter clips join their more similar neighbour
    max_clip_frames: int | None = None  # split longer clips (None: no limit)
    max_clips: int = 32
    alpha: float = 0.25  # weight of clip length against content, so long quiet clips do not starve
    min_tokens_per_clip: int = 1
    min_tokens_per_frame: int = 1  # floors are L_k tokens per clip when they take at most `floor_share` of it
    floor_share: float = 0.5  # (else one floor per clip: floors eating the budget would make every plan equal)
    tokens_per_frame: int | None = None  # N: caps a clip at L_k * N; None for language-space models (no cap)
    uniform_clips: int = 8  # clip count of the content-blind plan


@dataclass
class PlannedClip:
    """One clip: frame positions [start, end), its density in [0, 1], budget, the fixed-rate baseline budget (the
    same tokens per frame) at the same global budget, the cap (tokens it can hold; None: no cap) and, after
    realizing, the tokens used. Under `langdc`, `caption` is the language expert's description of the clip and
    `caption_tokens` its length in tokens (what set the budget); the LangDC checkpoint's captioner fills them too."""

    start: int
    end: int
    density: float
    budget: int
    baseline_budget: int
    cap: int | None = None
    used_tokens: int | None = None
    caption: str | None = None
    caption_tokens: int | None = None

    @property
    def num_frames(self) -> int:
        return self.end - self.start


@dataclass
class CompressionPlan:
    """Clips and budgets for one video. `global_budget` is what was asked; `effective_budget` what the frames can
    hold (smaller only when every clip is at its cap). `frame_weights` (T,): per-frame novelty, which realizers
    use to split a clip's budget over its frames."""

    clips: list[PlannedClip]
    global_budget: int
    effective_budget: int
    num_frames: int
    timestamps_s: list[float] = field(default_factory=list)
    frame_weights: list[float] = field(default_factory=list)
    compressor: str = "dynamic"
    budget_pct: float = 100.0
    official_tokens: int = 0
    alpha: float = 0.25

    @property
    def budgets(self) -> list[int]:
        return [clip.budget for clip in self.clips]

    def time_ranges(self, duration_s: float | None = None) -> list[tuple[float, float]]:
        """Clip spans in seconds: boundaries half-way between the last frame of one clip and the first of the next."""
        t = self.timestamps_s or [float(i) for i in range(self.num_frames)]
        step = (t[-1] - t[0]) / max(1, len(t) - 1) if len(t) > 1 else 1.0
        end = duration_s if duration_s is not None else t[-1] + step / 2
        bounds = [0.0] + [(t[c.start - 1] + t[c.start]) / 2 for c in self.clips[1:]] + [float(end)]
        return [(float(bounds[i]), float(max(bounds[i + 1], bounds[i]))) for i in range(len(self.clips))]

    def to_clip_budgets(
        self, timestamps_s: Sequence[float] | None = None, duration_s: float | None = None, texts: Sequence[str] = ()
    ) -> list[ClipBudget]:
        """The studio's per-clip records (what the compression view draws)."""
        plan = self if timestamps_s is None else replace(self, timestamps_s=[float(x) for x in timestamps_s])
        ranges = plan.time_ranges(duration_s)
        return [
            ClipBudget(
                index=index,
                start_s=ranges[index][0],
                end_s=ranges[index][1],
                frame_positions=list(range(clip.start, clip.end)),
                density=float(clip.density),
                budget=int(clip.budget),
                baseline_budget=int(clip.baseline_budget),
                used_tokens=int(clip.budget if clip.used_tokens is None else clip.used_tokens),
                text=texts[index] if index < len(texts) else "",
                caption=clip.caption,
                caption_tokens=clip.caption_tokens,
            )
            for index, clip in enumerate(self.clips)
        ]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary: what an annotation record stores about the compression of one side."""
        used = [clip.used_tokens for clip in self.clips]
        return {
            "compressor": self.compressor,
            "budget_pct": float(self.budget_pct),
            "global_budget": int(self.global_budget),
            "effective_budget": int(self.effective_budget),
            "official_tokens": int(self.official_tokens),
            "num_frames": int(self.num_frames),
            "used_tokens": int(sum(u for u in used if u is not None)) if any(u is not None for u in used) else None,
            "clips": [{k: _plain(v) for k, v in asdict(clip).items()} for clip in self.clips],
        }


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers, so the plan dict goes through json as is."""
    return value.item() if isinstance(value, np.generic) else value


# ----------------------------------------------------------------------------------------------------------------
# Integer splits (the one place where rounding happens)


def split_by_weights(total: int, weights: Sequence[float]) -> list[int]:
    """Integer split of `total` proportional to `weights` by largest remainder, ties to earlier entries; all-zero
    weights split equally. Sums exactly to `total`."""
    weights = np.asarray(weights, dtype=float)
    if len(weights) == 0:
        return []
    weights = np.clip(weights, 0.0, None)
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(weights), 1.0 / len(weights))
    raw = weights * total
    shares = np.floor(raw + 1e-9).astype(int)
    shares = np.minimum(shares, total)
    leftover = total - int(shares.sum())
    for index in np.argsort(-(raw - shares), kind="stable")[:leftover]:
        shares[index] += 1
    return [int(s) for s in shares]


def allocate(
    total: int, weights: Sequence[float], floors: Sequence[int], caps: Sequence[int | None] | None = None
) -> list[int]:
    """Floors first, then the rest by weight, clamped to caps with the excess handed on until nothing moves.

    Sums exactly to `min(total, sum(caps))`; requires sum(floors) <= total and floors <= caps.
    """
    count = len(weights)
    budgets = np.asarray(floors, dtype=np.int64).copy()
    limit = np.array([np.iinfo(np.int64).max if c is None else c for c in (caps or [None] * count)], dtype=np.int64)
    assert budgets.sum() <= total and np.all(budgets <= limit), (total, floors, caps)
    weights = np.asarray(weights, dtype=float)
    uncapped = caps is None or any(c is None for c in caps)
    target = total if uncapped else int(min(total, sum(caps)))
    while budgets.sum() < target:
        open_ = budgets < limit
        open_weights = np.where(open_, weights, 0.0)
        if open_weights.sum() <= 0:
            open_weights = open_.astype(float)
        budgets = np.minimum(budgets + split_by_weights(target - int(budgets.sum()), open_weights), limit)
    return [int(b) for b in budgets]


def fixed_rate_baseline(total: int, lengths: Sequence[int], caps: Sequence[int | None] | None = None) -> list[int]:
    """The fixed-rate baseline of `total` tokens: the same tokens per *frame* (a clip's share follows its frame
    count, as `uniform` spends them), within the caps. A 2-frame clip gets an eighth of a 16-frame one's."""
    return allocate(total, [float(n) for n in lengths], [0] * len(lengths), caps)


# ----------------------------------------------------------------------------------------------------------------
# Signals and segmentation


def frame_signals(features: np.ndarray | torch.Tensor, token_similarity: float) -> tuple[np.ndarray, np.ndarray, int]:
    """(T, C) or (T, N, C) or (T, h, w, C) features -> (m (T-1,) mean similarity of consecutive frames, novelty
    (T,) changed positions per frame, N)."""
    x = torch.as_tensor(features)
    if x.ndim == 2:
        x = x[:, None, :]
    elif x.ndim == 4:
        x = x.flatten(1, 2)
    x = torch.nn.functional.normalize(x.float(), dim=-1)  # (T, N, C)
    num_positions = x.shape[1]
    if x.shape[0] < 2:
        return np.zeros(0), np.full(x.shape[0], float(num_positions)), num_positions
    similarity = (x[1:] * x[:-1]).sum(-1)  # (T-1, N): s_t(q)
    changed = ((1.0 - similarity) / (1.0 - token_similarity)).clamp(0.0, 1.0).sum(1)
    novelty = torch.cat([changed.new_tensor([float(num_positions)]), changed])
    return similarity.mean(1).cpu().double().numpy(), novelty.cpu().double().numpy(), num_positions


def segment(m: np.ndarray, num_frames: int, max_clips: int, settings: PlannerSettings) -> list[tuple[int, int]]:
    """Clip [start, end) ranges from the consecutive-frame similarities m (T-1,)."""
    cuts = {i + 1 for i in np.flatnonzero(m < settings.cut_similarity)}
    for i in np.argsort(m, kind="stable")[: max(0, settings.min_clips - 1)]:
        if m[i] < settings.rank_guard:
            cuts.add(int(i) + 1)
    starts = sorted({0, *cuts})
    clips = [(s, e) for s, e in zip(starts, [*starts[1:], num_frames])]

    def boundary_similarity(position: int) -> float:  # m at the cut that starts a clip at `position`
        return float(m[position - 1])

    # short clips (often a single frame at a cut) join their more similar neighbour
    while len(clips) > 1:
        short = [i for i, (s, e) in enumerate(clips) if e - s < settings.min_clip_frames]
        if not short:
            break
        i = short[0]
        left = boundary_similarity(clips[i][0]) if i > 0 else -np.inf
        right = boundary_similarity(clips[i + 1][0]) if i + 1 < len(clips) else -np.inf
        j = i - 1 if left >= right else i + 1
        a, b = sorted((i, j))
        clips[a : b + 1] = [(clips[a][0], clips[b][1])]
    if settings.max_clip_frames:  # long clips split into equal parts (no one-frame leftovers)
        split = []
        for s, e in clips:
            parts = -(-(e - s) // settings.max_clip_frames)
            edges = [s + round(k * (e - s) / parts) for k in range(parts + 1)]
            split += list(zip(edges[:-1], edges[1:]))
        clips = split
    # too many clips for the budget: remove the boundary between the most similar frames
    while len(clips) > max(1, max_clips):
        i = max(range(1, len(clips)), key=lambda k: (boundary_similarity(clips[k][0]), -k))
        clips[i - 1 : i + 1] = [(clips[i - 1][0], clips[i][1])]
    return clips


# ----------------------------------------------------------------------------------------------------------------
# Plans


def _floors(lengths: list[int], global_budget: int, caps: list[int | None], settings: PlannerSettings) -> list[int]:
    floors = [max(settings.min_tokens_per_clip, settings.min_tokens_per_frame * n) for n in lengths]
    if sum(floors) > settings.floor_share * global_budget:  # a low budget: one floor per clip, not per frame
        floors = [settings.min_tokens_per_clip] * len(lengths)
    if sum(floors) > global_budget:
        floors = [global_budget // len(lengths)] * len(lengths)
    return [f if c is None else min(f, c) for f, c in zip(floors, caps)]


def _plan(
    ranges: list[tuple[int, int]],
    novelty: np.ndarray,
    num_positions: int,
    global_budget: int,
    settings: PlannerSettings,
    content_aware: bool,
    timestamps_s: Sequence[float] | None,
    captions: Sequence[tuple[str, int]] | None = None,
) -> CompressionPlan:
    num_frames = len(novelty)
    ranges = [(int(s), int(e)) for s, e in ranges]
    lengths = [e - s for s, e in ranges]
    per_frame = settings.tokens_per_frame
    caps = [None if per_frame is None else n * per_frame for n in lengths]
    content = np.array([novelty[s:e].sum() for s, e in ranges])
    if captions is not None:  # LangDC: a clip's weight is the length of its description, nothing else
        weights = np.array([max(0, int(tokens)) for _, tokens in captions], dtype=float)
    elif content_aware:
        share = content / content.sum() if content.sum() > 0 else np.zeros(len(ranges))
        weights = settings.alpha * np.array(lengths) / num_frames + (1 - settings.alpha) * share
    else:
        weights = np.array(lengths, dtype=float)  # fixed rate: the same tokens per frame
    floors = _floors(lengths, global_budget, caps, settings)
    budgets = allocate(global_budget, weights, floors, caps)
    baseline = fixed_rate_baseline(sum(budgets), lengths, caps)
    clips = [
        PlannedClip(
            start=int(s),
            end=int(e),
            density=float(np.clip(content[i] / (lengths[i] * num_positions), 0.0, 1.0)),
            budget=budgets[i],
            baseline_budget=budgets[i] if not content_aware else baseline[i],
            cap=caps[i],
            caption=captions[i][0] if captions is not None else None,
            caption_tokens=int(captions[i][1]) if captions is not None else None,
        )
        for i, (s, e) in enumerate(ranges)
    ]
    return CompressionPlan(
        clips=clips,
        global_budget=int(global_budget),
        effective_budget=int(sum(budgets)),
        num_frames=num_frames,
        timestamps_s=[float(t) for t in timestamps_s] if timestamps_s is not None else [],
        frame_weights=[float(v) for v in novelty] if content_aware else [1.0] * num_frames,
        compressor="dynamic" if content_aware else "uniform",
        alpha=settings.alpha,
    )


def _check(num_frames: int, global_budget: int) -> None:
    if num_frames < 1:
        raise ValueError("cannot plan a video with no frames")
    if global_budget < 1:
        raise ValueError(f"the token budget must be at least 1, got {global_budget}")


def plan_clips(
    frame_features: np.ndarray | torch.Tensor,
    timestamps_s: Sequence[float] | None,
    global_budget: int,
    settings: PlannerSettings | None = None,
    **overrides: Any,
) -> CompressionPlan:
    """The dynamic plan (visual change, FastVID-style): clips cut where the frames change, budgets by how much
    changed, summing exactly.

    frame_features: (T, C) pooled per-frame features, or (T, N, C) / (T, h, w, C) token grids.
    """
    settings = replace(settings or PlannerSettings(), **overrides)
    m, novelty, num_positions = frame_signals(frame_features, settings.token_similarity)
    num_frames = len(novelty)
    _check(num_frames, global_budget)
    max_clips = min(settings.max_clips, max(1, global_budget // max(1, settings.min_tokens_per_clip)))
    ranges = segment(m, num_frames, max_clips, settings)
    return _plan(ranges, novelty, num_positions, global_budget, settings, True, timestamps_s)


def plan_uniform(
    frame_features: np.ndarray | torch.Tensor,
    timestamps_s: Sequence[float] | None,
    global_budget: int,
    settings: PlannerSettings | None = None,
    **overrides: Any,
) -> CompressionPlan:
    """The content-blind fixed-rate plan: `uniform_clips` equal-length clips, the same tokens per frame.

    The features only give each clip its density for display; they never move a boundary or a budget.
    """
    settings = replace(settings or PlannerSettings(), **overrides)
    _, novelty, num_positions = frame_signals(frame_features, settings.token_similarity)
    num_frames = len(novelty)
    _check(num_frames, global_budget)
    count = max(1, min(settings.uniform_clips, num_frames, global_budget // max(1, settings.min_tokens_per_clip)))
    edges = [round(k * num_frames / count) for k in range(count + 1)]
    ranges = [(edges[k], edges[k + 1]) for k in range(count)]
    plan = _plan(ranges, novelty, num_positions, global_budget, settings, False, timestamps_s)
    for clip in plan.clips:  # density is shown, not used
        clip.density = float(np.clip(novelty[clip.start : clip.end].sum() / (clip.num_frames * num_positions), 0, 1))
    return plan


LANGDC_CLIP_FRAMES = 4  # LangDC captions clips of 4 frames; longer spans are split so each part gets its own words
Describe = Callable[[list[tuple[int, int]]], list[tuple[str, int]]]  # clip ranges -> (caption, tokens written)


def plan_langdc(
    frame_features: np.ndarray | torch.Tensor,
    timestamps_s: Sequence[float] | None,
    global_budget: int,
    describe: Describe,
    settings: PlannerSettings | None = None,
    **overrides: Any,
) -> CompressionPlan:
    """The LangDC plan: clips cut where the frames change (as `plan_clips`), a language expert describes each one,
    and each clip's budget follows the number of tokens its description took (LangDC's semantic density) through
    the one exact allocation: floors first, the rest in proportion to caption length, within the caps. Clips are at
    most `LANGDC_CLIP_FRAMES` long, as LangDC's, so a long shot's later parts can say "nothing new".

    describe: clip ranges [start, end) -> (caption, caption tokens) per clip.
    """
    settings = replace(settings or PlannerSettings(), **overrides)
    longest_clip = min(settings.max_clip_frames or LANGDC_CLIP_FRAMES, LANGDC_CLIP_FRAMES)
    settings = replace(settings, max_clip_frames=longest_clip)
    m, novelty, num_positions = frame_signals(frame_features, settings.token_similarity)
    num_frames = len(novelty)
    _check(num_frames, global_budget)
    max_clips = min(settings.max_clips, max(1, global_budget // max(1, settings.min_tokens_per_clip)))
    ranges = segment(m, num_frames, max_clips, settings)
    captions = describe([(int(s), int(e)) for s, e in ranges])
    if len(captions) != len(ranges):
        raise ValueError(f"the language expert described {len(captions)} clips, the plan has {len(ranges)}")
    plan = _plan(ranges, novelty, num_positions, global_budget, settings, True, timestamps_s, captions)
    longest = max(1, max(int(tokens) for _, tokens in captions))
    for clip in plan.clips:  # the density shown is the semantic one: caption length against the longest caption
        clip.density = float(clip.caption_tokens) / longest
    plan.compressor = "langdc"
    return plan


def global_budget_for(official_tokens: int, budget_pct: float) -> int:
    """The global budget at `budget_pct` % of the official count (at least one token)."""
    if not budget_pct > 0:
        raise ValueError(f"the budget must be a positive percentage, got {budget_pct}")
    return max(1, int(round(official_tokens * budget_pct / 100.0)))


def describe_official(plan: CompressionPlan, per_frame_counts: Sequence[int]) -> CompressionPlan:
    """Recast a content plan as a description of tokens a fixed rule already chose (the `official` rule, or
    SlowFast-LLaVA's pathways): each clip's budget (and used tokens) is the tokens that come from its frames; the
    baseline is their total at the same tokens per frame."""
    total = int(sum(per_frame_counts))
    for clip in plan.clips:
        clip.budget = clip.used_tokens = int(sum(per_frame_counts[clip.start : clip.end]))
        clip.cap = None
    baseline = fixed_rate_baseline(total, [clip.num_frames for clip in plan.clips])
    for clip, share in zip(plan.clips, baseline):
        clip.baseline_budget = share
    plan.global_budget = plan.effective_budget = total
    plan.compressor, plan.budget_pct, plan.official_tokens = "official", 100.0, total
    return plan

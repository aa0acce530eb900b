"""The embedded default (`slowfast-lite`) as an online assistant: EfficientNet decides when to speak, SmolLM2 speaks.

Fast path, every frame (one EfficientNet-Lite0 forward, batched when a file is replayed): the frame's label
distribution and pooled embedding are compared with the recent context, the last `context_frames` frames (2 s at
2 fps). The respond score is the frame's novelty against the most similar context frame, a mix of embedding
distance (scene changes) and label total-variation distance (new objects):

    score = w * min_c clip(1 - cos(e, e_c), 0, 1) + (1 - w) * min_c TV(p, p_c),   1.0 for the first frame.

On the example clips, hard cuts between different photos score 0.75-0.95 and camera moves within a shot stay
below 0.3, so the default θ = 0.5 (bar 0.5) sits in the middle of that gap. The scores depend only on the frames,
never on earlier decisions, so raising θ can only add remarks (monotone by construction).

Slow path, on a responding (key) frame: LION-FS-style grid detail in language. The keyframe's 7x7 feature map is
pooled to 2x2 quadrants and classified (the classifier is linear, so this equals pooling its class activation
maps), giving a label per quadrant. The prompt says what the context showed before, what the keyframe shows now
(global labels plus quadrant labels that add something) and, first, the main new label; SmolLM2-135M-Instruct,
steered by a system line and four few-shot turns, writes one short sentence on what changed ("Now we see an
espresso."). A 135M model
sometimes names something else: when the remark does not name the keyframe's main new object, " (seen: <label>)"
is appended to it, so every remark is grounded in what the classifier saw. remark_text="template" skips the LLM
and writes "Now: <labels>." instead, as does a late remark (the player already more than 2 s past its frame), so
that a slow CPU falls behind by at most one LLM remark instead of drifting further and further.

Questions are answered from a bounded language memory of the stream: scenes (cut where the score passes 0.5,
independently of θ) written as timed lines of labels, the current scene marked "(now)", with a few-shot prompt of
its own (the offline timeline prompt answered live questions with the first scene's labels). The only KV cache is
SmolLM's own, per generation; what persists is the scene list (at most `max_scenes`) and the context window, so a
session's size does not grow with time.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from models.base import GenerationParams, file_sha256
from models.lite.efficientnet import preprocess
from models.lite.labels import class_groups, class_names, describe_class
from models.lite.llm import Generated
from models.lite.model import LiteVideoLLM
from models.online.base import OnlineParams, OnlineSession, Remark, SessionLimits

QUADRANT_NAMES = ("top-left", "top-right", "bottom-left", "bottom-right")

REMARK_SYSTEM = (
    "You comment on a live video in one short sentence. You cannot see the video: a classifier tells you what is "
    "new, what it sees now (overall and in the corners of the picture) and what it saw before. Say what is new now, "
    "using the classifier's words."
)
# Four toy changes (cuts to new subjects, the opening frame, a corner detail), so the model learns to name the new
# thing and nothing else. Labels of the example clips never appear here: a shared label would be copied into
# remarks. "New" comes first: with "Before" first the 135M model often named the old subject.
REMARK_FEW_SHOT = (
    (
        "New: golden retriever (a dog).\nNow: golden retriever (a dog), Labrador retriever; bottom-left: tennis "
        "ball.\nBefore: sports car (a car).",
        "Now a golden retriever appears, with a tennis ball.",
    ),
    ("New: pizza (a food).\nNow: pizza (a food); top-right: plate.\nBefore: nothing yet.", "A pizza on a plate."),
    (
        "New: airliner (an aircraft).\nNow: airliner (an aircraft), warplane; bottom-right: wing.\nBefore: volcano "
        "(a landscape).",
        "Now we see an airliner.",
    ),
    (
        "New: volcano (a landscape).\nNow: volcano (a landscape), valley.\nBefore: airliner (an aircraft).",
        "Now a volcano appears.",
    ),
)


ANSWER_SYSTEM = (
    "You answer questions about a live video while it plays. You cannot see it: you get what a classifier saw, "
    "scene by scene, ending with what is on screen now. Answer in one short sentence, only from these lines."
)
# The offline model's timeline prompt made SmolLM answer "A mosque." to "What animal is in the video?" on the
# montage (it latched onto the first scene); marking the current scene "(now)" and these turns fixed that.
# As for remarks, no label the classifier gives the example clips appears here (an earlier "tabby cat" turn made
# every animal question about the cat clip come back as that turn's answer, right or wrong); two animal turns with
# different animals and answer shapes keep the model from copying either (9 of 10 probe questions right, was 7).
ANSWER_FEW_SHOT = (
    (
        "Seen so far:\n[0.0-4.0 s] sports car (a car), convertible\n[4.0-6.5 s] golden retriever (a dog), tennis "
        "ball (now)\n\nQuestion: What is on screen now?",
        "A golden retriever with a tennis ball.",
    ),
    ("Seen so far:\n[0.0-3.0 s] pizza (a food), plate (now)\n\nQuestion: Is there an animal?", "No, only a pizza."),
    (
        "Seen so far:\n[0.0-2.0 s] volcano (a landscape)\n[2.0-5.0 s] goldfish (a fish)\n[5.0-8.0 s] airliner (an "
        "aircraft), wing (now)\n\nQuestion: What animal did we see?",
        "A goldfish, from 2.0 to 5.0 s.",
    ),
    (
        "Seen so far:\n[0.0-3.0 s] hummingbird (a bird), jay (now)\n\nQuestion: What animal is on screen now?",
        "A hummingbird.",
    ),
    (
        "Seen so far:\n[0.0-2.5 s] teapot (a kitchen item), tray\n[2.5-6.0 s] canoe (a boat), boat paddle "
        "(now)\n\nQuestion: Is there a boat?",
        "Yes, a canoe, on screen now.",
    ),
)


@dataclass(frozen=True)
class LiteOnlineSettings:
    """Knobs of the embedded online model (defaults measured on assets/examples.json, see the module docstring)."""

    context_frames: int = 4  # the recent context a frame is compared with (2 s at 2 fps)
    embedding_weight: float = 0.5  # score = w * embedding novelty + (1 - w) * label novelty
    labels_per_frame: int = 3
    label_min_prob: float = 0.05
    region_min_prob: float = 0.3  # a quadrant label is mentioned when it is this sure and adds a new name
    scene_bar: float = 0.5  # score that starts a new scene in the question-answering memory (independent of θ)
    max_scenes: int = 12
    input_max_side: int = 448  # decode size; EfficientNet sees a 224 px centre crop of the short side
    batch_size: int = 16


@dataclass
class EncodedFrame:
    """Fast-path output for one frame: probs (1000,), embedding (1280,) L2-normalised, and per quadrant (4, k)
    the top classes and their probabilities (quadrants in QUADRANT_NAMES order)."""

    probs: np.ndarray
    embedding: np.ndarray
    quadrant_labels: np.ndarray
    quadrant_probs: np.ndarray


@dataclass
class FrameNote:
    """What the slow path writes from: the keyframe's labels, the context's labels, quadrant detail."""

    time_s: float
    score: float
    now: list[tuple[int, float]]
    before: list[tuple[int, float]]
    quadrants: list[tuple[str, int, float]]
    main_object: int  # the most probable class not seen before (else the top class)


@dataclass
class _Scene:
    start_s: float
    end_s: float
    prob_sum: np.ndarray = field(repr=False)
    frames: int = 1


# ----------------------------------------------------------------------------------------------------------------
# Scoring (pure)


def novelty(frame: EncodedFrame, context: Sequence[EncodedFrame], embedding_weight: float) -> float:
    """Respond score in [0, 1]: how unlike the most similar context frame this frame is (1.0 with no context)."""
    if not context:
        return 1.0
    embeddings = np.stack([c.embedding for c in context])  # (C, D)
    probs = np.stack([c.probs for c in context])  # (C, 1000)
    embedding_distance = np.clip(1.0 - embeddings @ frame.embedding, 0.0, 1.0)
    label_distance = 0.5 * np.abs(probs - frame.probs[None]).sum(axis=1)
    score = embedding_weight * embedding_distance.min() + (1.0 - embedding_weight) * label_distance.min()
    return float(np.clip(score, 0.0, 1.0))


def top_labels(probs: np.ndarray, count: int, min_prob: float) -> list[tuple[int, float]]:
    order = np.argsort(probs)[::-1][:count]
    chosen = [(int(k), float(probs[k])) for k in order if probs[k] >= min_prob]
    return chosen or [(int(order[0]), float(probs[order[0]]))]


@functools.cache
def _name_words(index: int) -> frozenset[str]:
    words = set(re.findall(r"[a-z]+", class_names()[index].lower()))
    group = class_groups()[index]
    if group:
        words |= set(re.findall(r"[a-z]+", group.lower())) - {"or"}
    return frozenset(words - {"a", "an", "the", "of", "and"})


def names_class(text: str, index: int) -> bool:
    """Whether `text` names class `index` (a word of its name or of its everyday group, e.g. "cat")."""
    words = set(re.findall(r"[a-z]+", text.lower()))
    words |= {w[:-1] for w in words if w.endswith("s")}  # "rockets" names "rocket"
    return bool(words & _name_words(index))


def _same_thing(a: int, b: int) -> bool:
    return a == b or (class_groups()[a] is not None and class_groups()[a] == class_groups()[b])


def frame_note(
    time_s: float, score: float, frame: EncodedFrame, context: Sequence[EncodedFrame], settings: LiteOnlineSettings
) -> FrameNote:
    now = top_labels(frame.probs, settings.labels_per_frame, settings.label_min_prob)
    before: list[tuple[int, float]] = []
    if context:
        before = top_labels(np.mean([c.probs for c in context], axis=0), 2, settings.label_min_prob)
    new = [k for k, _ in now if not any(_same_thing(k, b) for b, _ in before)]
    named = {k for k, _ in now}
    quadrants = []
    for q, name in enumerate(QUADRANT_NAMES):
        label, prob = int(frame.quadrant_labels[q, 0]), float(frame.quadrant_probs[q, 0])
        if prob >= settings.region_min_prob and label not in named:
            quadrants.append((name, label, prob))
            named.add(label)
    return FrameNote(time_s, score, now, before, quadrants, main_object=new[0] if new else now[0][0])


def remark_prompt(note: FrameNote) -> str:
    """The user turn of a remark: "New: ...\\nNow: ...; top-left: ...\\nBefore: ..." (the classifier's words)."""
    before = ", ".join(describe_class(k) if i == 0 else class_names()[k] for i, (k, _) in enumerate(note.before))
    now = ", ".join(describe_class(k) if i == 0 else class_names()[k] for i, (k, _) in enumerate(note.now))
    regions = "".join(f"; {name}: {class_names()[k]}" for name, k, _ in note.quadrants)
    return f"New: {describe_class(note.main_object)}.\nNow: {now}{regions}.\nBefore: {before or 'nothing yet'}."


def template_remark(note: FrameNote) -> str:
    names = [class_names()[k] for k, _ in note.now]
    lead = "At the start" if not note.before else "Now"
    return f"{lead}: {', '.join(names)}."


def fix_articles(text: str) -> str:
    """'a' before a vowel ("A Egyptian cat" -> "An Egyptian cat"): labels are pasted in after the LLM's article."""
    return re.sub(r"\b([Aa]) (?=[AEIOUaeiou])", lambda m: m.group(1) + "n ", " ".join(text.split()))


def tidy_remark(text: str) -> str:
    """The first sentence, articles fixed."""
    text = " ".join(text.split())
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    return fix_articles(match.group(1) if match else text)


# ----------------------------------------------------------------------------------------------------------------
# Model and session


class LiteOnlineModel:
    """`slowfast-lite` in online mode. Shares the offline model's EfficientNet and SmolLM (loaded once)."""

    def __init__(self, model: LiteVideoLLM, settings: LiteOnlineSettings | None = None):
        self.model = model
        self.name = model.name
        self.settings = settings or LiteOnlineSettings()
        self._vision_lock = threading.Lock()  # 2 cores: two forwards at once only slow each other down
        self._text_cache: OrderedDict[tuple, str] = OrderedDict()
        self._replay_cache: OrderedDict[tuple, tuple[np.ndarray, list[EncodedFrame]]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.frames_encoded = 0

    def start_session(self, params: OnlineParams | None = None, limits: SessionLimits | None = None) -> LiteSession:
        return LiteSession(self, params or OnlineParams(), limits)

    # -- fast path

    @torch.inference_mode()
    def encode(self, pixels: np.ndarray) -> list[EncodedFrame]:
        """(T, H, W, 3) uint8 -> one `EncodedFrame` each: one EfficientNet forward per frame, in batches."""
        network = self.model.expert.network
        encoded: list[EncodedFrame] = []
        with self._vision_lock:
            for start in range(0, len(pixels), self.settings.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(pixels[start : start + self.settings.batch_size]))
                features = network.forward_features(preprocess(batch))  # (B, 1280, 7, 7)
                pooled = features.mean(dim=(2, 3))  # (B, 1280)
                probs = network._fc(pooled).softmax(-1)  # (B, 1000)
                embeddings = F.normalize(pooled, dim=-1)
                # The classifier is linear, so classifying 2x2-pooled features = pooling the CAMs to 2x2 (+ bias).
                quadrants = F.adaptive_avg_pool2d(features, 2).flatten(2).transpose(1, 2)  # (B, 4, 1280)
                quadrant_probs, quadrant_labels = network._fc(quadrants).softmax(-1).topk(2, dim=-1)  # (B, 4, 2)
                for i in range(len(batch)):
                    encoded.append(
                        EncodedFrame(
                            probs=probs[i].numpy().astype(np.float32),
                            embedding=embeddings[i].numpy().astype(np.float32),
                            quadrant_labels=quadrant_labels[i].numpy(),
                            quadrant_probs=quadrant_probs[i].numpy(),
                        )
                    )
            self.frames_encoded += len(pixels)
        return encoded

    # -- slow path text

    def generate(self, messages: list[dict[str, str]], params: GenerationParams) -> Iterator[str]:
        """Stream SmolLM's reply to `messages`; greedy replies are memoised (same prompt, same text)."""
        llm = self.model.llm
        prompt = llm.render(messages)
        key = (prompt, params)
        cacheable = params.temperature <= 0
        if cacheable:
            with self._cache_lock:
                cached = self._text_cache.get(key)
                if cached is not None:
                    self._text_cache.move_to_end(key)
            if cached is not None:
                yield cached
                return
        prompt_ids, _ = llm.encode_with_offsets(prompt)
        text = ""
        for item in llm.stream(prompt_ids, params):
            if isinstance(item, Generated):
                text = item.text
            else:
                yield item
        if cacheable:
            with self._cache_lock:
                self._text_cache[key] = text
                while len(self._text_cache) > 512:
                    self._text_cache.popitem(last=False)

    # -- server-side replay

    def replay(self, path: str, params: OnlineParams | None = None) -> list[Remark]:
        """A whole file through a fresh session; the fast path of a file is cached, so a θ sweep is cheap."""
        from models.online.frames import StreamReader

        params = params or OnlineParams()
        key = (_file_identity(path), params.fps, self.settings)
        with self._cache_lock:
            cached = self._replay_cache.get(key)
        if cached is None:
            with StreamReader(path, fps=params.fps, max_side=self.settings.input_max_side) as reader:
                times, encoded = [], []
                for pixels, batch_times in reader.batches(self.settings.batch_size):
                    encoded += self.encode(pixels)
                    times += list(batch_times)
            cached = (np.asarray(times), encoded)
            if len(encoded) <= 2400:  # 20 min at 2 fps; about 10 MB
                with self._cache_lock:
                    self._replay_cache[key] = cached
                    while len(self._replay_cache) > 4:
                        self._replay_cache.popitem(last=False)
        session = self.start_session(params)
        for _ in session.feed_encoded(cached[1], cached[0]):
            pass
        remarks = list(session.remarks)
        session.close()
        return remarks


class LiteSession(OnlineSession):
    """One viewer's stream: the context window (last `context_frames` encoded frames) and the scene memory."""

    def __init__(self, owner: LiteOnlineModel, params: OnlineParams, limits: SessionLimits | None = None):
        super().__init__(params, limits)
        self.owner = owner
        self.settings = owner.settings
        window = min(self.settings.context_frames, self.limits.max_context_frames)
        self.context: deque[EncodedFrame] = deque(maxlen=window)
        self.scenes: deque[_Scene] = deque(maxlen=self.settings.max_scenes)
        self._note: FrameNote | None = None

    def _encode(self, pixels: np.ndarray, times_s: np.ndarray) -> list[EncodedFrame]:
        return self.owner.encode(pixels)

    def _score(self, encoded: EncodedFrame, time_s: float) -> float:
        score = novelty(encoded, self.context, self.settings.embedding_weight)
        self._note = frame_note(time_s, score, encoded, self.context, self.settings)
        self.context.append(encoded)
        scene = self.scenes[-1] if self.scenes else None
        if scene is None or score > self.settings.scene_bar:
            self.scenes.append(_Scene(time_s, time_s, encoded.probs.astype(np.float64)))
        else:
            scene.end_s, scene.frames = time_s, scene.frames + 1
            scene.prob_sum += encoded.probs
        return score

    def _remark(self, time_s: float, score: float) -> Iterator[str | Remark]:
        note = self._note
        assert note is not None and note.time_s == time_s, "a remark follows the frame it is about"
        started = time.perf_counter()
        detail = {
            "now": [class_names()[k] for k, _ in note.now],
            "before": [class_names()[k] for k, _ in note.before],
            "quadrants": {name: class_names()[k] for name, k, _ in note.quadrants},
            "main_object": class_names()[note.main_object],
        }
        late = self.is_late(time_s)
        if late:
            detail["late"] = True  # the player was already past this frame: no time for the LLM
        if self.params.remark_text == "template" or late:
            text = template_remark(note)
            yield text
            yield Remark(time_s, score, text, detail=detail, timings_s={"remark": time.perf_counter() - started})
            return
        prompt = remark_prompt(note)
        detail["prompt"] = prompt
        messages = [{"role": "system", "content": REMARK_SYSTEM}]
        for user, assistant in REMARK_FEW_SHOT:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        messages.append({"role": "user", "content": prompt})
        raw = ""
        shown = ""
        for delta in self.owner.generate(messages, self.params.generation):
            raw += delta
            tidy = tidy_remark(raw)
            # Stream only what tidying will not take back (the first sentence, article fixes settled).
            settled = tidy[: max(0, len(tidy) - 2)] if not re.search(r"[.!?]$", tidy) else tidy
            if settled.startswith(shown) and len(settled) > len(shown):
                yield settled[len(shown) :]
                shown = settled
        text = tidy_remark(raw) or template_remark(note)
        if not names_class(text, note.main_object):
            text = f"{text} (seen: {class_names()[note.main_object]})"
            detail["grounding"] = "appended"
        if text.startswith(shown):
            if len(text) > len(shown):
                yield text[len(shown) :]
        timings = {"remark": time.perf_counter() - started}
        yield Remark(time_s, score, text, detail=detail, timings_s=timings)

    def timeline_text(self) -> str:
        """The stream so far in language: one line per remembered scene, the current one marked "(now)"."""
        lines = ["Seen so far:"]
        for i, scene in enumerate(self.scenes):
            probs = scene.prob_sum / scene.frames
            labels = top_labels(probs, self.settings.labels_per_frame, self.settings.label_min_prob)
            names = ", ".join(describe_class(k) if j == 0 else class_names()[k] for j, (k, _) in enumerate(labels))
            now = " (now)" if i == len(self.scenes) - 1 else ""
            lines.append(f"[{scene.start_s:.1f}-{max(scene.end_s, scene.start_s + 0.5):.1f} s] {names}{now}")
        return "\n".join(lines)

    def _answer(self, question: str, asked_at_s: float, time_s: float | None) -> Iterator[str | Remark]:
        started = time.perf_counter()
        timeline = self.timeline_text()
        messages = [{"role": "system", "content": ANSWER_SYSTEM}]
        for user, assistant in ANSWER_FEW_SHOT:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        messages.append({"role": "user", "content": f"{timeline}\n\nQuestion: {question}"})
        params = GenerationParams(**{**self.params.generation.as_dict(), "max_new_tokens": 48})
        raw = ""
        for delta in self.owner.generate(messages, params):
            raw += delta
            yield delta
        text = fix_articles(raw) or "I cannot tell from what I have seen so far."
        if not raw.strip():
            yield text
        score = self.decisions[-1].score if self.decisions else 0.0
        yield Remark(
            time_s if time_s is not None else asked_at_s,
            score,
            text,
            kind="answer",
            question=question,
            asked_at_s=asked_at_s,
            detail={"timeline": timeline},
            timings_s={"answer": time.perf_counter() - started},
        )

    def _reset_context(self) -> None:
        self.context.clear()
        self.scenes.clear()
        self._note = None


# ----------------------------------------------------------------------------------------------------------------
# Loading


_identities: dict[tuple[str, int, int], str] = {}
_loaded: dict[str, LiteOnlineModel] = {}
_load_lock = threading.Lock()


def _file_identity(path: str) -> str:
    """sha256 of a file, memoised by (path, size, mtime), so a replay cache survives renamed uploads."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _identities:
        if len(_identities) >= 256:  # uploads come and go: keep the memo small
            _identities.clear()
        _identities[key] = file_sha256(path)
    return _identities[key]


def load_online(name: str = "slowfast-lite") -> LiteOnlineModel:
    """The online wrapper around the registry's (process-wide, loaded-once) `slowfast-lite` model."""
    from models.registry import load_model

    with _load_lock:
        if name not in _loaded:
            model = load_model(name)
            if not isinstance(model, LiteVideoLLM):
                raise TypeError(f"{name} is not the embedded default; it has no online mode yet")
            online = LiteOnlineModel(model)
            online.encode(np.zeros((1, 224, 224, 3), dtype=np.uint8))  # first forwards are slow: pay that now
            _loaded[name] = online
        return _loaded[name]

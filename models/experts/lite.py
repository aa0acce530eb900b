"""The offline language expert (`lite`): the embedded default's visual expert names what is in each clip, and
SmolLM2-135M-Instruct writes a free one-sentence description from those names, greedy and capped.

A 135M model does not know what to leave out, so it is told which objects are new since the previous clip (a class
whose everyday group, "cat", was already there is not new) and which are still there, and a few-shot frame teaches
it LangDC's behaviour: new things get a full sentence, a clip with nothing new a few words ("Nothing new."). This
is not the budgeted timeline the embedded default answers from (`models/lite/compressor.py` writes that); it is a
description whose length sets the budgets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.base import Frames, GenerationParams
from models.experts.base import CAPTION_MAX_TOKENS, ClipCaption
from models.lite.compressor import FrameEvidence
from models.lite.labels import class_groups, class_names, describe_class

LABEL_THRESHOLD = 0.08  # mean class probability over the clip for a label to be named (as the timeline does)
MAX_LABELS = 4
SYSTEM = (
    "You describe short video clips. You get the objects a classifier saw that are new in the clip, and those still "
    "there from the clip before. Describe what is new in one sentence; if nothing is new, say so."
)
FEW_SHOT = [
    ("New: sports car (a car), convertible. Still there: nothing.", "A red sports car, a convertible, drives along a "
     "coastal road under a clear blue sky."),
    ("New: none.", "Nothing new."),
    ("New: golden retriever (a dog), tennis ball. Still there: nothing.", "A golden retriever runs across a green "
     "lawn, chasing a yellow tennis ball."),
    ("New: frisbee. Still there: golden retriever.", "The golden retriever jumps to catch a frisbee."),
    ("New: none.", "Nothing new."),
]  # fmt: skip


def clip_labels(evidence: FrameEvidence, start: int, end: int) -> list[int]:
    """The classes confidently seen in frames [start, end): mean probability above the threshold, best first."""
    mean = evidence.probs[start:end].mean(axis=0)
    ranked = [int(i) for i in np.argsort(-mean)[:MAX_LABELS]]
    return [i for i in ranked if mean[i] >= LABEL_THRESHOLD] or ranked[:1]


def _kind(index: int) -> str:
    """What counts as the same thing again: the class's everyday group ("cat"), else its own name."""
    return class_groups()[index] or class_names()[index]


def clip_prompt(labels: list[int], previous: list[int]) -> str:
    """'New: espresso (a drink), cup. Still there: nothing.', or 'New: none.' (a tabby cat after an Egyptian cat
    is not new)."""
    before = {_kind(i) for i in previous}
    new = [i for i in labels if _kind(i) not in before]
    still = [i for i in labels if _kind(i) in before]
    if not new:
        return "New: none."
    still_text = ", ".join(class_names()[i] for i in still) or "nothing"
    return f"New: {', '.join(describe_class(i) for i in new)}. Still there: {still_text}."


class LiteExpert:
    """EfficientNet-Lite0 labels + SmolLM2-135M descriptions; shares the embedded default's networks when given."""

    name = "lite"

    def __init__(self, visual=None, llm=None, max_new_tokens: int = CAPTION_MAX_TOKENS):
        if visual is None or llm is None:
            from models.lite.expert import VisualExpert
            from models.lite.llm import SmolLM

            visual, llm = visual or VisualExpert(), llm or SmolLM()
        self.visual, self.llm, self.max_new_tokens = visual, llm, max_new_tokens
        self.memo: dict[str, ClipCaption] = {}  # prompt -> caption: greedy decoding writes the same words again

    def describe(
        self, frames: Frames, clips: Sequence[tuple[int, int]], evidence: FrameEvidence | None = None
    ) -> list[ClipCaption]:
        if evidence is None:
            evidence, _ = self.visual.analyse(frames.pixels, frames.timestamps_s, frames.info.duration_s)
        captions, previous = [], []
        for start, end in clips:
            labels = clip_labels(evidence, start, end)
            captions.append(self.write(clip_prompt(labels, previous)))
            previous = labels
        return captions

    def write(self, prompt: str) -> ClipCaption:
        """SmolLM2's greedy description for one clip's prompt; its length in tokens is what it wrote."""
        from models.lite.llm import Generated

        if prompt in self.memo:
            return self.memo[prompt]
        messages = [{"role": "system", "content": SYSTEM}]
        for user, assistant in FEW_SHOT:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        messages.append({"role": "user", "content": prompt})
        ids, _ = self.llm.encode_with_offsets(self.llm.render(messages))
        params = GenerationParams(temperature=0.0, max_new_tokens=self.max_new_tokens)
        generated = next(item for item in self.llm.stream(ids, params) if isinstance(item, Generated))
        if len(self.memo) >= 512:
            self.memo.clear()
        self.memo[prompt] = ClipCaption(generated.text, len(generated.ids))
        return self.memo[prompt]


def load(host: object | None = None) -> LiteExpert:
    """The process's `lite` expert (the embedded default shares its own networks with it instead)."""
    return LiteExpert()

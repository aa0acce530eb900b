"""Prompts for the embedded default: the video timeline as text, plus a few-shot frame that keeps a 135M model honest.

Open-ended prompts make SmolLM2-135M invent stories. What works is a one-line system rule, then three short
question/answer turns over toy timelines, so the model learns to answer briefly and only from the timeline.
"""

from __future__ import annotations

from collections.abc import Callable

from models.base import ClipBudget

SYSTEM = (
    "You answer questions about a video. You cannot see the video: you get its timeline, where each line is a "
    "time range and the objects a classifier recognised. Answer in one short sentence, only from the timeline."
)
TEXT_ONLY_SYSTEM = "You are a helpful assistant. Answer briefly."

# One toy timeline with three short turns: the model learns to answer briefly, from the timeline, to use the
# "Most relevant" line when there is one, and to say "No." when something is absent. What mattered, measured on
# 11 questions about the example clips: the toy must be as long as real timelines with the answers in the middle
# (3 toy lines: 7/11, the model named the last line; 5 lines: 10/11), and one shared toy timeline beats a
# separate one per turn (the model then copied the last example's sentence shape).
TOY_TIMELINE = (
    "Video timeline (20.0 s):\n"
    "[0.0-4.5 s] sports car (a car), convertible; the camera moves\n"
    "[4.5-6.0 s] same scene\n"
    "[6.0-10.0 s] golden retriever (a dog), Labrador retriever; detail: tennis ball at bottom\n"
    "[10.0-14.0 s] pizza (a food)\n"
    "[14.0-20.0 s] airliner (an aircraft), wing"
)
FEW_SHOT = [  # (relevant line or "", question, answer)
    (TOY_TIMELINE.splitlines()[3], "What animal is in the video?", "A dog (a golden retriever)."),
    (TOY_TIMELINE.splitlines()[4], "What food is shown?", "A pizza."),
    ("", "Is there a person?", "No."),
]


def timeline_text(clips: list[ClipBudget], duration_s: float) -> str:
    lines = [f"Video timeline ({duration_s:.1f} s):"]
    lines += [clip.text for clip in clips if clip.text]
    return "\n".join(lines)


def user_turn(question: str, relevant: str | None, timeline: str | None = None) -> str:
    parts = [timeline, f"Most relevant: {relevant}" if relevant else None, f"Question: {question}"]
    return "\n\n".join(part for part in parts if part)


def few_shot_messages() -> list[dict[str, str]]:
    messages = []
    for index, (relevant, question, answer) in enumerate(FEW_SHOT):
        content = user_turn(question, relevant, TOY_TIMELINE if index == 0 else None)
        messages += [{"role": "user", "content": content}, {"role": "assistant", "content": answer}]
    return messages


def build_messages(
    timeline: str | None,
    history: list[dict[str, str]],
    question: str,
    hint_for: Callable[[str], str | None] = lambda question: None,
) -> list[dict[str, str]]:
    """The whole chat: system, few-shot, then the real turns with the timeline in the first real user turn.

    Every user turn is written as it was when first asked (same "Most relevant" hint from `hint_for`), so a
    follow-up's prompt starts with the previous prompt token for token and its KV cache can be reused.
    """
    if timeline is None:
        return [{"role": "system", "content": TEXT_ONLY_SYSTEM}, *history, {"role": "user", "content": question}]
    turns = []
    for index, turn in enumerate(history):
        if turn["role"] == "user":
            content = user_turn(turn["content"], hint_for(turn["content"]), timeline if index == 0 else None)
            turns.append({"role": "user", "content": content})
        else:
            turns.append({"role": turn["role"], "content": turn["content"]})
    turns.append({"role": "user", "content": user_turn(question, hint_for(question), None if history else timeline)})
    return [{"role": "system", "content": SYSTEM}, *few_shot_messages(), *turns]

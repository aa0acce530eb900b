"""Prompts for the embedded default: the video timeline as text, plus a few-shot frame that keeps a 135M model honest.

Open-ended prompts make SmolLM2-135M invent stories. What works is a one-line system rule, then three short
question/answer turns over toy timelines, so the model learns to answer briefly and only from the timeline.
"""

from __future__ import annotations

from models.base import ClipBudget

SYSTEM = (
    "You answer questions about a video. You cannot see the video: you get its timeline, where each line is a "
    "time range and the objects a classifier recognised. Answer in one short sentence, only from the timeline."
)
TEXT_ONLY_SYSTEM = "You are a helpful assistant. Answer briefly."

# Three toy videos, each with its own timeline, so the model learns to read the timeline it is given (one shared
# toy timeline made it copy the toy's objects into real answers) and to say "no" when something is absent.
FEW_SHOT = [
    (
        "Video timeline (9.0 s):\n[0.0-5.0 s] sports car (a car), convertible the camera moves\n"
        "[5.0-9.0 s] golden retriever (a dog), Labrador retriever detail: tennis ball at bottom",
        "What animal is in the video?",
        "A dog (a golden retriever).",
    ),
    (
        "Video timeline (8.0 s):\n[0.0-6.0 s] pizza (a food) detail: pizza everywhere\n[6.0-8.0 s] same scene",
        "What animal is in the video?",
        "None, only a pizza.",
    ),
    (
        "Video timeline (7.0 s):\n[0.0-3.0 s] volcano (a landscape)\n[3.0-7.0 s] airliner (an aircraft), wing",
        "What is shown after the cut?",
        "An airliner.",
    ),
]


def timeline_text(clips: list[ClipBudget], duration_s: float) -> str:
    lines = [f"Video timeline ({duration_s:.1f} s):"]
    lines += [clip.text for clip in clips if clip.text]
    return "\n".join(lines)


def few_shot_messages() -> list[dict[str, str]]:
    messages = []
    for timeline, question, answer in FEW_SHOT:
        messages += [
            {"role": "user", "content": f"{timeline}\n\nQuestion: {question}"},
            {"role": "assistant", "content": answer},
        ]
    return messages


def build_messages(timeline: str | None, history: list[dict[str, str]], question: str) -> list[dict[str, str]]:
    """The whole chat: system, few-shot (video turns only), the real timeline in the first real user turn."""
    if timeline is None:
        return [{"role": "system", "content": TEXT_ONLY_SYSTEM}, *history, {"role": "user", "content": question}]
    turns = [*history, {"role": "user", "content": question}]
    first = turns[0]
    turns[0] = {"role": "user", "content": f"{timeline}\n\nQuestion: {first['content']}"}
    turns = [turns[0]] + [
        {"role": t["role"], "content": f"Question: {t['content']}" if t["role"] == "user" else t["content"]}
        for t in turns[1:]
    ]
    return [{"role": "system", "content": SYSTEM}, *few_shot_messages(), *turns]

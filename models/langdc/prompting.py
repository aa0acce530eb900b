"""How LangDC's prompts are written and tokenized: the release's `qwen2` chat layout and its `<image>` placeholders.

The layout (an MPT-style template with ChatML markers and no newline after `<|im_end|>`):

    <|im_start|>system\nYou are a helpful AI assistant.<|im_end|><|im_start|>user\n<image>x16\n{question}<|im_end|>
    <|im_start|>assistant\n{answer}<|im_end|><|im_start|>user\n{next question}<|im_end|><|im_start|>assistant\n

The video's 16 placeholders open the first user turn. Tokenization follows the release's `tokenizer_image_token`:
the text between placeholders is tokenized piece by piece and each placeholder becomes the id -200, so the model
can replace the whole run (first to last placeholder) with the pool and caption tokens. Text a person types is
made inert first: a typed `<image>` or special token stays text.
"""

from __future__ import annotations

from models.langdc.captioner import CAPTION_PROMPT
from models.langdc.modeling import IMAGE_TOKEN_INDEX
from models.langdc.preprocessing import NUM_FRAMES

PLACEHOLDER = "<image>"
SYSTEM_PROMPT = "You are a helpful AI assistant."
CHAT_SPECIALS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", PLACEHOLDER)


def make_inert(text: str, specials: tuple[str, ...] = CHAT_SPECIALS) -> str:
    """A space after the first character of each special marker, so typed markers are read as plain text."""
    for token in specials:
        text = text.replace(token, token[:1] + " " + token[1:])
    return text


def render(history: list[dict[str, str]], question: str, with_video: bool, system: str = SYSTEM_PROMPT) -> str:
    """The conversation as the release writes it, ready for the assistant's next turn."""
    turns = [m for m in history if m.get("role") in ("user", "assistant")]
    system = next((m["content"] for m in history if m.get("role") == "system"), system)
    text = f"<|im_start|>system\n{make_inert(system)}<|im_end|>"
    video_placed = not with_video
    for message in [*turns, {"role": "user", "content": question}]:
        content = make_inert(str(message["content"]))
        if message["role"] == "user" and not video_placed:
            content = PLACEHOLDER * NUM_FRAMES + "\n" + content
            video_placed = True
        text += f"<|im_start|>{message['role']}\n{content}<|im_end|>"
    return text + "<|im_start|>assistant\n"


def tokenize_with_placeholders(text: str, tokenizer) -> list[int]:
    """Ids of `text` with -200 for each `<image>`, the pieces between placeholders tokenized separately."""
    ids: list[int] = []
    for index, piece in enumerate(text.split(PLACEHOLDER)):
        if index:
            ids.append(IMAGE_TOKEN_INDEX)
        if piece:
            ids += tokenizer(piece, add_special_tokens=False)["input_ids"]
    return ids


def caption_prompt_ids(tokenizer, num_clips: int, images_per_clip: int = 4) -> list[list[int]]:
    """The captioner's prompt, one identical row per clip (`<image>` x4 marks where the clip's tokens go)."""
    row = tokenize_with_placeholders(CAPTION_PROMPT.format(images=PLACEHOLDER * images_per_clip), tokenizer)
    return [list(row) for _ in range(num_clips)]

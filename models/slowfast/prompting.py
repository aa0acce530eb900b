"""ChatML (`qwen_1_5`) prompts with the `<image>` placeholder, tokenized the official way.

The official conversation template renders a turn as `<|im_start|>{role}\\n{text}<|im_end|>\\n` after the system
turn and ends with `<|im_start|>assistant\\n`; the video goes in as `<image>\\n` at the start of the first user
turn. Tokenization splits the prompt on the literal `<image>`, tokenizes each piece on its own and joins the pieces
with the id -200, which the model replaces by the fast tokens. We also report which token positions belong to
the current question, so the attention view can use exactly those tokens as queries.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGE_TOKEN_INDEX = -200
IMAGE_PLACEHOLDER = "<image>"
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
IM_START, IM_END = "<|im_start|>", "<|im_end|>"


@dataclass(frozen=True)
class TokenizedPrompt:
    """input_ids: prompt ids with at most one IMAGE_TOKEN_INDEX; question_positions: indices into input_ids."""

    text: str
    input_ids: list[int]
    question_positions: list[int]

    @property
    def placeholder_index(self) -> int | None:
        return self.input_ids.index(IMAGE_TOKEN_INDEX) if IMAGE_TOKEN_INDEX in self.input_ids else None


def sanitize_user_text(text: str) -> str:
    """A literal `<image>` in a message (typed, or echoed by the model) must not become a second placeholder."""
    return text.replace(IMAGE_PLACEHOLDER, "<image >")


def render_chatml(
    history: list[dict[str, str]], question: str, has_video: bool, system_prompt: str = DEFAULT_SYSTEM_PROMPT
) -> tuple[str, tuple[int, int]]:
    """The full prompt and the character span of `question` in it.

    history: earlier turns ({"role": "user" | "assistant" | "system", "content": ...}); a system message in it
    replaces the default system prompt. The video placeholder goes into the first user turn.
    """
    turns = [dict(turn) for turn in history if turn["role"] != "system"]
    for turn in history:
        if turn["role"] == "system":
            system_prompt = turn["content"]
    turns.append({"role": "user", "content": question})
    if has_video:
        first_user = next(turn for turn in turns if turn["role"] == "user")
        first_user["content"] = f"{IMAGE_PLACEHOLDER}\n{first_user['content']}"

    text = f"{IM_START}system\n{system_prompt}{IM_END}\n"
    for turn in turns[:-1]:
        text += f"{IM_START}{turn['role']}\n{turn['content']}{IM_END}\n"
    text += f"{IM_START}user\n"
    question_start = len(text) + len(turns[-1]["content"]) - len(question)
    text += f"{turns[-1]['content']}{IM_END}\n{IM_START}assistant\n"
    return text, (question_start, question_start + len(question))


def tokenize_with_placeholder(text: str, tokenizer, question_span: tuple[int, int] | None = None) -> TokenizedPrompt:
    """Split on `<image>`, tokenize each piece, join with IMAGE_TOKEN_INDEX; find the question's token positions.

    Positions need offset mappings (a "fast" tokenizer); without them the list is empty and callers fall back to
    every text token.
    """
    input_ids: list[int] = []
    question_positions: list[int] = []
    char_offset = 0
    for piece_index, piece in enumerate(text.split(IMAGE_PLACEHOLDER)):
        if piece_index > 0:
            input_ids.append(IMAGE_TOKEN_INDEX)
            char_offset += len(IMAGE_PLACEHOLDER)
        if piece:
            encoded = tokenizer(piece, add_special_tokens=False, return_offsets_mapping=tokenizer.is_fast)
            offsets = encoded.get("offset_mapping") or [None] * len(encoded["input_ids"])
            for token_id, span in zip(encoded["input_ids"], offsets, strict=True):
                if question_span is not None and span is not None:
                    start, end = span[0] + char_offset, span[1] + char_offset
                    if start < question_span[1] and end > question_span[0]:
                        question_positions.append(len(input_ids))
                input_ids.append(token_id)
        char_offset += len(piece)
    return TokenizedPrompt(text=text, input_ids=input_ids, question_positions=question_positions)


def assembled_position(position: int, placeholder_index: int | None, num_fast_tokens: int) -> int:
    """Where input_ids[position] lands once the placeholder is replaced by `num_fast_tokens` rows."""
    if placeholder_index is None or position < placeholder_index:
        return position
    return position - 1 + num_fast_tokens

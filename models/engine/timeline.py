"""The embedded default with its language model on an engine: perception in the studio, SmolLM2 on the server.

EfficientNet-Lite0, the LangDC-style compressor and the timeline are the embedded default's own (and its encode
cache entries, keyed by this model's name, are separate); only the chat that SmolLM2 would answer in-process goes
to the engine, which applies the same chat template. Token budgets are counted with the same tokenizer, loaded
here without the model. Serve the studio's converted SmolLM2 folder (`resolve_weights()` in `models/lite/llm.py`)
with vLLM and add `--engine NAME=URL,model=ID,input=timeline`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from models.base import Answer, GenerationParams, Message, TokenStats, VisualContext
from models.engine.adapter import engine_answer, generation_body, served_model, stream_text
from models.engine.client import EngineClient
from models.engine.config import EngineConfig
from models.engine.payload import chat_request
from models.lite.llm import resolve_weights
from models.lite.model import LiteVideoLLM


class TimelineTokenizer:
    """The embedded default's tokenizer without its model: what the compressor counts language tokens with."""

    def __init__(self) -> None:
        from transformers import AutoTokenizer

        path, self.source = resolve_weights()
        self.tokenizer = AutoTokenizer.from_pretrained(path)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


class EngineTimelineLLM(LiteVideoLLM):
    """`slowfast-lite` whose answers come from an engine; no attention (the server returns none)."""

    def __init__(self, config: EngineConfig, name: str | None = None, client: EngineClient | None = None):
        super().__init__(name=name or config.name, llm=TimelineTokenizer())
        self.config = config
        self.client = client or EngineClient(config)
        self.model_id = served_model(self.client)
        self.weights_source = f"{self.model_id} on the engine at {config.base_url}"

    def stream(
        self,
        context: VisualContext | None,
        history: list[Message],
        question: str,
        params: GenerationParams,
        want_attention: bool = True,
    ) -> Iterator[str | Answer]:
        messages = self.chat_messages(context, history, question)
        body = chat_request(self.model_id, messages, generation_body(params))
        text, usage, timings = yield from stream_text(self.client, body)
        stats = TokenStats()
        if context is not None:
            reported = f"the engine reported {usage.prompt_tokens} prompt and {usage.completion_tokens} answer tokens"
            stats = replace(
                context.stats, note=f"{context.stats.note}; {reported}" if usage.reported else context.stats.note
            )
        yield engine_answer(text, usage, timings, stats, with_video=context is not None)


def load(name: str, config: EngineConfig) -> EngineTimelineLLM:
    return EngineTimelineLLM(config, name=name)

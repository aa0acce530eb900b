"""Token-by-token answering with the LangDC LLM: prefill once, then one cached step per new token.

`prefill` runs the (1, S, H) input rows through the decoder into a `DynamicCache` and returns the last hidden
states (the caller picks the rows it wants logits for: the studio only the last one, conformance checks all of
them). `generate` yields one `GenerationStep` per new token: greedy at temperature 0, else nucleus sampling with a
seeded generator, stopping after a stop id (which is yielded) or `max_new_tokens`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass
class GenerationStep:
    token_id: int
    logits: torch.Tensor  # (V,) float32, what the token was chosen from


def choose_token(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> int:
    """Greedy when temperature is 0, else a draw from the smallest set of tokens holding `top_p` of the mass."""
    if temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        sorted_probs[sorted_probs.cumsum(0) - sorted_probs >= top_p] = 0.0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))


def prefill(llm, inputs_embeds: torch.Tensor, cache, start: int = 0) -> torch.Tensor:
    """Feed rows at positions start.. into `cache`; returns their (1, n, H) final hidden states."""
    positions = torch.arange(start, start + inputs_embeds.shape[1], device=inputs_embeds.device).unsqueeze(0)
    out = llm.model(inputs_embeds=inputs_embeds, position_ids=positions, past_key_values=cache, use_cache=True)
    return out.last_hidden_state


@torch.inference_mode()
def generate(
    llm,
    inputs_embeds: torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    stop_ids: tuple[int, ...] = (),
    cache=None,
    start: int = 0,
) -> Iterator[GenerationStep]:
    """Yield new tokens for the (1, S, H) rows fed at positions start.. (a `cache` may already hold 0..start-1)."""
    from transformers import DynamicCache

    cache = cache if cache is not None else DynamicCache(config=llm.config)
    generator = torch.Generator().manual_seed(seed)
    hidden = prefill(llm, inputs_embeds, cache, start)
    position = start + inputs_embeds.shape[1]
    for step in range(max_new_tokens):
        logits = llm.lm_head(hidden[:, -1]).float()[0]
        token = choose_token(logits, temperature, top_p, generator)
        yield GenerationStep(token, logits)
        if token in stop_ids or step + 1 == max_new_tokens:
            return
        embedded = llm.get_input_embeddings()(torch.tensor([[token]], device=inputs_embeds.device))
        hidden = prefill(llm, embedded, cache, position)
        position += 1

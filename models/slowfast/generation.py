"""Token-by-token generation with a KV cache, and the released model's decode-step rule for cross-attention.

The SHI-Labs release cross-attends only at prefill: after the prompt has been run, its hybrid layers see every new
token as "text only, no video" and multiply the cross-attention by zero. So the first new token comes from the
prefill logits (which include cross-attention) and every later token sees the video only through the cached
prompt states (the fast tokens and the cross-attended text rows). `prefill_only_cross_attention=True` (the
default) copies this; it is what reproduces the released models' outputs. `prefill_only_cross_attention=False`
lets every generated token cross-attend to the slow tokens too, which is how response tokens were treated in
training (token type 2); it changes greedy outputs, so it is an experiment, not a fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicCache

from models.slowfast.modeling import PromptInputs, SlowFastForCausalLM, VideoTokens


@dataclass
class GenerationStep:
    """One new token and the logits (V,) it was chosen from. `cross_attention` is the prefill's recorded
    attention of the requested rows (layer -> (Nr, Nv) weights, mean over heads), on the first step only."""

    token_id: int
    logits: torch.Tensor
    cross_attention: dict[int, torch.Tensor] | None = None


def choose_next_token(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> int:
    """Greedy when temperature is 0, else nucleus sampling from softmax(logits / temperature)."""
    if temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(0) - sorted_probs >= top_p  # keep the smallest prefix reaching top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


@torch.inference_mode()
def generate(
    model: SlowFastForCausalLM,
    prompt: PromptInputs,
    video: VideoTokens | None = None,
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    stop_token_ids: tuple[int, ...] = (),
    prefill_only_cross_attention: bool = True,
    record_rows: list[int] | None = None,
) -> Iterator[GenerationStep]:
    """Yield one `GenerationStep` per new token; stops after a stop token (which is yielded) or max_new_tokens.
    record_rows: prompt text rows whose cross-attention weights the first step should carry."""
    cache = DynamicCache(config=model.config)
    memory = model.memory_for(prompt, video, record_rows)
    generator = torch.Generator().manual_seed(seed)
    logits = model(prompt.inputs_embeds, past_key_values=cache, memory=memory, logits_to_keep=1)[0, -1].float()
    for step in range(max_new_tokens):
        token_id = choose_next_token(logits, temperature, top_p, generator)
        yield GenerationStep(token_id, logits, memory.attention if memory is not None and step == 0 else None)
        if token_id in stop_token_ids or step + 1 == max_new_tokens:
            return
        if memory is not None:
            # the new token is row 0 of the next input; the released rule gives it no cross-attention
            memory.query_rows = memory.query_rows.new_tensor([] if prefill_only_cross_attention else [0])
            memory.record_rows = None
        token = torch.tensor([[token_id]], device=model.device)
        logits = model(model.model.embed_tokens(token), past_key_values=cache, memory=memory)[0, -1].float()

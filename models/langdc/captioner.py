"""The CapPruner: a small Qwen2 that describes each clip, and whose caption length is that clip's token count.

Per clip, the captioner reads the caption prompt with its four `<image>` placeholders replaced by the clip's 832
visual tokens (4 context images x 144, then 4 frames x 64) and decodes, one batch row per clip, with a KV cache and
no attention mask (every row has the same length), up to 256 new tokens; finished rows continue with the pad id
until all are done. The release then keeps, per clip, the *inputs* of its decode steps as soft caption tokens:
step 0 feeds the prompt's last embedding and step k the embedding of the k-th generated id, so the soft tokens are
`[prompt[-1], E[g0], ..., E[g(n-2)]]`, cut at the clip's count `n` = the position of the first `<|endoftext|>` in its
ids (the last step is dropped when there is none: 256 steps give 255). Decoding follows the captioner's own
`generation_config.json`, as the release's `generate()` call sets no sampling arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CAPTION_PROMPT = (
    "<|im_start|>system\nYou are a helpful AI assistant.<|im_end|><|im_start|>user\n"
    "{images}\nPlease provide a brief description of the video, focusing on the main subjects, their actions, "
    "the background scenes.\n<|im_end|><|im_start|>assistant\n"
)
CAPTION_END_ID = 151643  # <|endoftext|>: the release cuts each caption at its first occurrence
MAX_CAPTION_TOKENS = 256


@dataclass(frozen=True)
class DecodeSettings:
    """What the captioner's generation_config.json asks for (greedy unless `do_sample`)."""

    eos_ids: tuple[int, ...] = (151645, CAPTION_END_ID)
    pad_id: int = CAPTION_END_ID
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    max_new_tokens: int = MAX_CAPTION_TOKENS

    @classmethod
    def from_generation_config(cls, values: dict) -> DecodeSettings:
        eos = values.get("eos_token_id", list(cls.eos_ids))
        eos = tuple(eos) if isinstance(eos, list) else (eos,)
        pad = values.get("pad_token_id")
        return cls(
            eos_ids=tuple(int(e) for e in eos if e is not None),
            pad_id=int(pad if pad is not None else eos[0]),
            do_sample=bool(values.get("do_sample", False)),
            temperature=float(values.get("temperature", 1.0) or 1.0),
            top_k=int(values.get("top_k", 0) or 0),
            top_p=float(values.get("top_p", 1.0) or 1.0),
            repetition_penalty=float(values.get("repetition_penalty", 1.0) or 1.0),
        )


@dataclass
class Captions:
    """Per clip: generated ids (C, L) (pad after a row finished), step inputs (C, L, d), counts and soft tokens."""

    ids: torch.Tensor
    step_inputs: torch.Tensor
    counts: list[int]

    def soft_tokens(self) -> torch.Tensor:
        """(sum(counts), d): the clips' soft caption tokens, concatenated in clip order."""
        return torch.cat([self.step_inputs[c, :count] for c, count in enumerate(self.counts)], dim=0)

    def caption_ids(self, clip: int) -> list[int]:
        """The ids the clip's caption text is read from: its first `count` generated ids."""
        return [int(i) for i in self.ids[clip, : self.counts[clip]]]


def caption_counts(ids: torch.Tensor, end_id: int = CAPTION_END_ID) -> list[int]:
    """The release's rule: index of the first `end_id` in each row, else the row length minus one."""
    counts = []
    for row in ids:
        hits = torch.nonzero(row == end_id).flatten()
        counts.append(int(hits[0]) if hits.numel() else int(row.numel()) - 1)
    return counts


def _next_tokens(logits: torch.Tensor, history: list[torch.Tensor], settings: DecodeSettings, generator):
    """(C, V) logits -> (C,) ids, with transformers' order: repetition penalty, temperature, top-k, top-p."""
    logits = logits.float()
    if settings.repetition_penalty != 1.0 and history:
        seen = torch.stack(history, dim=1)  # (C, steps)
        scores = logits.gather(1, seen)
        scores = torch.where(scores < 0, scores * settings.repetition_penalty, scores / settings.repetition_penalty)
        logits = logits.scatter(1, seen, scores)
    if not settings.do_sample:
        return logits.argmax(-1)
    logits = logits / settings.temperature
    if settings.top_k > 0:
        kth = logits.topk(min(settings.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if settings.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=False)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        remove = cumulative <= 1 - settings.top_p
        remove[:, -1] = False
        logits = logits.masked_fill(remove.scatter(1, order, remove), float("-inf"))
    return torch.multinomial(logits.softmax(-1).cpu(), 1, generator=generator).flatten().to(logits.device)


@torch.inference_mode()
def generate_captions(llm, inputs_embeds: torch.Tensor, settings: DecodeSettings, seed: int = 0) -> Captions:
    """Batched decode of the (C, P, d) caption inputs; stops when every row has emitted an eos id."""
    from transformers import DynamicCache

    count, length, _ = inputs_embeds.shape
    cache = DynamicCache(config=llm.config)
    device = inputs_embeds.device
    generator = torch.Generator().manual_seed(seed)
    embed = llm.get_input_embeddings()
    eos = torch.tensor(settings.eos_ids, device=device)
    unfinished = torch.ones(count, dtype=torch.bool, device=device)
    step_input = inputs_embeds
    positions = torch.arange(length, device=device).unsqueeze(0).expand(count, -1)
    ids, fed = [], [inputs_embeds[:, -1]]
    for step in range(settings.max_new_tokens):
        logits = llm(inputs_embeds=step_input, position_ids=positions, past_key_values=cache, use_cache=True,
                     logits_to_keep=1).logits[:, -1]  # fmt: skip
        token = _next_tokens(logits, ids, settings, generator)
        token = torch.where(unfinished, token, torch.full_like(token, settings.pad_id))
        ids.append(token)
        unfinished &= ~torch.isin(token, eos)
        if not unfinished.any() or step + 1 == settings.max_new_tokens:
            break
        step_input = embed(token).unsqueeze(1)  # (C, 1, d)
        fed.append(step_input[:, 0])
        positions = torch.full((count, 1), length + step, device=device)
    generated = torch.stack(ids, dim=1)
    return Captions(ids=generated, step_inputs=torch.stack(fed, dim=1), counts=caption_counts(generated))

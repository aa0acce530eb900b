"""Registry entry point: `load(name, repo_id)` returns a ready `SlowFastVideoLLM`, or says why it cannot.

The released checkpoints are 7B LLMs plus an 850M-parameter ConvNeXt tower (about 17 GB in fp16), so they need a
CUDA GPU and the Hugging Face hub (or a local copy: `repo_id` may be a folder). Without them `load` raises
`ModelUnavailableError` with the reason. The vocabulary is cut to the tokenizer's length, as the official loader
does, and decoding stops at ChatML's `<|im_end|>` or `<|endoftext|>` (and any eos in `generation_config.json`).
"""

from __future__ import annotations

import json
from pathlib import Path

from models.base import ModelUnavailableError
from models.slowfast.adapter import SlowFastVideoLLM
from models.zerogpu import on_zero_gpu

CHAT_STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


def _stop_token_ids(tokenizer, folder: Path) -> tuple[int, ...]:
    ids = [tokenizer.convert_tokens_to_ids(token) for token in CHAT_STOP_TOKENS if token in tokenizer.get_vocab()]
    generation_config = folder / "generation_config.json"
    if generation_config.is_file():
        eos = json.loads(generation_config.read_text()).get("eos_token_id")
        ids += eos if isinstance(eos, list) else [eos] if eos is not None else []
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return tuple(dict.fromkeys(ids))


def load(
    name: str,
    repo_id: str,
    *,
    device: str | None = None,
    dtype: str = "float16",
    prefill_only_cross_attention: bool = True,
) -> SlowFastVideoLLM:
    """Load a Slow-Fast checkpoint (hub id or folder) for the studio.

    device: None means "cuda" and refuses to run without it; pass "cpu" to run anyway (fp32, very slow for 7B);
    "auto" means CUDA when there is one, else CPU (the registry's choice for small local checkpoints).
    dtype: "float16" (the official inference dtype) or "bfloat16" on CUDA; CPU always uses float32.
    """
    import torch

    from models.hub import resolve_folder
    from models.slowfast.checkpoint import HUB_PATTERNS
    from models.slowfast.modeling import SlowFastForCausalLM

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device is None:
        if not torch.cuda.is_available():
            raise ModelUnavailableError(
                f"{name} needs a CUDA GPU: it is a 7B LLM plus an 850M-parameter vision tower (~17 GB in fp16), "
                "and no GPU is visible on this machine"
            )
        device = "cuda"
    torch_dtype = torch.float32 if device == "cpu" else getattr(torch, dtype)

    folder = resolve_folder(repo_id, allow_patterns=HUB_PATTERNS)  # raises ModelUnavailableError, saying why
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    load_device = "cpu" if on_zero_gpu() else device  # ZeroGPU: load on CPU, then `.to("cuda")` is intercepted
    model = SlowFastForCausalLM.from_pretrained(
        folder, dtype=torch_dtype, device=load_device, vocab_size=len(tokenizer)
    )
    model.to(device)
    return SlowFastVideoLLM(
        name,
        model,
        tokenizer,
        stop_token_ids=_stop_token_ids(tokenizer, folder),
        prefill_only_cross_attention=prefill_only_cross_attention,
    )

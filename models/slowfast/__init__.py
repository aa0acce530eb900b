"""Our implementation of the SHI-Labs Slow-Fast Video MLLM (spec: ../shared/specs/slowfast_mllm.md).

Layout: `config.py` (official config.json fields), `convnext.py` (vision tower, timm key names), `tokens.py` (slow and
fast visual tokens), `modeling.py` (Qwen2 decoder with hybrid cross-attention layers, `from_pretrained`),
`checkpoint.py` (weight files, tower shape, strict keys), `generation.py` (KV-cached decoding and the official
decode-step rule), `preprocessing.py` (576 px resize / crop / CLIP normalisation), `prompting.py` (ChatML with the
`<image>` placeholder), `adapter.py` (the studio's `VideoLLM`), `loader.py` (registry entry point) and `testing.py`
(tiny random checkpoints). Import the submodules directly; this package file imports nothing heavy.
"""

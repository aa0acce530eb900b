"""Our implementation of the SHI-Labs Slow-Fast Video MLLM (Qwen2 with hybrid cross-attention layers over slow tokens).

Layout: `config.py` (the released config.json fields), `convnext.py` (vision tower, timm key names), `tokens.py`
(slow and fast visual tokens), `modeling.py` (Qwen2 decoder with hybrid cross-attention layers, `from_pretrained`),
`checkpoint.py` (weight files, tower shape, strict keys), `generation.py` (KV-cached decoding and the released
decode-step rule), `preprocessing.py` (576 px resize / crop / CLIP normalisation), `prompting.py` (ChatML with the
`<image>` placeholder), `adapter.py` (the studio's `VideoLLM`), `loader.py` (registry entry point) and `testing.py`
(tiny random checkpoints). Import the submodules directly; this package file imports nothing heavy. Not to be
confused with SlowFast-LLaVA's training-free pooling, the `sf-llava` compressor in `models/compression/sf_llava.py`.
"""

"""Our implementation of LangDC (a video LLM whose captioner decides each clip's token count), loading the release.

Layout: `preprocessing.py` (frame choice, the 224 px video frames resized like OpenCV's bilinear, the 336 px CLIP
context frames), `internvideo2.py` (the InternVideo2 video tower), `clip_tower.py` (the CLIP image tower for context
frames), `projectors.py` (the five projectors and the grid pooling), `captioner.py` (the CapPruner: per-clip greedy
captions whose steps become soft caption tokens), `modeling.py` (the parts together: pool branch, caption branch and
the answering Qwen2 LLM), `checkpoint.py` (the released layout: LoRA adapter merged by hand, `non_lora_trainables.bin`,
the captioner folder with `mm_projector.bin`, towers from their own files), `prompting.py` (the chat layout and the
`<image>` placeholders), `adapter.py` (the studio's `VideoLLM`) and `loader.py` (registry entry point). Import the
submodules directly; this package file imports nothing heavy.
"""

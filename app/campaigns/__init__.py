"""Annotation campaigns: a fixed list of (video, question) items answered by every one of a few model setups, then
judged blind by people until each item has k judgements, with agreement, a ranking of the setups and TRL exports.

`manifest` reads the items and the setups, `store` keeps campaigns in the annotation store's SQLite file and hands
out the queue, `generate` produces the answers, `results` computes the statistics and `exports` writes the
datasets; `python -m app.campaigns --help` is the command line. Plain Python: no gradio.
"""

from app.campaigns.manifest import Item, ManifestError, Setup, load_manifest, load_setups
from app.campaigns.store import CampaignStore

__all__ = ["CampaignStore", "Item", "ManifestError", "Setup", "load_manifest", "load_setups"]

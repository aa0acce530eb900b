"""Labels that tell the truth: the fixed-rate baseline is per frame, the budget slider is off where the compressor
ignores it, a compression A/B never asks people to judge two identical inputs, `sf-llava` reports the budget it
could not reach, `dynamic` is named for what it does, and attention rows say whose tokens they are."""

from __future__ import annotations

import torch

from models.compression import COMPRESSORS, compress
from models.registry import MODELS

C = 16


def two_and_sixteen_frames() -> torch.Tensor:
    """(18, 3, 3, C): a 2-frame shot, then a 16-frame still shot (a little noise, no cut inside it)."""
    generator = torch.Generator().manual_seed(0)
    first, second = torch.randn(2, 3, 3, C, generator=generator)
    frames = [first] * 2 + [second] * 16
    return torch.stack([f + 0.01 * torch.randn(3, 3, C, generator=generator) for f in frames])


def test_the_fixed_rate_baseline_gives_every_frame_the_same_tokens_not_every_clip():
    grids = two_and_sixteen_frames()
    for name in ("dynamic", "official", "uniform"):
        official = lambda g: compress("uniform", g, None, 100.0, g.shape[0] * 9)[0]  # noqa: E731
        _, plan = compress(name, grids, None, 50.0, 18 * 9, official=official)
        per_frame = [clip.baseline_budget / clip.num_frames for clip in plan.clips]
        assert sum(clip.baseline_budget for clip in plan.clips) == plan.effective_budget
        assert max(per_frame) - min(per_frame) <= 1.0, (name, [(c.num_frames, c.baseline_budget) for c in plan.clips])
    _, plan = compress("dynamic", grids, None, 50.0, 18 * 9)
    lengths = sorted(clip.num_frames for clip in plan.clips)
    assert lengths[0] < lengths[-1], "the test needs clips of different lengths"


def test_sf_llava_reports_the_budget_it_was_asked_for_and_the_tokens_it_made():
    grids = torch.randn(8, 14, 14, C, generator=torch.Generator().manual_seed(1))  # OneVision: 196 per frame
    tokens, plan = compress("sf-llava", grids, None, 200.0, 8 * 196)
    assert plan.global_budget == 3136
    assert plan.effective_budget == tokens.num_tokens < 3136
    assert sum(plan.budgets) == tokens.num_tokens


def test_dynamic_is_named_for_visual_change_and_only_language_budgets_are_called_langdc():
    dynamic = COMPRESSORS["dynamic"].description
    assert "visual change" in dynamic.lower() and "FastVID" in dynamic and "LangDC" not in dynamic
    for name, spec in COMPRESSORS.items():
        if name != "langdc":
            assert "LangDC" not in spec.description, name
    assert "LangDC" not in MODELS["slowfast-lite"].description


def test_the_budget_slider_is_off_where_the_compressor_ignores_it():
    from app.sidebar import budget_update

    off = budget_update("official")
    assert off["interactive"] is False and "ignores" in off["info"]
    on = budget_update("dynamic")
    assert on["interactive"] is True


def test_official_and_dynamic_at_full_budget_feed_the_embedded_default_the_same_input(tmp_path):
    from app import studio as studio_module
    from app.access.identity import Identity
    from app.session import Session
    from app.settings import Settings
    from app.tabs.chat import handlers as chat
    from app.tabs.compare import handlers as compare
    from tests.conftest import write_video

    clip = write_video(tmp_path / "clip.mp4", duration_s=2.0, fps=10)
    studio = studio_module.Studio(data_dir=tmp_path / "data")
    owner = Identity("owner", "owner", "admin")
    try:
        session = Session()
        settings = Settings(num_frames=8, fps=0, compressor="official", budget_pct=100)
        chat.load_video(studio, session, owner, str(clip), settings)
        setups = (
            compare.SideSetup("slowfast-lite", "official", 100, 0.0, 1.0),
            compare.SideSetup("slowfast-lite", "dynamic", 100, 0.0, 1.0),
        )
        outs = list(compare.ab_run(studio, session, owner, "What is shown?", setups, settings, mode="compression"))
        warnings = [o["warning"] for o in outs if o.get("warning")]
        assert warnings and "identical" in warnings[-1], outs[-1]
        assert session.ab is None, "no round to vote on"
    finally:
        studio.close()


def test_identical_token_sets_have_the_same_fingerprint_and_different_ones_do_not():
    from pathlib import Path

    from models.base import EncodeParams
    from models.registry import load_model
    from models.video import sample_frames

    model = load_model("slowfast-lite")
    frames = sample_frames(Path(__file__).resolve().parents[1] / "assets" / "montage.mp4", num_frames=16, max_side=448)
    official = model.encode(frames, EncodeParams(num_frames=16, compressor="official"), "sha")
    dynamic = model.encode(frames, EncodeParams(num_frames=16, compressor="dynamic", budget_pct=100), "sha")
    tenth = model.encode(frames, EncodeParams(num_frames=16, compressor="dynamic", budget_pct=10), "sha")
    assert official.fingerprint and official.fingerprint == dynamic.fingerprint
    assert tenth.fingerprint != official.fingerprint

"""The tiny LangDC release tree for the tests: built once per test process from the committed golden generator.

`tiny_langdc_tree()` runs `golden/langdc/gen_ckpt.py` (deterministic weights, ~630 MB, ~10 s) into a temporary
folder removed at exit, and returns that folder; `dual_branch_tiny/` in it is the model folder. `GOLDEN` is the
golden data folder (`LANGDC_GOLDEN_DIR` overrides it). When it is missing the tests fail under CI and skip
elsewhere.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import pytest
from conftest import under_ci

GOLDEN = Path(os.environ.get("LANGDC_GOLDEN_DIR", Path(__file__).resolve().parent / "golden/langdc"))
MODEL_FOLDER = "dual_branch_tiny"


def require_golden() -> None:
    """Fail under CI, skip elsewhere, when the golden folder or its generator is missing."""
    if not (GOLDEN / "gen_ckpt.py").is_file() or not (GOLDEN / "weights_manifest.json").is_file():
        message = f"the LangDC golden data is missing at {GOLDEN}"
        if under_ci():
            pytest.fail(message)
        pytest.skip(message)


@cache
def tiny_langdc_tree() -> Path:
    require_golden()
    root = Path(tempfile.mkdtemp(prefix="langdc_tiny_"))
    atexit.register(shutil.rmtree, root, True)
    subprocess.run([sys.executable, str(GOLDEN / "gen_ckpt.py"), str(root)], check=True, capture_output=True)
    return root


@cache
def tiny_langdc():
    """The tree loaded through our loader (float32 on CPU), shared by the tests of one process."""
    from models.langdc.checkpoint import load_langdc

    return load_langdc(tiny_langdc_tree() / MODEL_FOLDER)

"""Video-LLM Studio: `python app.py` serves the studio on http://127.0.0.1:7860 with the embedded default model.

Flags: --data-dir (annotations, kept videos and exports; default $STUDIO_DATA_DIR or ./data), --host, --port,
--no-preload (load the model on the first question instead of at start). The Gradio share tunnel stays off. On
Hugging Face Spaces, annotations are synced to a Hub dataset repo when STUDIO_HUB_DATASET_REPO and HF_TOKEN are set.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from pathlib import Path

from app.handlers import Studio
from app.hub_sync import start_commit_scheduler
from app.ui import build_demo, data_dir_from, launch_kwargs
from models.registry import DEFAULT_MODEL, load_model

log = logging.getLogger("studio")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Video-LLM Studio")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("STUDIO_DATA_DIR"),
        help="where annotations, kept videos and exports go (default: $STUDIO_DATA_DIR or ./data)",
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="interface to listen on (0.0.0.0 to serve the network)",
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--no-preload", action="store_true", help="load the model on first use instead of at start")
    return parser.parse_args(argv)


def make_studio(data_dir: str | Path | None = None) -> Studio:
    studio = Studio(data_dir=data_dir_from(data_dir))
    if os.environ.get("SPACE_ID") or os.environ.get("STUDIO_HUB_DATASET_REPO"):
        scheduler, status = start_commit_scheduler(studio.data_dir)
        studio.hub_status = status
        log.info(status)
    return studio


def preload(name: str = DEFAULT_MODEL) -> threading.Thread:
    """Load the default model in the background so the first question does not wait for it."""

    def work() -> None:
        try:
            load_model(name)
            log.info("%s loaded", name)
        except Exception:  # the first question will report it properly
            log.exception("preloading %s failed", name)

    thread = threading.Thread(target=work, name="preload-model", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    studio = make_studio(args.data_dir)
    demo = build_demo(studio)
    if not args.no_preload:
        preload()
    log.info("data directory: %s", studio.data_dir)
    demo.launch(server_name=args.host, server_port=args.port, share=False, **launch_kwargs(studio))


if __name__ == "__main__":
    main()

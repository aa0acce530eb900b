"""Video-LLM Studio: `python app.py` serves the studio on http://127.0.0.1:7860 with a model loaded at start.

At start it asks once (2 s at most) whether the Hugging Face hub answers, unless HF_HUB_OFFLINE is set: where it
does, the hub checkpoints are enabled and a CPU machine starts with SmolVLM2-256M (downloaded on first start, its
progress in the log); offline it starts with the embedded default model.

Flags: --data-dir (annotations, kept videos and exports; default $STUDIO_DATA_DIR or ./data), --host, --port,
--model PATH or NAME=PATH (a downloaded checkpoint folder to add to the model menu; repeatable; also
$STUDIO_LOCAL_MODELS and the JSON/TOML file named by $STUDIO_MODELS_FILE), --engine NAME=URL[,model=ID][,...] (a
model served by an OpenAI-compatible server such as vLLM; repeatable; also $STUDIO_ENGINES), --no-preload (load the
model on the first question instead of at start), --accounts FILE (sign-in; also $STUDIO_ACCOUNTS). The Gradio share
tunnel stays off. On Hugging Face Spaces, annotations are synced to a Hub dataset repo when STUDIO_HUB_DATASET_REPO
and HF_TOKEN are set.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from pathlib import Path

from app.access.identity import AccessConfig
from app.access.limits import Limits, rates_from_env
from app.data.hub_sync import start_hub_sync, sync_off_message
from app.studio import Studio
from app.ui import build_demo, data_dir_from, launch_kwargs
from models.engine.config import EngineConfigError
from models.engine.register import register_engines
from models.hub import check_hub
from models.registry import default_model_name, load_local_models_from_env, load_model, register_local_model

log = logging.getLogger("studio")
OPEN_WARNING = (
    "Serving on %s with no accounts and no OAuth: everyone who reaches this address is an anonymous visitor who "
    "may chat (and vote only with STUDIO_ANONYMOUS_VOTES=1), and nobody can export from the browser. Add accounts "
    "(python -m app.accounts add NAME --role admin, then --accounts accounts.toml) or bind to 127.0.0.1."
)


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
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="add a downloaded checkpoint folder to the model menu (Slow-Fast MLLM, Qwen2.5-VL, LLaVA-OneVision, "
        "SmolVLM2); repeatable",
    )
    parser.add_argument(
        "--engine",
        action="append",
        default=[],
        metavar="NAME=URL[,model=ID][,api_key_env=VAR][,input=video|images|timeline]",
        help="add a model served by an OpenAI-compatible server (vLLM, SGLang, TGI, a hosted API) to the menu: "
        "the studio samples and sends the frames (input=video: vLLM's frame list; images: one image part per frame; "
        "timeline: the embedded default's perception here, its LLM on the server); repeatable; also $STUDIO_ENGINES",
    )
    parser.add_argument(
        "--accounts",
        default=os.environ.get("STUDIO_ACCOUNTS"),
        metavar="FILE",
        help="turn on sign-in with the accounts in FILE (python -m app.accounts add NAME --role admin|annotator); "
        "default: $STUDIO_ACCOUNTS",
    )
    parser.add_argument("--no-preload", action="store_true", help="load the model on first use instead of at start")
    return parser.parse_args(argv)


def make_studio(data_dir: str | Path | None = None, *, accounts: str | None = None, host: str = "127.0.0.1") -> Studio:
    """The studio on its data directory, with its identities (an accounts file, Spaces OAuth, the local owner) and
    rate limits; with a Hub dataset repo configured, its votes are restored from the Hub first (blocking: nothing is
    served before the store holds them) and then synced as append-only shards."""
    directory = data_dir_from(data_dir)
    access = AccessConfig.from_env(accounts_path=accounts, host=host, data_dir=directory)
    studio = Studio(data_dir=directory, access=access, limits=Limits(rates_from_env()))
    if access.open_to_strangers:
        log.warning(OPEN_WARNING, host)
    studio.hub_sync = start_hub_sync(studio.data_dir)
    studio.hub_status = studio.hub_sync.state.message if studio.hub_sync else sync_off_message()
    log.info(studio.hub_status)
    return studio


def register_local_models(entries: list[str]) -> list[str]:
    """Register the --model folders and those named by the environment; returns their registry names."""
    names = load_local_models_from_env()
    for entry in entries:
        name, sep, folder = entry.partition("=")
        names.append(register_local_model(folder, name) if sep else register_local_model(name))
    return names


def preload(name: str | None = None) -> threading.Thread:
    """Load the default model in the background so the first question does not wait for it."""

    name = name or default_model_name()

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
    log.info(check_hub().line())  # once, before anything asks which models can run here
    for name in register_local_models(args.model):
        log.info("local model registered: %s", name)
    log.info("default model: %s", default_model_name())
    try:
        register_engines(args.engine)
    except EngineConfigError as error:
        raise SystemExit(f"--engine / $STUDIO_ENGINES: {error}") from None
    studio = make_studio(args.data_dir, accounts=args.accounts, host=args.host)
    demo = build_demo(studio)
    if not args.no_preload:
        preload()
    log.info("data directory: %s", studio.data_dir)
    for name in studio.resume_generations():
        log.info("campaign %s: resuming the generation a previous run left unfinished", name)
    demo.launch(server_name=args.host, server_port=args.port, share=False, **launch_kwargs(studio))


if __name__ == "__main__":
    main()

"""The campaigns' command line (`python -m app.campaigns`): create a campaign from a manifest and a setups file, run
its generation (resumable), print its status, print its results, export it. Safe while the app serves the same data
directory: every write is a short SQLite transaction that waits for the other process.

Exit status: 0 done, 2 bad input (the per-row report goes to stderr), 1 anything else (e.g. a model that cannot
run on this machine).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

from app.campaigns.exports import FORMATS, export_campaign
from app.campaigns.generate import run_campaign
from app.campaigns.manifest import Item, ManifestError, Setup, load_manifest, load_setups
from app.campaigns.results import campaign_results
from app.campaigns.store import KINDS, CampaignStore
from app.data.frame_images import DEFAULT_FRAMES
from app.data.store import DATA_DIR_ENV
from models.base import ModelUnavailableError

INPUTS = """\
Manifest: CSV, JSONL, Parquet or a `datasets` folder (save_to_disk) with the columns video (a path relative to the
manifest's folder), question, and optionally id (default item-0001, item-0002, ...) and reference.
Setups: a JSON list, or a TOML file of [[setup]] tables, each with name, model, compressor, budget (% of the model's
own token count) and optionally frames, fps, temperature (0: greedy, the default), max_new_tokens, seed.
"""
DESCRIPTION = f"""\
Annotation campaigns: the same (video, question) items answered by two or more model setups, judged blind by
people until every item has k judgements, then exported as TRL DPO / KTO data.

  create NAME --manifest FILE --setups FILE --k K [--kind pairwise|rating] [--guidelines FILE] [--allow-visitors]
  run NAME                      generate every missing answer (prints progress; resumes where it stopped)
  status NAME                   print the campaign's status as JSON
  results NAME                  print agreement, ranking and win rates as JSON
  export NAME --format dpo|kto|jsonl [--out DIR] [--images [N]]

{INPUTS}
Every command takes --data-dir (default ${DATA_DIR_ENV} or ./data) and works while the app runs on it.
Exit status: 0 ok, 2 bad input (every bad row or setup listed on stderr), 1 other failures.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.campaigns", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    data_dir_help = f"the studio's data directory (default ${DATA_DIR_ENV} or ./data)"
    parser.add_argument("--data-dir", type=Path, default=None, help=data_dir_help)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help=data_dir_help)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    create = commands.add_parser(
        "create",
        parents=[common],
        help="create a campaign (nothing is stored on errors)",
        description="Create a campaign; a bad manifest or setups file stores nothing and lists every problem.\n\n"
        + INPUTS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument("name", help="campaign name: letters, digits, '.', '_', '-'")
    create.add_argument("--manifest", type=Path, required=True, help="items: .csv, .jsonl, .parquet or datasets dir")
    create.add_argument("--setups", type=Path, required=True, help="setups: .json list or .toml with [[setup]]")
    create.add_argument("--k", type=int, required=True, help="judgements wanted per item")
    create.add_argument("--kind", choices=KINDS, default="pairwise", help="pairwise A/B choices or 1-5 ratings")
    create.add_argument("--guidelines", type=Path, help="a Markdown file shown to annotators (versioned by hash)")
    create.add_argument("--allow-visitors", action="store_true", help="let people who are not signed in judge")

    for name, text in (
        ("run", "generate the missing answers, video by video (resumable)"),
        ("status", "print the campaign's status as JSON"),
        ("results", "print agreement, ranking and win rates as JSON"),
    ):
        commands.add_parser(name, parents=[common], help=text).add_argument("name", help="campaign name")

    export = commands.add_parser("export", parents=[common], help="write DPO / KTO / JSONL with a dataset card")
    export.add_argument("name", help="campaign name")
    export.add_argument("--format", choices=FORMATS, required=True, help="dpo pairs, kto rows or every judgement")
    export.add_argument("--out", type=Path, help="folder to write into (default: a new one under DATA_DIR/exports)")
    export.add_argument(
        "--images",
        type=int,
        nargs="?",
        const=DEFAULT_FRAMES,
        metavar="N",
        help=f"dpo / kto: add the judged answer's frames (at most N, default {DEFAULT_FRAMES}) as an `images` "
        "column, and a `datasets` folder for TRL's vision-language trainers",
    )
    return parser


def _inputs(args: argparse.Namespace) -> tuple[list[Item], list[Setup], str]:
    """The items, setups and guidelines of `create`, every problem of both files reported together; read before
    the store is opened, so bad input leaves nothing behind."""
    problems: list[str] = []
    loaded: dict[str, list] = {}
    for what, load, path in (("manifest", load_manifest, args.manifest), ("setups", load_setups, args.setups)):
        try:
            loaded[what] = load(path)
        except ManifestError as error:
            problems += [f"{what}: {problem}" for problem in error.problems]
    if problems:
        raise ManifestError("campaign", problems)
    guidelines = args.guidelines.read_text(encoding="utf-8") if args.guidelines else ""
    return loaded["manifest"], loaded["setups"], guidelines


def _create(store: CampaignStore, args: argparse.Namespace, inputs: tuple[list[Item], list[Setup], str]) -> None:
    items, setups, guidelines = inputs
    campaign = store.create(
        args.name, items, setups, args.k, kind=args.kind, guidelines=guidelines, allow_visitors=args.allow_visitors
    )
    print(
        f"created campaign {campaign.name!r}: {campaign.items} items x {len(campaign.setups)} setups, k={campaign.k}"
    )


def _run(store: CampaignStore, name: str) -> None:
    store.campaign(name)  # an unknown name is bad input, before any model loads

    def progress(done: int, total: int, eta_s: float | None) -> None:
        eta = "" if eta_s is None else f", about {eta_s:.0f} s left"
        print(f"{done}/{total} answers{eta}", flush=True)

    print(json.dumps(run_campaign(store, name, progress=progress)), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        inputs = _inputs(args) if args.command == "create" else None
        with closing(CampaignStore(args.data_dir)) as store:
            if inputs is not None:
                _create(store, args, inputs)
            elif args.command == "run":
                _run(store, args.name)
            elif args.command == "status":
                print(json.dumps(store.status(args.name), indent=2))
            elif args.command == "results":
                print(json.dumps(campaign_results(store, args.name), indent=2))
            else:
                print(export_campaign(store, args.name, args.format, args.out, images=args.images))
    except ManifestError as error:
        print(f"error: {len(error.problems)} problem(s) in the campaign's input:", file=sys.stderr)
        print("\n".join(f"  {problem}" for problem in error.problems), file=sys.stderr)
        return 2
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ModelUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0

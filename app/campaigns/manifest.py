"""A campaign's inputs read and checked before anything is stored: the manifest of items (CSV, JSONL, Parquet or a
`datasets` folder with the columns `video`, `question` and optionally `id` and `reference`) and the setups (a JSON
list or a TOML file of `[[setup]]` tables), each setup a model with its frame sampling, compression and sampling.

Every problem is collected before one `ManifestError` is raised, so a person fixes the whole file in one go: its
`.problems` says "row 3: video clips/x.mp4 not found" for each bad row.
"""

from __future__ import annotations

import csv
import json
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.settings import Settings
from models.base import EncodeParams, GenerationParams, VideoError
from models.pipeline import video_sha256
from models.registry import MODELS, get_spec
from models.video import probe_video

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_ID_CHARS = 100
SETUP_FIELDS = ("name", "model", "compressor", "budget", "frames", "fps", "temperature", "max_new_tokens", "seed")
REQUIRED_SETUP_FIELDS = ("name", "model", "compressor", "budget")


class ManifestError(ValueError):
    """A manifest or a setups file that cannot be used; `.problems` lists every reason, one line each."""

    def __init__(self, source: str | Path, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n" + "\n".join(self.problems))


@dataclass(frozen=True)
class Item:
    """One thing to judge: a question about a video (absolute path, its sha256 and length in seconds)."""

    id: str
    video: str
    question: str
    reference: str | None
    sha256: str
    duration_s: float


@dataclass(frozen=True)
class Setup:
    """One way of answering: a registered model with its encode (frames, compression) and generation parameters."""

    name: str
    model: str
    encode: EncodeParams
    generation: GenerationParams

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "encode": self.encode.as_dict(),
            "generation": self.generation.as_dict(),
        }


# ----------------------------------------------------------------------------------------------------------------
# Items


def load_manifest(path: str | Path) -> list[Item]:
    """The items of a manifest file (.csv, .jsonl, .parquet) or `datasets` folder; video paths are relative to the
    file's folder (or to the `datasets` folder). Raises `ManifestError` naming every bad row."""
    path = Path(path).expanduser().resolve()
    rows, base = _read_rows(path)
    if not rows:
        raise ManifestError(path, ["the manifest has no rows"])
    columns = set().union(*(row.keys() for row in rows))
    missing = [name for name in ("video", "question") if name not in columns]
    if missing:
        raise ManifestError(path, [f"missing column(s): {', '.join(missing)} (found: {', '.join(sorted(columns))})"])
    items, problems, first_row_of = [], [], {}
    probed: dict[Path, tuple[str, float] | str] = {}
    for number, row in enumerate(rows, start=1):
        try:
            item = _item(number, row, base, probed)
        except ValueError as error:
            problems.append(f"row {number}: {error}")
            continue
        if item.id in first_row_of:
            problems.append(f"row {number}: duplicate id {item.id!r} (also row {first_row_of[item.id]})")
            continue
        first_row_of[item.id] = number
        items.append(item)
    if problems:
        raise ManifestError(path, problems)
    return items


def _read_rows(path: Path) -> tuple[list[dict[str, Any]], Path]:
    if path.is_dir():
        return _read_datasets_folder(path), path
    if not path.is_file():
        raise ManifestError(path, ["the manifest file does not exist"])
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return [dict(row) for row in csv.DictReader(handle)], path.parent
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path), path.parent
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist(), path.parent
    raise ManifestError(path, [f"unknown manifest format {suffix!r}: use .csv, .jsonl, .parquet or a datasets folder"])


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows, problems = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(f"row {len(rows) + 1} (line {number}): not valid JSON ({error.msg})")
            continue
        if not isinstance(row, dict):
            problems.append(f"row {len(rows) + 1} (line {number}): not a JSON object")
            continue
        rows.append(row)
    if problems:
        raise ManifestError(path, problems)
    return rows


def _read_datasets_folder(path: Path) -> list[dict[str, Any]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as error:
        raise ManifestError(path, [f"not a folder saved with datasets' save_to_disk ({error})"]) from error
    if isinstance(loaded, datasets.DatasetDict):
        if len(loaded) != 1 and "train" not in loaded:
            raise ManifestError(path, [f"a DatasetDict with splits {', '.join(loaded)}: keep one, or name it train"])
        loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
    return loaded.to_list()


def _text(value: Any) -> str:
    """A cell as text: None and NaN (an empty Parquet / pandas cell) are empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _item(number: int, row: dict[str, Any], base: Path, probed: dict[Path, tuple[str, float] | str]) -> Item:
    video, question = _text(row.get("video")), _text(row.get("question"))
    if not video:
        raise ValueError("no video")
    if not question:
        raise ValueError("no question")
    item_id = _text(row.get("id")) or f"item-{number:04d}"
    if len(item_id) > MAX_ID_CHARS:
        raise ValueError(f"id is longer than {MAX_ID_CHARS} characters")
    file = (base / video).resolve()
    if not file.is_file():
        raise ValueError(f"video {video} not found")
    if file not in probed:
        try:
            info = probe_video(file)
            probed[file] = (video_sha256(str(file)), float(info.duration_s))
        except VideoError as error:
            probed[file] = str(error)
    found = probed[file]
    if isinstance(found, str):
        raise ValueError(f"video {video} cannot be read: {found}")
    reference = _text(row.get("reference")) or None
    return Item(item_id, str(file), question, reference, sha256=found[0], duration_s=found[1])


# ----------------------------------------------------------------------------------------------------------------
# Setups


def load_setups(path: str | Path) -> list[Setup]:
    """The setups of a JSON list or a TOML file of `[[setup]]` tables, each checked as the studio's controls are
    (`app.settings.Settings`). At least two, with unique names. Raises `ManifestError` naming every bad setup."""
    path = Path(path).expanduser().resolve()
    entries = _read_setup_entries(path)
    setups, problems, names = [], [], set()
    for number, entry in enumerate(entries, start=1):
        label = f"setup {number}" + (f" ({entry['name']})" if isinstance(entry, dict) and "name" in entry else "")
        try:
            setup = setup_from_fields(entry)
        except ValueError as error:
            problems.append(f"{label}: {error}")
            continue
        if setup.name in names:
            problems.append(f"{label}: the name {setup.name!r} is used twice")
        names.add(setup.name)
        setups.append(setup)
    if len(entries) < 2:
        problems.append(f"a campaign compares at least 2 setups; {path.name} has {len(entries)}")
    if problems:
        raise ManifestError(path, problems)
    return setups


def _read_setup_entries(path: Path) -> list[Any]:
    if not path.is_file():
        raise ManifestError(path, ["the setups file does not exist"])
    try:
        if path.suffix.lower() == ".toml":
            entries = tomllib.loads(path.read_text(encoding="utf-8")).get("setup", [])
        else:
            entries = json.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ManifestError(path, [f"cannot be parsed: {error}"]) from error
    if not isinstance(entries, list):
        raise ManifestError(path, ["expected a JSON list of setups, or [[setup]] tables in TOML"])
    return entries


def setup_from_fields(fields: Any) -> Setup:
    """One setup from its fields (`SETUP_FIELDS`); a ValueError says what is wrong. Unset frames / fps come from the
    model's registry defaults, sampling is greedy unless a temperature is given."""
    if not isinstance(fields, dict):
        raise ValueError("a setup is a table of fields")
    unknown = sorted(set(fields) - set(SETUP_FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; a setup has {', '.join(SETUP_FIELDS)}")
    absent = [name for name in REQUIRED_SETUP_FIELDS if fields.get(name) in (None, "")]
    if absent:
        raise ValueError(f"missing {', '.join(absent)}")
    name, model = str(fields["name"]), str(fields["model"])
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; known models: {', '.join(MODELS)}")
    defaults = get_spec(model).defaults
    settings = Settings(
        model=model,
        num_frames=fields.get("frames", defaults.num_frames),
        fps=fields.get("fps", defaults.fps or 0.0),
        compressor=str(fields["compressor"]),
        budget_pct=fields["budget"],
        temperature=fields.get("temperature", 0.0),
        max_new_tokens=fields.get("max_new_tokens", Settings.max_new_tokens),
        seed=fields.get("seed", 0),
    )
    return Setup(name, model, settings.encode_params(), settings.generation_params())


def setup_from_dict(data: dict[str, Any]) -> Setup:
    """The inverse of `Setup.as_dict` (how the store keeps a setup)."""
    return Setup(data["name"], data["model"], EncodeParams(**data["encode"]), GenerationParams(**data["generation"]))

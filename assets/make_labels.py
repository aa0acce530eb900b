"""Build the ImageNet-1k class-name files in `assets/` from the synset lists that ship inside the timm wheel.

The EfficientNet-Lite0 classifier outputs 1000 logits in the standard ImageNet-1k order (WordNet synsets sorted
by id, 0 = tench ... 999 = toilet tissue). timm ships that order (`imagenet_synsets.txt`) and the WordNet lemmas
of each synset (`imagenet_synset_to_lemma.txt`); this script reads both straight out of the wheel (timm is never
installed: it would pull a CUDA torch) and writes

- `imagenet_labels.txt`: one short, human-readable, unique name per line, line i = class i;
- `imagenet_labels.tsv`: index, synset id, short name and every lemma, for matching words such as "cat".

Run `python assets/make_labels.py` (downloads the pinned wheel with `pip download`, PyPI only) or pass
`--wheel PATH` to use a wheel already on disk. The output is deterministic.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

TIMM_VERSION = "1.0.31"
SYNSETS_MEMBER = "timm/data/_info/imagenet_synsets.txt"
LEMMAS_MEMBER = "timm/data/_info/imagenet_synset_to_lemma.txt"
ASSETS_DIR = Path(__file__).resolve().parent

# A longer lemma ending in one of these words says nothing the first lemma does not ("television system").
GENERIC_TRAILING_WORDS = {"system", "building", "house", "light", "unit"}

# Two synsets whose lemmas are all the same word; WordNet's definitions tell them apart.
HOMONYM_NAMES = {
    "n02012849": "crane (bird)",
    "n03126707": "crane (machine)",
}

# Spot checks against the order torchvision / EfficientNet checkpoints use; a wrong source file fails here.
ANCHORS = {
    0: "tench",
    1: "goldfish",
    281: "tabby cat",
    285: "Egyptian cat",
    967: "espresso",
    968: "cup",
    999: "toilet tissue",
}


def split_lemmas(lemma_field: str) -> list[str]:
    return [lemma.strip() for lemma in lemma_field.split(",") if lemma.strip()]


def choose_short_name(lemmas: list[str]) -> str:
    """The first WordNet lemma, or a later lemma that spells it out ("tabby" -> "tabby cat").

    A later lemma counts as spelling it out when it extends the first lemma with a trailing noun
    ("mouse" -> "computer mouse" also counts) and is not a Latin binomial or a regional variant (a capitalised
    leading word such as "Gorilla gorilla" or "American robin").
    """
    first = lemmas[0]
    for candidate in lemmas[1:]:
        extends_at_end = candidate.startswith(first + " ")
        leading_word = candidate.split(" ", 1)[0]
        qualifies_at_front = candidate.endswith(" " + first) and (leading_word.islower() or leading_word.isupper())
        if not (extends_at_end or qualifies_at_front):
            continue
        if candidate.rsplit(" ", 1)[-1].lower() in GENERIC_TRAILING_WORDS:
            continue
        return candidate
    return first


def build_label_rows(synsets: list[str], lemmas_by_synset: dict[str, str]) -> list[tuple[int, str, str, str]]:
    """Rows of (index, synset, short name, all lemmas) with short names unique ignoring case."""
    short_names = [choose_short_name(split_lemmas(lemmas_by_synset[synset])) for synset in synsets]
    first_name_counts = Counter(name.lower() for name in short_names)
    for index, synset in enumerate(synsets):
        if first_name_counts[short_names[index].lower()] == 1:
            continue
        if synset in HOMONYM_NAMES:
            short_names[index] = HOMONYM_NAMES[synset]
            continue
        # Otherwise another lemma of the same synset tells it apart ("maillot, tank suit" -> "tank suit").
        taken = {name.lower() for name in short_names}
        alternatives = [lemma for lemma in split_lemmas(lemmas_by_synset[synset])[1:] if lemma.lower() not in taken]
        if alternatives:
            short_names[index] = alternatives[0]
    duplicates = sorted(name for name, count in Counter(name.lower() for name in short_names).items() if count > 1)
    if duplicates:
        raise SystemExit(f"short names are not unique: {duplicates}; extend HOMONYM_NAMES")
    return [(index, synset, short_names[index], lemmas_by_synset[synset]) for index, synset in enumerate(synsets)]


def read_timm_wheel(wheel_path: Path) -> tuple[list[str], dict[str, str]]:
    with zipfile.ZipFile(wheel_path) as wheel:
        synsets = wheel.read(SYNSETS_MEMBER).decode("utf-8").split()
        lemma_lines = wheel.read(LEMMAS_MEMBER).decode("utf-8").splitlines()
    lemmas_by_synset = dict(line.split("\t", 1) for line in lemma_lines if "\t" in line)
    if len(synsets) != 1000 or len(set(synsets)) != 1000:
        raise SystemExit(f"{SYNSETS_MEMBER} has {len(synsets)} entries, expected 1000 unique synsets")
    return synsets, lemmas_by_synset


def download_timm_wheel(target_dir: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", f"timm=={TIMM_VERSION}", "--no-deps", "-d", str(target_dir)]
    subprocess.run(command, check=True)
    return next(target_dir.glob(f"timm-{TIMM_VERSION}-*.whl"))


def write_label_files(rows: list[tuple[int, str, str, str]], output_dir: Path) -> None:
    for index, expected in ANCHORS.items():
        if rows[index][2] != expected:
            raise SystemExit(f"class {index} is {rows[index][2]!r}, expected {expected!r}: wrong synset order?")
    names_text = "".join(f"{short_name}\n" for _, _, short_name, _ in rows)
    (output_dir / "imagenet_labels.txt").write_text(names_text, encoding="utf-8")
    table_lines = ["index\tsynset\tname\tall_names"]
    table_lines += [f"{index}\t{synset}\t{short_name}\t{lemmas}" for index, synset, short_name, lemmas in rows]
    (output_dir / "imagenet_labels.tsv").write_text("\n".join(table_lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help=f"a timm wheel already on disk (default: download {TIMM_VERSION})")
    parser.add_argument("--output-dir", type=Path, default=ASSETS_DIR)
    args = parser.parse_args()
    if args.wheel is not None:
        synsets, lemmas_by_synset = read_timm_wheel(args.wheel)
    else:
        with tempfile.TemporaryDirectory() as download_dir:
            synsets, lemmas_by_synset = read_timm_wheel(download_timm_wheel(Path(download_dir)))
    rows = build_label_rows(synsets, lemmas_by_synset)
    write_label_files(rows, args.output_dir)
    print(f"wrote {len(rows)} labels to {args.output_dir}")


if __name__ == "__main__":
    main()

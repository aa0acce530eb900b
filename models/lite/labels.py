"""ImageNet-1k class names and coarse group names, read from the data files in `assets/`."""

from __future__ import annotations

import functools
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[2] / "assets"


@functools.cache
def class_names() -> tuple[str, ...]:
    """The 1000 short class names in ImageNet-1k index order ("tabby cat", "espresso", ...)."""
    names = tuple(line.strip() for line in (ASSETS / "imagenet_labels.txt").read_text().splitlines() if line.strip())
    if len(names) != 1000:
        raise RuntimeError(f"{ASSETS / 'imagenet_labels.txt'} should list 1000 classes, found {len(names)}")
    return names


@functools.cache
def class_groups() -> tuple[str | None, ...]:
    """For each class index, a coarse everyday name ("cat", "car", ...) or None."""
    groups: list[str | None] = [None] * 1000
    for line in (ASSETS / "imagenet_groups.tsv").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        group, spans = line.split("\t")
        for span in spans.split(","):
            start, _, end = span.partition("-")
            for index in range(int(start), int(end or start) + 1):
                groups[index] = group
    return tuple(groups)


def describe_class(index: int, with_group: bool = True) -> str:
    """'golden retriever (a dog)', 'tabby cat (a cat)', 'espresso (a drink)': a hint a small LLM can use."""
    name = class_names()[index]
    group = class_groups()[index]
    if not with_group or group is None:
        return name
    article = "an" if group[0] in "aeiou" else "a"
    return f"{name} ({article} {group})"

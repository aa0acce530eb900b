"""Reading released Slow-Fast checkpoint folders: where the weights are, the tower's shape, and strict key checking.

A checkpoint is a folder (or a hub id, fetched into the local cache by `models.hub.resolve_folder` with
`HUB_PATTERNS`) with `config.json` and either one `model.safetensors` or shards listed by
`model.safetensors.index.json`; the key names are the same in both. The vision tower's classifier head
(`model.vision_tower.vision_tower.head.*`) is never used and may or may not be stored, so it is skipped; any other
key that is missing or unexpected is an error that names it, because a silently random-initialised tensor would
give fluent nonsense instead of a failure.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import safe_open

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
TOWER_PREFIX = "model.vision_tower.vision_tower."
TOLERATED_PREFIXES = (TOWER_PREFIX + "head.",)
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]  # what a hub download fetches


class CheckpointError(ValueError):
    """The checkpoint does not fit the model; the message names the offending keys or files."""


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a checkpoint folder, sharded or not."""
    index = folder / INDEX_FILE
    if index.is_file():
        shard_names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [name for name in shard_names if not (folder / name).is_file()]
        if missing:
            raise CheckpointError(f"{index} lists shards that are not in the folder: {', '.join(missing)}")
        return [folder / name for name in shard_names]
    if (folder / SINGLE_FILE).is_file():
        return [folder / SINGLE_FILE]
    raise CheckpointError(f"no {SINGLE_FILE} or {INDEX_FILE} in {folder}")


def tensor_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    """Key -> shape, read from the safetensors headers only."""
    shapes = {}
    for file in files:
        with safe_open(file, framework="pt") as handle:
            for key in handle.keys():
                shapes[key] = tuple(handle.get_slice(key).get_shape())
    return shapes


def vision_tower_shape(shapes: dict[str, tuple[int, ...]]) -> tuple[list[int], list[int], int]:
    """(depths, dims, mlp_ratio) of the ConvNeXt tower, counted from its `stages.{s}.blocks.{j}` tensors."""
    block_key = re.compile(re.escape(TOWER_PREFIX) + r"stages\.(\d+)\.blocks\.(\d+)\.conv_dw\.weight")
    blocks: dict[int, dict[int, int]] = {}
    for key, shape in shapes.items():
        if match := block_key.fullmatch(key):
            blocks.setdefault(int(match[1]), {})[int(match[2])] = shape[0]
    if not blocks:
        raise CheckpointError(f"no vision tower tensors ({TOWER_PREFIX}stages.*) in the checkpoint")
    stages = sorted(blocks)
    if stages != list(range(len(stages))):
        raise CheckpointError(f"vision tower stages are not numbered 0..n-1: {stages}")
    depths = [len(blocks[s]) for s in stages]
    dims = [blocks[s][0] for s in stages]
    fc1 = shapes.get(f"{TOWER_PREFIX}stages.0.blocks.0.mlp.fc1.weight")
    mlp_ratio = fc1[0] // dims[0] if fc1 else 4
    return depths, dims, mlp_ratio


def _describe(keys: set[str], limit: int = 12) -> str:
    shown = sorted(keys)[:limit]
    more = f" (and {len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(shown) + more


def load_tensors(
    files: list[Path], expected: set[str], device: torch.device | str, dtype: torch.dtype, folder: Path
) -> dict[str, torch.Tensor]:
    """All tensors the model expects, cast to `dtype` on `device`. Missing or unexpected keys raise."""
    state: dict[str, torch.Tensor] = {}
    unexpected = set()
    for file in files:
        with safe_open(file, framework="pt", device=str(device)) as handle:
            for key in handle.keys():
                if key.startswith(TOLERATED_PREFIXES):
                    continue
                if key not in expected:
                    unexpected.add(key)
                    continue
                tensor = handle.get_tensor(key)
                state[key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    missing = expected - set(state)
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s) the model needs: {_describe(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) this model does not have: {_describe(unexpected)}")
    if problems:
        raise CheckpointError(f"checkpoint {folder} does not match the Slow-Fast model: " + "; ".join(problems))
    return state


def check_shapes(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    wrong = [
        f"{key} {tuple(tensor.shape)} (model: {tuple(reference[key].shape)})"
        for key, tensor in state.items()
        if key in reference and tensor.shape != reference[key].shape
    ]
    if wrong:
        raise CheckpointError("checkpoint tensors with the wrong shape for config.json: " + "; ".join(wrong[:12]))


def slice_vocab(state: dict[str, torch.Tensor], vocab_size: int) -> dict[str, torch.Tensor]:
    """Keep the first `vocab_size` rows of the token embeddings and lm_head (the official loader's resize)."""
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        if key in state:
            stored = state[key].shape[0]
            if vocab_size > stored:
                raise CheckpointError(f"cannot keep {vocab_size} vocabulary rows: {key} has only {stored}")
            state[key] = state[key][:vocab_size]
    return state

"""The floor plan stays navigable: no import cycle in `app/` or `models/` (imports inside functions count too), no
function longer than a screen and a half, and no two modules introducing themselves with the same sentence."""

from __future__ import annotations

import ast
import re
import tokenize
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "models")
MAX_FUNCTION_LINES = 80
# Notes that live beside the repository, not in it: a reference to them is a dead end for a reader of the code.
OUTSIDE = re.compile(r"\.\./shared|specs/\w+\.md|research notes|golden/\w+/")


def source_files() -> list[Path]:
    files = [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    return [*files, ROOT / "app.py"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or "app"


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its body (module level or inside a function).

    `from package import name` counts as importing `package.name` when that is a module of ours, else `package`."""
    modules = {module_name(path): path for path in source_files()}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
                ]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in graph.get(node, ()):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_sees_a_cycle_through_a_function_level_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_app_and_models():
    graph = import_graph()
    assert "app.ui" in graph and "models.registry" in graph  # the graph was read
    found = cycles(graph)
    assert found == [], "\n".join(" <-> ".join(cycle) for cycle in found)


def test_models_never_import_from_app():
    graph = import_graph()
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() if m.startswith("models") for t in targets
                    if t.split(".")[0] == "app")  # fmt: skip
    assert upward == [], "\n".join(upward)


def test_no_function_over_eighty_lines():
    long = []
    for path in source_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == [], "\n".join(long)


def first_sentence(docstring: str) -> str:
    text = " ".join(docstring.split())
    return re.split(r"(?<=[.:;!?])\s", text, maxsplit=1)[0].lower()


def test_every_module_says_what_it_is_in_its_own_words():
    by_sentence: dict[str, list[str]] = defaultdict(list)
    missing = []
    for path in source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstring = ast.get_docstring(tree)
        if not docstring:
            if path.name != "__init__.py" or path.read_text(encoding="utf-8").strip():
                missing.append(str(path.relative_to(ROOT)))
            continue
        by_sentence[first_sentence(docstring)].append(str(path.relative_to(ROOT)))
    assert missing == [], "\n".join(missing)
    assert {sentence: paths for sentence, paths in by_sentence.items() if len(paths) > 1} == {}


def prose(path: Path) -> list[str]:
    """The comments and string literals of a file: where it talks about other files."""
    with path.open("rb") as handle:
        tokens = tokenize.tokenize(handle.readline)
        return [token.string for token in tokens if token.type in (tokenize.COMMENT, tokenize.STRING)]


def test_docstrings_and_comments_name_only_files_that_exist():
    """Prose that points at `app/x.py` or `models.x.y` points at something that is there, and at nothing outside
    the repository (a Space ships this tree alone)."""
    stale = []
    pattern = re.compile(r"(?<![\w.\-/])((?:app|models)(?:[./][A-Za-z_][A-Za-z0-9_]*)+)")
    for path in source_files():
        for text in prose(path):
            stale += [f"{path.relative_to(ROOT)}: {m.group(1)}" for m in pattern.finditer(text)
                      if not reference_exists(m.group(1))]  # fmt: skip
            stale += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in OUTSIDE.finditer(text)]
    assert stale == [], "\n".join(stale)


def reference_exists(reference: str) -> bool:
    if reference.endswith(".py") or "/" in reference:
        return (ROOT / reference).exists()
    parts = reference.split(".")
    # `models.compression.COMPRESSORS` names an attribute: the longest prefix that is a module must exist, and the
    # rest (at most one name) must be defined in it.
    for cut in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:cut])
        module = base.with_suffix(".py") if base.with_suffix(".py").exists() else base / "__init__.py"
        if module.exists():
            rest = parts[cut:]
            if not rest:
                return True
            if len(rest) > 1:
                return False
            return re.search(rf"\b{re.escape(rest[0])}\b", module.read_text(encoding="utf-8")) is not None
    return False

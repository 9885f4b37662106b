"""The layout is the architecture: each role's folder imports only the roles below it, and no
module imports, even late or for a type, one that imports it back."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).parents[2] / "updater"

# The one statement of the direction: a role may import itself and the roles after it. `cli`
# is updater/cli.py and __main__.py; `base` is errors.py, files.py and the package itself.
LAYERS = ("cli", "commands", "outputs", "decisions", "config", "systems", "models", "base")
# The CI trigger is a program of its own: it imports nothing of the updater but these, and
# nothing of the updater imports it.
TRIGGER_MAY_IMPORT = ("updater.trigger", "updater.outputs.log", "updater.errors", "updater.files")


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: Mapping[str, Path]) -> Iterator[str]:
    """The updater modules `name` imports anywhere in its text: top, late, TYPE_CHECKING."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            if base not in known:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield sub if sub in known else base


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imports(name, path, known)) - {name} for name, path in known.items()}


def role(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("errors", "files"):
        return "base"
    if parts[1] in ("cli", "__main__"):
        return "cli"
    return parts[1]


def wrong_way(edges: Mapping[str, set[str]]) -> list[str]:
    """Each import upward, across roles, into the trigger or out of it."""
    found = []
    for source, targets in sorted(edges.items()):
        for target in sorted(targets):
            mine, theirs = role(source), role(target)
            if mine == "trigger":
                allowed = target.startswith(TRIGGER_MAY_IMPORT)
            elif theirs == "trigger":
                allowed = False
            else:
                allowed = LAYERS.index(theirs) >= LAYERS.index(mine)
            if not allowed:
                found.append(f"{source} ({mine}) imports {target} ({theirs})")
    return found


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The import cycles between modules, one path for each module caught in one."""
    found: list[list[str]] = []
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> None:
        if node in path:
            found.append([*path[path.index(node) :], node])
            return
        if node in done:
            return
        for nxt in sorted(edges.get(node, ())):
            walk(nxt, [*path, node])
        done.add(node)

    for start in sorted(edges):
        walk(start, [])
    return found


def test_every_role_is_a_folder_of_the_layers():
    assert {role(name) for name in modules()} == {*LAYERS, "trigger"}


def test_no_import_goes_up_or_across():
    assert wrong_way(graph()) == []


def test_no_module_imports_one_that_imports_it_back():
    assert cycles(graph()) == []


def test_the_contract_sees_a_late_import_upward_and_a_cycle():
    edges = {"updater.models.reference": {"updater.commands.run"}, "updater.commands.run": set()}
    assert wrong_way(edges) == [
        "updater.models.reference (models) imports updater.commands.run (commands)"
    ]
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]


def test_no_module_is_over_400_lines():
    assert {n: p for n, p in modules().items() if len(p.read_text().splitlines()) > 400} == {}

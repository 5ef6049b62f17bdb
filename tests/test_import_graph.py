"""The import graph's one rule: the serving packages never import `corpus/`.

`corpus/` builds training and evaluation data (TTS voices, rooms, readers of real corpora); the
server, the engine, the diariser and the client run without it. What they share with it
(array presets, the text normaliser, transcript formats) lives in `minutes/`. Read from the
source with `ast`, so an import inside a function or behind `try` counts too, and nothing
is imported to check.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVING = ("server", "engine", "diarisation", "clients")
FORBIDDEN = "corpus"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every absolute import in a file, and `importlib.import_module("...")`
    or `__import__("...")` with a literal name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def _offenders(package: str) -> list[str]:
    return [f"{p.relative_to(REPO)}:{line}: {mod}"
            for p in sorted((REPO / package).rglob("*.py"))
            for line, mod in imported_modules(p) if mod.split(".")[0] == FORBIDDEN]


@pytest.mark.parametrize("package", SERVING)
def test_serving_package_does_not_import_corpus(package: str) -> None:
    assert (REPO / package).is_dir()
    assert _offenders(package) == []


def test_the_check_sees_every_import_form(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import corpus.text\nfrom corpus import arrays\ndef f():\n    from corpus.readers import x\n"
                 "import importlib\nimportlib.import_module('corpus.cli')\nfrom . import corpus\n")
    got = [m for _, m in imported_modules(f) if m.split(".")[0] == FORBIDDEN]
    assert got == ["corpus.text", "corpus", "corpus.readers", "corpus.cli"]  # the relative one is local


REFLECTION = {"getattr", "hasattr", "setattr", "inspect", "signature"}


def _reflection(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in REFLECTION:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}()")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            found += [f"{path.relative_to(REPO)}:{node.lineno}: import inspect" for n in names if n == "inspect"]
    return found


def test_the_engine_does_no_reflection() -> None:
    """engine/ calls its recogniser and diariser through typed protocols (engine/protocols.py),
    not by probing them with getattr/hasattr/inspect."""
    assert [f for p in sorted((REPO / "engine").rglob("*.py")) for f in _reflection(p)] == []

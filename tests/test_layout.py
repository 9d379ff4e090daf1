"""The package's structure, read from its source: modules small enough to read (at most
MAX_LINES lines), no private name (a leading underscore, not a dunder) taken from another
trafficgen module, and every subpackage's ``__init__.py`` saying what it owns and what it may
import. (The import layers and ruff's rules are checked by ``lint-imports`` and ``ruff check``
in .ci/run, not from here.) And the tests themselves share helpers, not each other."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trafficgen"
MAX_LINES = 400
MODULES = sorted(PACKAGE.rglob("*.py"))
SUBPACKAGES = sorted(p.parent for p in PACKAGE.glob("*/__init__.py"))


def rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


# namedtuple's own API: public names that start with an underscore so fields cannot clash
NAMEDTUPLE_API = {"_fields", "_field_defaults", "_replace", "_asdict", "_make"}


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in NAMEDTUPLE_API


def private_uses(source: str) -> list[str]:
    """Where a module takes a private name from another trafficgen module, as ``LINE: what``:
    ``from X import _y`` (X relative, or trafficgen.*), or ``m._y`` where ``m`` is a name such
    an import bound."""
    tree = ast.parse(source)
    bound: set[str] = set()  # names bound to trafficgen modules or their objects
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == "trafficgen"):
            for alias in node.names:
                if is_private(alias.name):
                    hits.append(f"{node.lineno}: from {'.' * node.level}{node.module or ''} "
                                f"import {alias.name}")
                bound.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "trafficgen":
                    bound.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in bound:
                hits.append(f"{node.lineno}: {ast.unparse(node)}")
    return hits


def test_the_walks_find_the_package():
    assert len(MODULES) > 50 and PACKAGE / "api.py" in MODULES
    assert {p.name for p in SUBPACKAGES} >= {"cli", "config", "engine", "kernels", "sinks"}


@pytest.mark.parametrize("path", MODULES, ids=rel)
def test_module_is_at_most_400_lines(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{rel(path)} has {n} lines (at most {MAX_LINES}): split it"


def test_no_private_name_crosses_a_module():
    hits = [f"{rel(path)}:{h}" for path in MODULES for h in private_uses(path.read_text())]
    assert not hits, f"{len(hits)} private names used across modules:\n" + "\n".join(hits)


def test_the_private_name_walk_sees_what_it_should():
    """Negative control: each form the walk must catch, and what it must let pass."""
    hits = private_uses("from .other import _hidden, shown\n"
                        "from trafficgen.kernels import frames as kf\n"
                        "import trafficgen.engine.core\n"
                        "from . import __version__\n"
                        "kf._build(shown._cache, trafficgen.engine.core._pool)\n"
                        "self._mine = local._own = kf.__doc__\n"
                        "fields = kf.Rows._fields\n")
    assert sorted(h.split(": ", 1)[1] for h in hits) == [
        "from .other import _hidden", "kf._build", "shown._cache", "trafficgen.engine.core._pool"]


@pytest.mark.parametrize("package", SUBPACKAGES, ids=lambda p: p.name)
def test_subpackage_says_what_it_owns_and_may_import(package):
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
    assert doc, f"{rel(package)}/__init__.py has no docstring"
    assert "may import" in doc.lower(), (
        f"{rel(package)}/__init__.py: its docstring must say what the subpackage owns and what "
        f"it may import ('May import: ...')")


def test_test_modules_share_helpers_not_each_other():
    """A test module takes what it shares from helpers.py (or conftest.py's fixtures), never
    from another test module or from conftest.py itself."""
    hits = []
    for path in sorted(Path(__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                names = [mod.split(".")[-1]] if mod else [a.name for a in node.names]
                if any(n.startswith("test_") or n == "conftest" for n in names):
                    hits.append(f"tests/{path.name}:{node.lineno}: from {'.' * node.level}{mod} import ...")
            elif isinstance(node, ast.Import):
                hits += [f"tests/{path.name}:{node.lineno}: import {a.name}" for a in node.names
                         if a.name.split(".")[-1].startswith("test_")]
    assert not hits, "\n".join(hits)

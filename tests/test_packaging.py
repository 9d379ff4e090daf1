"""The distribution: named ``trafficgen-ai`` (``trafficgen`` on PyPI is an unrelated project),
installing the ``trafficgen`` package and command; every install hint, in the package's messages
and in the README, names it (or ``.``, a checkout) with an extra it has."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HINT = re.compile(r"'([^'\s\[\]]*)\[([\w,-]+)\]'")  # 'NAME[EXTRA]', as pip is given it


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_distribution_name_and_command():
    p = _project()
    assert p["project"]["name"] == "trafficgen-ai"
    assert p["project"]["scripts"] == {"trafficgen": "trafficgen.cli:main"}
    assert "trafficgen" in p["tool"]["setuptools"]["packages"]
    # the traces are the checkout's, never the wheel's
    assert not any("traces" in str(v) for v in p["tool"]["setuptools"]["package-data"].values())


def test_every_install_hint_names_the_distribution():
    extras = set(_project()["project"]["optional-dependencies"])
    files = [ROOT / "README.md", *sorted((ROOT / "trafficgen").rglob("*.py"))]
    seen = []
    for f in files:
        text = f.read_text()
        for m in HINT.finditer(text):
            name, extra = m.groups()
            where = f"{f.relative_to(ROOT)}: {m.group(0)}"
            assert name in ("trafficgen-ai", "."), where
            assert set(extra.split(",")) <= extras, where
            seen.append(where)
        assert "'trafficgen[" not in text, f  # the other project's name, however it is cut
    # the hints the package prints (crypto, dask, plot) are among them
    for extra in ("crypto", "dask", "plot"):
        assert any(f"trafficgen-ai[{extra}]" in w and w.startswith("trafficgen/") for w in seen), extra

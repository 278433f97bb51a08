"""Every Python package folder ships: a folder missing from pyproject's list works in an editable
install and vanishes from the wheel."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    package_dirs: dict[str, str] = config["package-dir"]
    listed = set(config["packages"])
    found = set()
    for package, folder in package_dirs.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *relative.parts]))
    assert found - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"

"""Every name a module lists in ``__all__`` exists, so ``from module import *`` works."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil

import pytest

import geventp2p


def _modules_with_all() -> list[str]:
    out = []
    for info in pkgutil.walk_packages(geventp2p.__path__, "geventp2p."):
        if info.name.endswith("__main__"):
            continue
        spec = importlib.util.find_spec(info.name)
        origin = spec.origin if spec is not None else None
        if origin and origin.endswith(".py"):
            with open(origin, encoding="utf-8") as f:
                if "__all__" in f.read():
                    out.append(info.name)
    return sorted(out)


MODULES = _modules_with_all()


def test_the_walk_finds_the_package():
    assert "geventp2p.sansio.multistream" in MODULES and len(MODULES) > 50


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name):
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(set(exported)) == len(exported), f"{name}.__all__ lists a name twice"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what the module does not define: {missing}"

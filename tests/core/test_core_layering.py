"""Layering rules that keep ``core`` and ``sansio`` pure.

* ``core`` imports no implementation: importing every ``geventp2p.core`` module leaves
  ``geventp2p.crypto`` out of ``sys.modules`` (the key contracts live in ``core/crypto.py``);
* neither ``core`` nor ``sansio`` imports gevent;
* neither does I/O: no ``open()``, name resolution or ``/proc`` in their sources
  (host facts live in ``geventp2p.net.addrutil``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import geventp2p

PKG = Path(geventp2p.__file__).resolve().parent


def _modules(sub: str) -> list[str]:
    return sorted(
        f"geventp2p.{sub}" + ("" if p.stem == "__init__" else f".{p.stem}")
        for p in (PKG / sub).glob("*.py")
    )


def _import_in_fresh_interpreter(modules: list[str]) -> set[str]:
    code = textwrap.dedent(f"""
        import importlib, json, sys
        for name in {modules!r}:
            importlib.import_module(name)
        print(json.dumps(sorted(sys.modules)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(out.stdout))


def test_core_modules_exist():
    assert "geventp2p.core.crypto" in _modules("core")
    assert "geventp2p.core.peer" in _modules("core") and "geventp2p.core.record" in _modules("core")


def test_core_imports_neither_crypto_nor_gevent():
    loaded = _import_in_fresh_interpreter(_modules("core"))
    assert "geventp2p.core.record" in loaded  # the imports really ran
    assert not {m for m in loaded if m == "geventp2p.crypto" or m.startswith("geventp2p.crypto.")}
    assert not {m for m in loaded if m == "gevent" or m.startswith("gevent.")}
    assert not {m for m in loaded if m.startswith("geventp2p.net")}


def test_sansio_imports_no_gevent():
    loaded = _import_in_fresh_interpreter(_modules("core") + _modules("sansio"))
    assert "geventp2p.sansio.yamux" in loaded
    assert not {m for m in loaded if m == "gevent" or m.startswith("gevent.")}


_IO_CALLS = {"getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostname", "create_connection",
             "listdir", "scandir", "net_if_addrs"}


def _io_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name == "open" or name in _IO_CALLS:
                found.append(f"{path.name}:{node.lineno} {name}()")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("/proc/"):
            found.append(f"{path.name}:{node.lineno} {node.value!r}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for n in names:
                if n.startswith("geventp2p.crypto") and path.parent.name == "core":
                    found.append(f"{path.name}:{node.lineno} import {n}")
    return found


@pytest.mark.parametrize("sub", ["core", "sansio"])
def test_no_io_in_sources(sub):
    bad = [u for p in sorted((PKG / sub).glob("*.py")) for u in _io_uses(p)]
    assert bad == []

"""Facade over the hot-path modules: compiled (Cython) when available, else pure Python.

Each hot-path module exists twice with one source: ``_py_varint.py`` is plain Python,
and the build compiles that same file a second time as ``_c_varint`` with
``_c_varint.pxd`` supplying the C types.  Code elsewhere imports only from this facade::

    from geventp2p._speedups import varint, frames, window

``varint``, ``frames`` and ``window`` are attributes of this package, not submodules:
``import geventp2p._speedups.frames`` fails loudly instead of quietly handing out the
pure build.  Both builds stay importable by their private names (``_py_frames``,
``_c_frames``), so one process can test both; :func:`module` returns either one.

Environment (read once, at import):

``GEVENTP2P_PURE_PYTHON``
    ``1`` (or ``true``/``yes``/``all``) forces the pure module for every hot path;
    a comma list (``frames,window``) forces only those modules.
``GEVENTP2P_REQUIRE_SPEEDUPS``
    ``1`` turns a missing or broken compiled module into an ``ImportError`` instead
    of a silent fallback (unless that module was explicitly forced pure).

This package never imports gevent.
"""

from __future__ import annotations

import os
import platform
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING

__all__ = ["MODULES", "IMPLEMENTATION", "info", "module", "varint", "frames", "window", "noiseframes", "wsmask", "scope"]

#: Hot-path modules, in dependency order.  Each one is ``_py_<name>.py`` (pure source)
#: plus ``_c_<name>.pxd`` (C declarations for the compiled build of that source).
MODULES = ("varint", "frames", "window", "noiseframes", "wsmask", "scope")

_KINDS = {"python": "_py_", "cython": "_c_"}

_TRUE = {"1", "true", "yes", "on", "all"}


def _pure_requested_set() -> tuple[bool, frozenset[str]]:
    raw = os.environ.get("GEVENTP2P_PURE_PYTHON", "").strip()
    if not raw or raw.lower() in {"0", "false", "no", "off"}:
        return False, frozenset()
    if raw.lower() in _TRUE:
        return True, frozenset(MODULES)
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    unknown = names - set(MODULES)
    if unknown:
        raise ImportError(
            f"GEVENTP2P_PURE_PYTHON names unknown module(s) {sorted(unknown)}; known: {list(MODULES)}"
        )
    return False, names


_PURE_ALL, _PURE_NAMES = _pure_requested_set()
_REQUIRE = os.environ.get("GEVENTP2P_REQUIRE_SPEEDUPS", "").strip().lower() in _TRUE
_IS_CPYTHON = platform.python_implementation() == "CPython"

_info: dict[str, tuple[str, str]] = {}


def module(name: str, kind: str) -> ModuleType:
    """Import one build of a hot-path module, whatever the facade picked.

    ``kind`` is ``"python"`` (``_py_<name>``) or ``"cython"`` (``_c_<name>``; raises
    ``ImportError`` if it is not built).  For tests and benchmarks that compare builds.
    """
    if name not in MODULES:
        raise ValueError(f"unknown hot-path module {name!r}; known: {list(MODULES)}")
    if kind not in _KINDS:
        raise ValueError(f"kind must be 'python' or 'cython', not {kind!r}")
    return import_module(f"{__name__}.{_KINDS[kind]}{name}")


def _load(name: str) -> ModuleType:
    pure = module(name, "python")
    if name in _PURE_NAMES:
        _info[name] = ("python", "requested by GEVENTP2P_PURE_PYTHON")
        return pure
    if not _IS_CPYTHON:
        _info[name] = ("python", f"not CPython ({platform.python_implementation()})")
        return pure
    try:
        mod = module(name, "cython")
    except ImportError as exc:
        if _REQUIRE:
            raise ImportError(
                f"GEVENTP2P_REQUIRE_SPEEDUPS=1 but the compiled module {__name__}._c_{name} "
                f"could not be imported ({exc}); build it with `make build`"
            ) from exc
        _info[name] = ("python", f"fallback: compiled module not importable ({exc})")
        return pure
    _info[name] = ("cython", f"compiled module {mod.__name__}")
    return mod


if TYPE_CHECKING:  # type checkers read the pure sources
    from . import _py_frames as frames
    from . import _py_noiseframes as noiseframes
    from . import _py_varint as varint
    from . import _py_window as window
    from . import _py_scope as scope
    from . import _py_wsmask as wsmask
else:
    varint = _load("varint")
    frames = _load("frames")
    window = _load("window")
    noiseframes = _load("noiseframes")
    wsmask = _load("wsmask")
    scope = _load("scope")


def info() -> dict[str, tuple[str, str]]:
    """Map each hot-path module name to ``(kind, reason)``; kind is ``cython`` or ``python``."""
    return dict(_info)


def _implementation() -> str:
    kinds = {kind for kind, _ in _info.values()}
    return kinds.pop() if len(kinds) == 1 else "mixed"


#: ``"cython"``, ``"python"`` or ``"mixed"``.
IMPLEMENTATION = _implementation()

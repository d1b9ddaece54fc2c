"""Modules imported on first attribute access.

TLS (pyOpenSSL), QUIC (aioquic) and WebSocket (wsproto) are on by default, but most
hosts only ever speak Noise over TCP.  Importing those libraries eagerly costs about
10 MiB of resident memory per process (cryptography's X.509 code, OpenSSL bindings,
aioquic's C parts), so the modules that wrap them bind the library names through
:func:`lazy_module` instead: the import happens on the first handshake or listen that
needs it, not when ``new_host`` builds the component list.

Type checkers see the real module (import it under ``TYPE_CHECKING``); at run time the
name is a :class:`LazyModule`.  After the first access the module's namespace is copied
into the proxy, so later lookups are plain instance-dict hits, as fast as a module
attribute.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["LazyModule", "lazy_module"]


class LazyModule:
    """A stand-in for the module ``name``; the first attribute lookup imports it."""

    def __init__(self, name: str) -> None:
        self.__dict__["_lazy_name"] = name

    def __getattr__(self, attr: str) -> Any:
        # Only reached for names not yet in the instance dict: load once, then copy.
        module: ModuleType = importlib.import_module(self.__dict__["_lazy_name"])
        self.__dict__.update(module.__dict__)
        try:
            return self.__dict__[attr]
        except KeyError:
            raise AttributeError(f"module {module.__name__!r} has no attribute {attr!r}") from None

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_lazy_name']!r}>"


def lazy_module(name: str) -> Any:
    """A proxy for module ``name`` that imports it on first use (typed ``Any``)."""
    return LazyModule(name)

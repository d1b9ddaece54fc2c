"""geventp2p: a wire-compatible libp2p stack for gevent, in blocking style."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# Public names, imported on first use (PEP 562) so ``import geventp2p`` stays
# light and subpackages such as ``geventp2p._speedups`` never pull in gevent.
_EXPORTS = {
    "new_host": "geventp2p.defaults",
    "load_or_create_identity": "geventp2p.identity",
    "HostConfig": "geventp2p.config",
    "NoiseConfig": "geventp2p.config",
    "IdentifyConfig": "geventp2p.config",
    "BasicHost": "geventp2p.host.basic",
    "Host": "geventp2p.host.basic",
    "Stream": "geventp2p.net.stream",
    "Swarm": "geventp2p.net.swarm",
    "PeerId": "geventp2p.core.peer",
    "PeerInfo": "geventp2p.core.peer",
    "KeyType": "geventp2p.crypto.keys",
    "PrivateKey": "geventp2p.crypto.keys",
    "PublicKey": "geventp2p.crypto.keys",
    "generate_key": "geventp2p.crypto.keys",
    "unmarshal_private_key": "geventp2p.crypto.keys",
    "unmarshal_public_key": "geventp2p.crypto.keys",
    "exceptions": "geventp2p",
}
_ERRORS = (
    "P2PError", "ConfigError", "ProtocolError", "NegotiationError", "SecurityError",
    "TransportError", "DialError", "StreamError", "StreamResetError", "StreamClosedError",
    "P2PTimeoutError",
)

__all__ = ["__version__", *_EXPORTS, *_ERRORS]

if TYPE_CHECKING:  # what the lazy loader below returns, for type checkers
    from geventp2p import exceptions
    from geventp2p.config import HostConfig, IdentifyConfig, NoiseConfig
    from geventp2p.core.peer import PeerId, PeerInfo
    from geventp2p.crypto.keys import (
        KeyType,
        PrivateKey,
        PublicKey,
        generate_key,
        unmarshal_private_key,
        unmarshal_public_key,
    )
    from geventp2p.defaults import new_host
    from geventp2p.exceptions import (
        ConfigError,
        DialError,
        NegotiationError,
        P2PError,
        P2PTimeoutError,
        ProtocolError,
        SecurityError,
        StreamClosedError,
        StreamError,
        StreamResetError,
        TransportError,
    )
    from geventp2p.host.basic import BasicHost, Host
    from geventp2p.net.stream import Stream
    from geventp2p.net.swarm import Swarm
    from geventp2p.identity import load_or_create_identity


def __getattr__(name: str) -> Any:
    import importlib

    if name in _ERRORS:
        return getattr(importlib.import_module("geventp2p.exceptions"), name)
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'geventp2p' has no attribute {name!r}")
    if name == "exceptions":
        return importlib.import_module("geventp2p.exceptions")
    return getattr(importlib.import_module(mod), name)

"""geventp2p: a wire-compatible libp2p stack for gevent, in blocking style."""

from __future__ import annotations

import logging

__version__ = "0.1.0.dev0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]

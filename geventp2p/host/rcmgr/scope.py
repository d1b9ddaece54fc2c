"""Resource scopes: counters with limits, linked into go-libp2p's scope DAG.

The classes live in the hot-path module ``scope`` (``_speedups/_py_scope.py``, compiled
as ``_c_scope`` in the Cython build); this module is where the rest of the package and
users import them from.  See that module for the model.
"""

from __future__ import annotations

from geventp2p._speedups import scope as _impl

Scope = _impl.Scope
ConnScope = _impl.ConnScope
StreamScope = _impl.StreamScope
is_inbound = _impl.is_inbound
RefusalHook = _impl.RefusalHook

__all__ = ["Scope", "ConnScope", "StreamScope", "is_inbound"]

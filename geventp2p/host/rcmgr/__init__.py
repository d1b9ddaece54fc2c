"""The resource manager (go-libp2p ``p2p/host/resource-manager``, in Python form).

Contracts: :mod:`geventp2p.core.rcmgr`.  Limits, their scaling and go's JSON limit
files: :mod:`.limits`.  Scopes: :mod:`.scope`.  The manager: :mod:`.manager`.
"""

from geventp2p.host.rcmgr.limits import (
    UNLIMITED,
    BaseLimit,
    BaseLimitIncrease,
    ConcreteLimitConfig,
    LimitConfig,
    ScalingLimitConfig,
    default_limits,
)
from geventp2p.host.rcmgr.manager import ResourceManagerImpl, new_resource_manager
from geventp2p.host.rcmgr.scope import ConnScope, Scope, StreamScope

__all__ = [
    "UNLIMITED",
    "BaseLimit",
    "BaseLimitIncrease",
    "ConcreteLimitConfig",
    "LimitConfig",
    "ScalingLimitConfig",
    "default_limits",
    "ResourceManagerImpl",
    "new_resource_manager",
    "Scope",
    "ConnScope",
    "StreamScope",
]

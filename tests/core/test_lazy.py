"""Lazy imports: the optional transports' libraries load on first use, not with new_host."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from geventp2p.core.lazy import LazyModule, lazy_module

HEAVY = ("OpenSSL", "aioquic", "wsproto", "cryptography.x509", "ssl")

_PROBE = """
import json, sys
from geventp2p.defaults import new_host
server, client = new_host(listen=%(listen)r), new_host(listen=[])
try:
    loaded = lambda: sorted({r for r in %(heavy)r for m in sys.modules if m == r or m.startswith(r + ".")})
    before = loaded()
    if %(connect)r:
        client.connect(server.p2p_addrs()[0], timeout=30)
    after = loaded()
finally:
    client.close()
    server.close()
print(json.dumps([before, after]))
"""


def _loaded(listen: list[str], connect: bool) -> list[list[str]]:
    code = _PROBE % {"listen": listen, "heavy": HEAVY, "connect": connect}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_tcp_host_does_not_import_tls_quic_or_websocket_libraries() -> None:
    # TLS stays in the default security list and QUIC/WS in the transport list: built,
    # not loaded, and a Noise connection over TCP does not load them either.
    assert _loaded(["/ip4/127.0.0.1/tcp/0"], connect=True) == [[], []]


def test_a_quic_connection_loads_aioquic_on_first_use() -> None:
    before, after = _loaded(["/ip4/127.0.0.1/udp/0/quic-v1"], connect=True)
    assert before == []  # listening alone binds the UDP socket only
    assert {"aioquic", "cryptography.x509", "ssl"} <= set(after)


def test_lazy_module_loads_on_first_attribute_and_then_behaves_like_the_module() -> None:
    import textwrap

    proxy = lazy_module("textwrap")
    assert isinstance(proxy, LazyModule)
    assert "lazy module 'textwrap'" in repr(proxy)
    assert "dedent" not in vars(proxy)
    assert proxy.dedent is textwrap.dedent
    assert "dedent" in vars(proxy)  # copied: later lookups skip __getattr__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        proxy.nope  # noqa: B018


def test_lazy_module_of_a_missing_module_raises_on_use() -> None:
    proxy = lazy_module("geventp2p_no_such_module")
    with pytest.raises(ModuleNotFoundError):
        proxy.anything  # noqa: B018

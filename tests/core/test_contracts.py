"""The ``geventp2p.core`` contracts: values, runtime behaviour, and structural conformance.

Conformance is checked by mypy over ``contracts_typed.py`` (next to this file):
one function per (implementation, contract) pair.  A pair listed in
``KNOWN_GAPS`` is expected to fail today (xfail, with mypy's explanation); once it
conforms the test fails until it is removed from the list, so the list only shrinks.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from geventp2p.core import mux, network, sec, transport
from geventp2p.core.mux import ConnErrorCode, Direction, StreamErrorCode

HERE = Path(__file__).resolve().parent
TYPED = HERE / "contracts_typed.py"
REPO = HERE.parent.parent

#: (implementation, contract) pairs that do not conform yet, with the root cause.
#: Remove an entry when its implementation is fixed (the test then insists).
KNOWN_GAPS: dict[str, str] = {
}


def _check_functions() -> dict[str, tuple[int, int]]:
    """Map each ``check__*`` function in contracts_typed.py to its (first, last) line."""
    tree = ast.parse(TYPED.read_text(), str(TYPED))
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("check__"):
            out[node.name] = (node.lineno, node.end_lineno or node.lineno)
    return out


CHECKS = _check_functions()


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Run mypy once over contracts_typed.py; errors and notes grouped by check function."""
    api = pytest.importorskip("mypy.api", reason="mypy is not installed (pip install mypy)")
    cache = tmp_path_factory.mktemp("mypy_cache")
    stdout, stderr, status = api.run([
        "--follow-imports=silent",  # report only the checks, not the implementations' own errors
        "--show-error-codes",
        "--no-error-summary",
        "--hide-error-context",
        "--cache-dir", str(cache),
        str(TYPED),
    ])
    assert status in (0, 1), f"mypy failed to run (status {status}):\n{stdout}\n{stderr}"
    by_check: dict[str, list[str]] = {name: [] for name in CHECKS}
    stray = []
    for line in stdout.splitlines():
        m = re.match(r"^(.*?):(\d+): (error|note): (.*)$", line)
        if not m:
            continue
        lineno = int(m.group(2))
        owner = next((n for n, (a, b) in CHECKS.items() if a <= lineno <= b), None)
        if owner is None:
            stray.append(line)
        else:
            by_check[owner].append(f"{m.group(3)}: {m.group(4)}")
    assert not stray, "mypy errors outside the check functions:\n" + "\n".join(stray)
    return by_check


def test_typed_module_lists_every_known_gap() -> None:
    assert set(KNOWN_GAPS) <= set(CHECKS), set(KNOWN_GAPS) - set(CHECKS)
    assert len(CHECKS) >= 20


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_conforms(check: str, mypy_report: dict[str, list[str]]) -> None:
    """The implementation named in ``check`` is usable as the contract named there."""
    errors = mypy_report[check]
    if check in KNOWN_GAPS:
        if errors:
            pytest.xfail(f"known gap: {KNOWN_GAPS[check]}\n" + "\n".join(errors))
        pytest.fail(f"{check} conforms now: remove it from KNOWN_GAPS")
    assert not errors, f"{check} does not conform:\n" + "\n".join(errors)


# --------------------------------------------------------------------------- runtime


def test_transport_is_runtime_checkable() -> None:
    from geventp2p.net.memory import MemoryTransport
    from geventp2p.net.tcp import TcpTransport

    assert isinstance(TcpTransport(), transport.Transport)
    assert isinstance(MemoryTransport(), transport.Transport)
    assert not isinstance(object(), transport.Transport)

    class DialOnly:
        def dial(self, addr: object, timeout: float | None = None) -> None: ...

    assert not isinstance(DialOnly(), transport.Transport)


def test_only_transport_and_multiplexer_are_runtime_checkable() -> None:
    # Transport (Swarm.add_transport) and Multiplexer (new_host's muxer check) are
    # checked at run time; isinstance on the others raises, so they stay static-only
    # unless code needs a runtime check.
    assert not isinstance(object(), transport.Transport)
    assert not isinstance(object(), mux.Multiplexer)
    for proto in (transport.RawConn, transport.Listener, sec.SecureConn, sec.SecureTransport,
                  mux.MuxedStream, mux.MuxedConn,
                  network.Stream, network.Conn, network.Network, network.Notifiee):
        with pytest.raises(TypeError):
            isinstance(object(), proto)


def test_core_imports_no_gevent_and_no_implementation() -> None:
    code = (
        "import sys, geventp2p.core, geventp2p.core.network, geventp2p.core.transport, "
        "geventp2p.core.sec, geventp2p.core.mux\n"
        "bad = sorted(m for m in sys.modules if m == 'gevent' or m.startswith(('gevent.', "
        "'geventp2p.net', 'geventp2p.host', 'geventp2p.protocols', 'geventp2p.crypto')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=REPO, check=True)
    assert out.stdout.strip() == ""


def test_direction_is_a_str_enum_equal_to_the_old_strings() -> None:
    assert [d.value for d in Direction] == ["unknown", "inbound", "outbound"]
    assert Direction.INBOUND == "inbound" and Direction.OUTBOUND == "outbound"
    assert Direction.INBOUND != "outbound"
    assert {"inbound": 1}[Direction.INBOUND] == 1  # hashes like the string
    by_direction: dict[str, int] = {Direction.OUTBOUND: 2}
    assert by_direction["outbound"] == 2
    assert str(Direction.OUTBOUND) == "outbound" and f"{Direction.INBOUND:>8}" == " inbound"
    assert Direction("inbound") is Direction.INBOUND
    # the former core.event.Direction names are aliases of the same members
    assert Direction.Inbound is Direction.INBOUND and Direction.Outbound is Direction.OUTBOUND
    assert Direction.Unknown is Direction.UNKNOWN


@pytest.mark.parametrize("value, expected", [
    (Direction.OUTBOUND, Direction.OUTBOUND),
    ("inbound", Direction.INBOUND),
    (" Outbound ", Direction.OUTBOUND),
    ("UNKNOWN", Direction.UNKNOWN),
    (0, Direction.UNKNOWN),  # go's DirUnknown / DirInbound / DirOutbound numbers
    (1, Direction.INBOUND),
    (2, Direction.OUTBOUND),
])
def test_direction_parse(value: object, expected: Direction) -> None:
    assert Direction.parse(value) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["sideways", "", 3, -1, True, None, 1.0])
def test_direction_parse_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        Direction.parse(value)  # type: ignore[arg-type]


def test_stream_error_codes_are_gos() -> None:
    # go-libp2p core/network/mux.go
    assert {c.name: c.value for c in StreamErrorCode} == {
        "NO_ERROR": 0,
        "PROTOCOL_NEGOTIATION_FAILED": 0x1001,
        "RESOURCE_LIMIT_EXCEEDED": 0x1002,
        "RATE_LIMITED": 0x1003,
        "PROTOCOL_VIOLATION": 0x1004,
        "SUPPLANTED": 0x1005,
        "GARBAGE_COLLECTED": 0x1006,
        "SHUTDOWN": 0x1007,
        "GATED": 0x1008,
        "CODE_OUT_OF_RANGE": 0x1009,
    }


def test_conn_error_codes_are_gos() -> None:
    # go-libp2p core/network/conn.go
    assert {c.name: c.value for c in ConnErrorCode} == {
        "NO_ERROR": 0,
        "PROTOCOL_NEGOTIATION_FAILED": 0x1000,
        "RESOURCE_LIMIT_EXCEEDED": 0x1001,
        "RATE_LIMITED": 0x1002,
        "PROTOCOL_VIOLATION": 0x1003,
        "SUPPLANTED": 0x1004,
        "GARBAGE_COLLECTED": 0x1005,
        "SHUTDOWN": 0x1006,
        "GATED": 0x1007,
        "CODE_OUT_OF_RANGE": 0x1008,
    }


def test_error_codes_agree_with_the_exception_tree() -> None:
    from geventp2p import exceptions

    # classes that carry a go stream code on the wire use the same number as core.mux
    assert exceptions.NegotiationError.error_code == StreamErrorCode.PROTOCOL_NEGOTIATION_FAILED
    assert exceptions.ResourceLimitExceeded.error_code == StreamErrorCode.RESOURCE_LIMIT_EXCEEDED

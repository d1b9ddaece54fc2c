"""The public surface's static types: what mypy infers for ``new_host`` and ``new_stream``.

Runs mypy on a small snippet.  Skips when mypy is not installed, except under
``CI=true`` where a missing mypy fails the test.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import ModuleType

import pytest

SNIPPET = '''
import geventp2p

host = geventp2p.new_host()
reveal_type(host)
stream = host.new_stream(host.id, "/echo/1.0.0", timeout=5)
reveal_type(stream)
reveal_type(stream.direction)
reveal_type(host.network.conns()[0].direction)
'''


def _mypy_api() -> ModuleType:
    try:
        from mypy import api
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("mypy is not installed (required under CI=true)")
        pytest.skip("mypy is not installed (pip install mypy)")
    return api


def test_reveal_public_types(tmp_path: Path) -> None:
    api = _mypy_api()
    src = tmp_path / "snippet.py"
    src.write_text(SNIPPET)
    stdout, stderr, status = api.run([
        "--follow-imports=silent",
        "--no-error-summary",
        "--cache-dir", str(tmp_path / "mypy_cache"),
        str(src),
    ])
    revealed = re.findall(r'Revealed type is "([^"]+)"', stdout)
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert not errors, stdout + stderr
    assert revealed == [
        "geventp2p.host.basic.BasicHost",
        "geventp2p.net.stream.Stream",
        "geventp2p.core.mux.Direction",
        "geventp2p.core.mux.Direction",
    ], stdout + stderr

"""``python -m geventp2p._speedups``: print which build each hot-path module uses."""

from __future__ import annotations

import sys

from . import IMPLEMENTATION, info


def main() -> int:
    rows = info()
    width = max(len("build"), *(len(n) for n in rows))
    for name, (kind, reason) in rows.items():
        print(f"{name:<{width}} {kind:<7} {reason}")
    print(f"{'build':<{width}} {IMPLEMENTATION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

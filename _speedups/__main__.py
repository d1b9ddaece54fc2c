"""``python -m geventp2p._speedups``: print which build each hot-path module uses."""

from __future__ import annotations

import sys

from . import IMPLEMENTATION, info


def main() -> int:
    for name, (kind, reason) in info().items():
        print(f"{name:<8} {kind:<7} {reason}")
    print(f"build    {IMPLEMENTATION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

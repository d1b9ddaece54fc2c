"""Benchmarks: pytest-benchmark micro-benchmarks and the cross-implementation comparison.

``python -m pytest bench --benchmark-only``  micro-benchmarks (pure vs compiled hot paths)
``python -m bench.compare``                  geventp2p vs js-libp2p vs py-libp2p (see README.md)
"""

"""Test helpers shipped for geventp2p's own tests and for users testing their protocols.

* :mod:`geventp2p.testing.pytest_plugin`: pytest fixtures (``host_pair``,
  ``tcp_host_pair``, ``make_host``, ``socketpair``, ``virtual_clock``,
  ``leakcheck``); the only module here that imports pytest.
* :mod:`geventp2p.testing.clock`: ``VirtualClock`` / ``MonotonicClock`` to inject
  where a component takes ``clock=``.
* :mod:`geventp2p.testing.leakcheck`: ``no_leaks()``, live greenlets, open sockets.
* :mod:`geventp2p.testing.memory`: the in-process transport and its knobs.
* :mod:`geventp2p.testing.mocknet`: N linked hosts over the memory transport.
* :mod:`geventp2p.testing.muxer_suite`: the muxer conformance suite.

Importing this package imports none of them.
"""

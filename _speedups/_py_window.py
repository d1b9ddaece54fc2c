"""Per-stream flow-control accounting for yamux (u32 arithmetic; https://github.com/libp2p/specs/blob/master/yamux/README.md#flow-control).

Pure Python source; the build compiles this same file as ``_c_window`` with
``_c_window.pxd``.  No clocks here: callers pass ``now`` (monotonic seconds) and the
session ``rtt``.

``StreamWindow(initial=262144, max_window=16 MiB)`` keeps both directions of one stream:

* send side: ``send_window`` is the credit the peer granted us.
  ``consume_send(n) -> k`` takes ``k = min(n, send_window)`` bytes of credit;
  ``add_send_credit(delta)`` applies a received WindowUpdate.
* receive side: ``recv_window`` is the credit the peer still has, ``recv_buffered``
  the bytes received but not yet read by the application, ``target`` the current
  receive window size (it doubles with auto-tuning, up to ``max_window``).
  ``on_data(n)`` accounts a received Data body, ``on_read(n)`` the application
  reading, ``take_update(now, rtt, force=False, can_grow=True) -> delta`` the credit
  to send in a WindowUpdate (0: send nothing).

Invariant: ``0 <= recv_window + recv_buffered <= target <= max_window <= 2**32 - 1``
and ``0 <= send_window <= 2**32 - 1``.
"""

from geventp2p.exceptions import ConfigError, LocalProtocolError, WindowError

INITIAL_WINDOW = 256 * 1024
MAX_WINDOW = 16 * 1024 * 1024
U32_MAX = 0xFFFFFFFF

# Private copy: a C constant in the compiled build (``_c_window.pxd``).
_U32_MAX = U32_MAX


class StreamWindow:
    """Flow-control state of one yamux stream."""

    __slots__ = (
        "send_window",
        "recv_window",
        "recv_buffered",
        "target",
        "max_window",
        "_last_update",
        "_has_update",
    )

    def __init__(self, initial=INITIAL_WINDOW, max_window=MAX_WINDOW):
        if initial <= 0 or initial > U32_MAX:
            raise ConfigError("initial window must be in 1..2**32-1, got %r" % (initial,))
        if max_window < initial or max_window > U32_MAX:
            raise ConfigError(
                "max_window must be in initial..2**32-1 (initial %r), got %r" % (initial, max_window)
            )
        self.send_window = initial
        self.recv_window = initial
        self.recv_buffered = 0
        self.target = initial
        self.max_window = max_window
        self._last_update = 0.0
        self._has_update = False

    def consume_send(self, n):
        """Take up to ``n`` bytes of send credit; return how many were taken."""
        if n < 0:
            raise LocalProtocolError("cannot send a negative number of bytes: %r" % (n,))
        if n >= self.send_window:
            k = self.send_window
        else:
            k = n
        self.send_window -= k
        return k

    def add_send_credit(self, delta):
        """Apply a WindowUpdate delta from the peer."""
        if delta < 0:
            raise WindowError("negative window update %r" % (delta,))
        if delta > _U32_MAX - self.send_window:
            raise WindowError(
                "window update of %d overflows the send window %d beyond 2**32-1"
                % (delta, self.send_window)
            )
        d = delta  # range-checked: a C integer in the compiled build
        self.send_window += d

    def on_data(self, n):
        """Account ``n`` received Data-body bytes against the receive window."""
        if n < 0:
            raise LocalProtocolError("negative data length %r" % (n,))
        if n > self.recv_window:
            raise WindowError("received %d bytes, window %d" % (n, self.recv_window))
        k = n  # range-checked: a C integer in the compiled build
        self.recv_window -= k
        self.recv_buffered += k

    def on_read(self, n):
        """Account ``n`` bytes handed to the application."""
        if n < 0 or n > self.recv_buffered:
            raise LocalProtocolError(
                "read of %r bytes but only %d are buffered" % (n, self.recv_buffered)
            )
        k = n  # range-checked: a C integer in the compiled build
        self.recv_buffered -= k

    def take_update(self, now, rtt, force=False, can_grow=True):
        """Return the credit to grant the peer now (0: send no WindowUpdate).

        Credit is returned once the freed space is at least half the receive window,
        or whenever ``force`` is set (a SYN/ACK must go out).  If the previous update
        was less than 4 RTT ago the window doubles, up to ``max_window``.
        """
        freed = self.target - self.recv_window - self.recv_buffered
        if not force and freed < self.target // 2:
            return 0
        if (
            can_grow
            and rtt > 0
            and self._has_update
            and now - self._last_update < 4 * rtt
            and self.target < self.max_window
        ):
            new = self.target * 2
            if new > self.max_window:
                new = self.max_window
            freed += new - self.target
            self.target = new
        self._last_update = now
        self._has_update = True
        self.recv_window += freed
        return freed

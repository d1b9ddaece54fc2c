"""A SocketConn that records what each write hands to the socket (wire-order tests)."""

from geventp2p.net.rawconn import SocketConn


class RecordingConn(SocketConn):
    """A SocketConn that records what each write hands to the socket."""

    def __init__(self, sock, **kw):
        super().__init__(sock, **kw)
        self.writes = []

    def _write_raw(self, data):
        self.writes.append(bytes(data))
        super()._write_raw(data)

"""The README's API tour as a runnable script: two hosts, a handler, a stream, events.

Run: .venv/bin/python examples/tour.py
"""

import gevent

import geventp2p
from geventp2p.core.event import EvtPeerConnectednessChanged, EvtPeerIdentificationCompleted

# Two hosts on loopback TCP; defaults are Noise, then yamux or mplex.
server = geventp2p.new_host(listen=["/ip4/127.0.0.1/tcp/0"])
client = geventp2p.new_host(listen=["/ip4/127.0.0.1/tcp/0"])


# A handler runs in its own greenlet for each inbound stream; plain blocking code.
def shout(stream):
    data = stream.read_exactly(5, timeout=10)
    stream.write(data.upper())
    stream.close()


server.set_stream_handler("/shout/1.0.0", shout)

with client, server:
    # Subscribe before connecting so no event is missed.
    with client.event_bus.subscribe([EvtPeerConnectednessChanged, EvtPeerIdentificationCompleted]) as sub:
        client.connect(server.p2p_addrs()[0])  # "/ip4/127.0.0.1/tcp/PORT/p2p/12D3KooW..."

        # One Stream class, a context manager: close() on the way out.
        with client.new_stream(server.id, ["/shout/1.0.0"], timeout=10) as stream:
            stream.write(b"hello")
            stream.close_write()  # half-close: the server sees EOF after "hello"
            print(stream.read_exactly(5, timeout=10))  # b'HELLO'
            print(stream.read(timeout=10))  # b'' -> EOF

        for _ in range(2):
            print(type(sub.get(timeout=5)).__name__)

    # Services on by default: ping yields RTTs (seconds).
    from geventp2p.protocols.ping import ping

    for rtt in ping(client, server.id, count=3):
        print(f"ping {rtt * 1000:.2f} ms")

    print(client.peerstore.get(server.id, "AgentVersion"))
    gevent.sleep(0)

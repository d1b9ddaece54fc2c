"""sans-I/O multistream-select: byte vectors (go-libp2p's encoding), limits, state machines."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geventp2p.exceptions import (
    LocalProtocolError,
    MessageTooLargeError,
    NegotiationError,
    ProtocolError,
    RemoteProtocolError,
    VarintError,
)
from geventp2p.sansio import multistream as ms

VECTORS = [
    ("/multistream/1.0.0", "132f6d756c746973747265616d2f312e302e300a"),
    ("na", "036e610a"),
    ("ls", "036c730a"),
    ("/noise", "072f6e6f6973650a"),
    ("/tls/1.0.0", "0b2f746c732f312e302e300a"),
    ("/plaintext/2.0.0", "112f706c61696e746578742f322e302e300a"),
    ("/yamux/1.0.0", "0d2f79616d75782f312e302e300a"),
    ("/mplex/6.7.0", "0d2f6d706c65782f362e372e300a"),
    ("/ipfs/id/1.0.0", "0f2f697066732f69642f312e302e300a"),
    ("/ipfs/id/push/1.0.0", "142f697066732f69642f707573682f312e302e300a"),
    ("/ipfs/ping/1.0.0", "112f697066732f70696e672f312e302e300a"),
    ("/perf/1.0.0", "0c2f706572662f312e302e300a"),
    ("/meshsub/1.1.0", "0f2f6d6573687375622f312e312e300a"),
]

HEADER = bytes.fromhex(VECTORS[0][1])
NA_B = bytes.fromhex("036e610a")


@pytest.mark.parametrize("token,hexbytes", VECTORS)
def test_encode_vectors(token, hexbytes):
    assert ms.encode_message(token).hex() == hexbytes


@pytest.mark.parametrize("token,hexbytes", VECTORS)
def test_decode_vectors(token, hexbytes):
    raw = bytes.fromhex(hexbytes)
    assert ms.decode_message(raw) == (token, len(raw))
    assert ms.decode_message(raw + b"tail") == (token, len(raw))
    for cut in range(len(raw)):
        assert ms.decode_message(raw[:cut]) is None


def test_decode_at_offset():
    buf = HEADER + NA_B
    assert ms.decode_message(buf, len(HEADER)) == ("na", len(buf))


def test_two_byte_length_prefix():
    proto = "/" + "a" * 200
    raw = ms.encode_message(proto)
    assert raw[:2] == bytes([0xCA, 0x01])  # 202 = 0xca 0x01
    assert ms.decode_message(raw) == (proto, len(raw))


def test_limit_exactly_1024_ok_and_1025_rejected():
    ok = "/" + "x" * 1022  # 1023 + newline = 1024
    assert ms.decode_message(ms.encode_message(ok))[0] == ok
    body = b"/" + b"x" * 1023 + b"\n"  # 1025
    raw = bytes([0x81, 0x08]) + body
    with pytest.raises(MessageTooLargeError):
        ms.decode_message(raw)
    # rejected from the prefix alone, without waiting for the body
    with pytest.raises(MessageTooLargeError):
        ms.decode_message(raw[:2])
    assert issubclass(MessageTooLargeError, ProtocolError)


def test_encode_rejects_too_long_and_bad_ids():
    with pytest.raises(LocalProtocolError):
        ms.encode_message("/" + "x" * 1023)
    with pytest.raises(LocalProtocolError):
        ms.encode_message("noslash")
    with pytest.raises(LocalProtocolError):
        ms.encode_message("/a\nb")
    with pytest.raises(LocalProtocolError):
        ms.encode_message(b"/bytes")  # type: ignore[arg-type]


def test_missing_newline():
    with pytest.raises(RemoteProtocolError, match="newline"):
        ms.decode_message(b"\x06/noise")


def test_empty_message():
    with pytest.raises(RemoteProtocolError, match="empty"):
        ms.decode_message(b"\x00")


def test_protocol_must_start_with_slash():
    with pytest.raises(RemoteProtocolError):
        ms.decode_message(b"\x06noise\n")


def test_newline_inside_token():
    with pytest.raises(RemoteProtocolError):
        ms.decode_message(b"\x04/a\nb\n"[:0] + b"\x05/a\nb\n")


def test_invalid_utf8():
    with pytest.raises(RemoteProtocolError):
        ms.decode_message(b"\x03/\xff\n")


@pytest.mark.parametrize("raw", [b"\x80\x00", b"\xff" * 10])
def test_bad_varint(raw):
    with pytest.raises(VarintError):
        ms.decode_message(raw)


def test_ls_response_roundtrip():
    protos = ["/noise", "/yamux/1.0.0"]
    raw = ms.encode_ls_response(protos)
    inner = bytes.fromhex("072f6e6f6973650a") + bytes.fromhex("0d2f79616d75782f312e302e300a") + b"\n"
    assert raw == bytes([len(inner)]) + inner
    assert ms.decode_ls_response(raw + b"x") == (protos, len(raw))
    assert ms.decode_ls_response(raw[:-1]) is None
    assert ms.decode_ls_response(ms.encode_ls_response([])) == ([], 2)


def test_ls_response_malformed():
    with pytest.raises(RemoteProtocolError):
        ms.decode_ls_response(b"\x02ab")
    with pytest.raises(RemoteProtocolError):
        ms.decode_ls_response(b"\x03\x05/a\n")  # truncated inner entry + newline
    with pytest.raises(LocalProtocolError):
        ms.encode_ls_response(["/" + "p" * 100] * 20)


def test_message_reader_keeps_tail():
    r = ms.MessageReader()
    r.feed(HEADER[:5])
    assert r.next_message() is None
    r.feed(HEADER[5:] + b"\x07/noise\nrest")
    assert r.next_message() == "/multistream/1.0.0"
    assert r.next_message() == "/noise"
    assert r.next_message() is None  # 'r' = 0x72 is a length prefix of 114
    assert r.buffered() == 4
    assert r.unconsumed() == b"rest"
    assert r.buffered() == 0


def test_failed_parse_consumes_nothing():
    r = ms.MessageReader()
    r.feed(b"\x06/noise")
    with pytest.raises(RemoteProtocolError):
        r.next_message()
    assert r.unconsumed() == b"\x06/noise"


# ---------------------------------------------------------------- Dialer


def test_dialer_first_write_is_header_plus_proposal():
    d = ms.Dialer(["/tls/1.0.0", "/noise"])
    assert d.data_to_send().hex() == VECTORS[0][1] + "0b2f746c732f312e302e300a"
    assert d.data_to_send() == b""


def test_dialer_go_exchange_from_reference():
    """A go dialer proposes TLS, listener says na, then /noise is echoed."""
    d = ms.Dialer(["/tls/1.0.0", "/noise"])
    d.data_to_send()
    assert d.receive_data(HEADER + NA_B) is False
    assert d.data_to_send().hex() == "072f6e6f6973650a"
    assert d.receive_data(bytes.fromhex("072f6e6f6973650a") + b"\x00\x20E") is True
    assert d.protocol == "/noise" and d.done
    assert d.rejected == ["/tls/1.0.0"]
    assert d.unconsumed() == b"\x00\x20E"
    with pytest.raises(LocalProtocolError):
        d.receive_data(b"x")


def test_dialer_all_refused_lists_all():
    d = ms.Dialer(["/a", "/b"])
    with pytest.raises(NegotiationError, match="/a, /b"):
        d.receive_data(HEADER + NA_B + NA_B)


def test_dialer_wrong_header():
    d = ms.Dialer(["/a"])
    with pytest.raises(NegotiationError, match="mismatch"):
        d.receive_data(ms.encode_message("/multistream/2.0.0"))


def test_dialer_unrecognized_response():
    d = ms.Dialer(["/a"])
    with pytest.raises(NegotiationError, match="unrecognized"):
        d.receive_data(HEADER + ms.encode_message("/b"))


def test_dialer_validates_input():
    with pytest.raises(LocalProtocolError):
        ms.Dialer([])
    with pytest.raises(LocalProtocolError):
        ms.Dialer(["bad"])
    with pytest.raises(LocalProtocolError):
        ms.Dialer(["/a", "/b"], lazy=True)


def test_dialer_lazy_na_fails():
    d = ms.Dialer(["/a"], lazy=True)
    with pytest.raises(NegotiationError):
        d.receive_data(HEADER + NA_B)


# ---------------------------------------------------------------- Listener


def test_listener_sends_header_eagerly():
    lst = ms.Listener(["/noise"])
    assert lst.data_to_send() == HEADER


def test_listener_na_then_echo_and_tail():
    lst = ms.Listener(["/noise", "/yamux/1.0.0"])
    lst.data_to_send()
    incoming = HEADER + ms.encode_message("/tls/1.0.0")
    assert lst.receive_data(incoming) is False
    assert lst.data_to_send() == NA_B
    assert lst.receive_data(ms.encode_message("/noise") + b"DATA") is True
    assert lst.data_to_send() == ms.encode_message("/noise")
    assert lst.protocol == "/noise"
    assert lst.unconsumed() == b"DATA"
    assert lst.rejected == ["/tls/1.0.0"]


def test_listener_pipelined_proposals_in_one_buffer():
    lst = ms.Listener(lambda p: p == "/b")
    lst.data_to_send()
    buf = HEADER + ms.encode_message("/a") + ms.encode_message("/b") + b"app"
    assert lst.receive_data(buf) is True
    assert lst.data_to_send() == NA_B + ms.encode_message("/b")
    assert lst.unconsumed() == b"app"


def test_listener_ls_with_list_and_predicate():
    lst = ms.Listener(["/a", "/b"])
    lst.data_to_send()
    lst.receive_data(HEADER + ms.encode_message("ls"))
    assert lst.data_to_send() == ms.encode_ls_response(["/a", "/b"])
    pred = ms.Listener(lambda p: True)
    pred.data_to_send()
    pred.receive_data(HEADER + ms.encode_message("ls"))
    assert pred.data_to_send() == NA_B
    explicit = ms.Listener(lambda p: True, ls_protocols=["/x"])
    explicit.data_to_send()
    explicit.receive_data(HEADER + ms.encode_message("ls"))
    assert explicit.data_to_send() == ms.encode_ls_response(["/x"])


def test_listener_rejects_simultaneous_connect_and_na():
    lst = ms.Listener(lambda p: True)
    lst.data_to_send()
    lst.receive_data(HEADER + ms.encode_message("/libp2p/simultaneous-connect") + NA_B)
    assert lst.data_to_send() == NA_B + NA_B
    assert not lst.done


def test_listener_wrong_header():
    lst = ms.Listener(["/a"])
    with pytest.raises(NegotiationError):
        lst.receive_data(ms.encode_message("/a"))


def test_listener_dict_of_handlers():
    lst = ms.Listener({"/a": object()})
    lst.receive_data(HEADER + ms.encode_message("/a"))
    assert lst.protocol == "/a"


def _pump(d, lst, dialer_chunks, listener_chunks):
    """Move bytes between the two machines in the given chunk sizes."""
    for _ in range(100):
        if d.done and lst.done:
            return
        out = d.data_to_send()
        for piece in _chunks(out, dialer_chunks):
            if not lst.done:
                lst.receive_data(piece)
        back = lst.data_to_send()
        for piece in _chunks(back, listener_chunks):
            if not d.done:
                d.receive_data(piece)
    raise AssertionError("no progress")


def _chunks(data, sizes):
    i = 0
    k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        yield data[i:i + n]
        i += n
        k += 1


def test_pair_negotiates():
    d = ms.Dialer(["/x", "/y", "/yamux/1.0.0"])
    lst = ms.Listener(["/yamux/1.0.0", "/mplex/6.7.0"])
    _pump(d, lst, [1], [3])
    assert d.protocol == lst.protocol == "/yamux/1.0.0"


# ---------------------------------------------------------------- hypothesis

proto_ids = st.text(
    alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=40
).map(lambda s: "/" + s).filter(lambda s: len(s.encode()) < 1023)


def _split(data: bytes, cuts) -> list:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in points + [len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


@settings(max_examples=120, deadline=None)
@given(tokens=st.lists(st.one_of(proto_ids, st.sampled_from(["na", "ls"])), max_size=8),
       tail=st.binary(max_size=20), cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_reader_split_invariance(tokens, tail, cuts):
    data = b"".join(ms.encode_message(t) for t in tokens)
    r = ms.MessageReader()
    got = []
    for piece in _split(data, cuts):
        r.feed(piece)
        while True:
            tok = r.next_message()
            if tok is None:
                break
            got.append(tok)
    assert got == tokens
    assert r.buffered() == 0
    r.feed(tail)
    assert r.unconsumed() == tail


@settings(max_examples=120, deadline=None)
@given(protocols=st.lists(proto_ids, min_size=1, max_size=5, unique=True),
       supported=st.lists(proto_ids, max_size=5), tail=st.binary(max_size=30),
       cuts=st.lists(st.integers(0, 10_000), max_size=10))
def test_listener_split_invariance(protocols, supported, tail, cuts):
    """Feeding the dialer's bytes in any chunking gives the same answer and tail."""
    def transcript(pieces):
        lst = ms.Listener(supported)
        sent = [lst.data_to_send()]
        fed = 0
        for piece in pieces:
            fed += len(piece)
            if lst.receive_data(piece):
                sent.append(lst.data_to_send())
                return lst.protocol, b"".join(sent), lst.unconsumed() + data[fed:]
            sent.append(lst.data_to_send())
        return None, b"".join(sent), None

    expected = next((p for p in protocols if p in supported), None)
    data = ms.encode_message(ms.PROTOCOL_ID) + b"".join(ms.encode_message(p) for p in protocols)
    if expected is not None:
        data += tail  # bytes after the accepted proposal belong to the next layer
    whole = transcript([data])
    split = transcript(_split(data, cuts))
    assert split == whole
    assert whole[0] == expected
    if expected is not None:
        end = data.index(ms.encode_message(expected)) + len(ms.encode_message(expected))
        assert whole[2] == data[end:]
        assert whole[1].endswith(ms.encode_message(expected))


@settings(max_examples=120, deadline=None)
@given(protocols=st.lists(proto_ids, min_size=1, max_size=4, unique=True),
       answer=st.integers(0, 4), tail=st.binary(max_size=30),
       cuts=st.lists(st.integers(0, 10_000), max_size=10))
def test_dialer_split_invariance(protocols, answer, tail, cuts):
    nas = min(answer, len(protocols))
    reply = ms.encode_message(ms.PROTOCOL_ID) + ms.encode_message("na") * nas
    if nas < len(protocols):
        reply += ms.encode_message(protocols[nas]) + tail

    def run(pieces):
        d = ms.Dialer(protocols)
        d.data_to_send()
        fed = 0
        try:
            for piece in pieces:
                fed += len(piece)
                if d.receive_data(piece):
                    return ("ok", d.protocol, d.unconsumed() + reply[fed:])
        except NegotiationError as exc:
            return ("err", type(exc))
        return ("incomplete",)

    assert run([reply]) == run(_split(reply, cuts))
    if nas < len(protocols):
        assert run([reply]) == ("ok", protocols[nas], tail)
    else:
        assert run([reply]) == ("err", NegotiationError)


def test_refused_proposal_flood_keeps_memory_bounded():
    """A peer proposing protocol after protocol (never accepted) costs no memory:
    the reader compacts what it parsed and only the first refusals are remembered."""
    lst = ms.Listener(["/echo/1.0.0"])
    lst.receive_data(ms.encode_message(ms.PROTOCOL_ID))
    proposal = ms.encode_message("/x/" + "a" * 1000)
    flood = memoryview(proposal * 8000)  # ~8 MiB of refused proposals
    step = 4500  # never lines up with message boundaries
    for off in range(0, len(flood), step):
        assert lst.receive_data(flood[off:off + step]) is False
        lst.data_to_send()
        assert lst._reader.buffered() < len(proposal)
        assert len(lst._reader._buf) < 16 * 1024
    assert lst.data_to_send() == b""
    assert len(lst.rejected) == ms.MAX_REMEMBERED_REJECTIONS
    assert lst.rejected_count == 8000
    # still a working negotiator afterwards
    lst.receive_data(ms.encode_message("/echo/1.0.0"))
    assert lst.done and lst.protocol == "/echo/1.0.0"

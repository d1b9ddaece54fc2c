"""The crypto key classes implement the core key contracts, and core works with any key that does."""

from __future__ import annotations

import pytest

from geventp2p.core import crypto as contract
from geventp2p.core.peer import PeerId
from geventp2p.core.record import PeerRecord, consume_peer_record, seal_peer_record
from geventp2p.crypto import keys
from geventp2p.exceptions import InvalidSignatureError


@pytest.mark.parametrize("kt", ["ed25519", "secp256k1", "ecdsa"])
def test_key_classes_satisfy_the_contracts(kt):
    priv = keys.generate_key(kt)
    pub = priv.public_key()
    assert isinstance(priv, contract.PrivateKey) and isinstance(pub, contract.PublicKey)
    assert not isinstance(pub, contract.PrivateKey)
    assert keys.KeyType is contract.KeyType and pub.key_type is priv.key_type


class ForeignPublicKey:
    """A key that is not from geventp2p.crypto: it wraps one, to show core only needs the contract."""

    def __init__(self, inner: contract.PublicKey) -> None:
        self.inner = inner

    @property
    def key_type(self) -> contract.KeyType:
        return self.inner.key_type

    def raw(self) -> bytes:
        return self.inner.raw()

    def marshal(self) -> bytes:
        return self.inner.marshal()

    def verify(self, data: bytes, sig: bytes) -> bool:
        return self.inner.verify(data, sig)


class ForeignPrivateKey:
    def __init__(self, inner: contract.PrivateKey) -> None:
        self.inner = inner

    @property
    def key_type(self) -> contract.KeyType:
        return self.inner.key_type

    def sign(self, data: bytes) -> bytes:
        return self.inner.sign(data)

    def public_key(self) -> contract.PublicKey:
        return ForeignPublicKey(self.inner.public_key())

    def marshal(self) -> bytes:
        return self.inner.marshal()


def test_core_accepts_any_key_satisfying_the_contract():
    inner = keys.generate_key()
    priv = ForeignPrivateKey(inner)
    pid = PeerId.from_public_key(priv)
    assert pid == PeerId.from_public_key(inner.public_key()) == PeerId.from_public_key(priv.public_key())
    assert pid.matches_public_key(priv.public_key())
    env = seal_peer_record(priv, PeerRecord(pid, 3, ["/ip4/1.2.3.4/tcp/5"]))
    decoded = []

    def decode(data: bytes) -> contract.PublicKey:
        decoded.append(data)
        return ForeignPublicKey(keys.unmarshal_public_key(data))

    got, rec = consume_peer_record(env.marshal(), pid, decode_key=decode)
    assert decoded == [inner.public_key().marshal()] and isinstance(got.public_key, ForeignPublicKey)
    assert rec.seq == 3


def test_decode_key_result_is_what_verifies():
    key = keys.generate_key()
    env = seal_peer_record(key, PeerRecord(PeerId.from_public_key(key), 1))
    other = keys.generate_key().public_key()
    with pytest.raises(InvalidSignatureError):  # a decoder returning the wrong key fails verification
        consume_peer_record(env.marshal(), decode_key=lambda data: other)

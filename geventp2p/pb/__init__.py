"""Generated protobuf modules (committed; regenerate with ``make proto``).

Modules: ``crypto_pb2`` (KeyType, PublicKey, PrivateKey), ``noise_pb2``
(NoiseHandshakePayload, NoiseExtensions), ``plaintext_pb2`` (Exchange),
``identify_pb2`` (Identify), ``envelope_pb2`` (Envelope), ``peer_record_pb2``
(PeerRecord).

No .proto file imports another: protoc would emit top-level imports
(``import crypto_pb2``) that do not work inside a package.  Where a schema
embeds the key message (plaintext ``Exchange.pubkey``, ``Envelope.public_key``)
the file declares its own wire-identical ``PublicKey``; convert through bytes,
e.g. ``ex.pubkey.ParseFromString(key.marshal())``.

The generated code checks the protobuf runtime version at import time
(gencode 7.35.1 needs protobuf >= 7.35.1).
"""

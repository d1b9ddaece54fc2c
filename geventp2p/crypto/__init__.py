"""geventp2p.crypto: identity keys and the primitives behind Noise.

* :mod:`geventp2p.crypto.keys`: ``KeyType``, ``PrivateKey``/``PublicKey`` (Ed25519,
  secp256k1, ECDSA, RSA), ``generate_key``, ``unmarshal_private_key``,
  ``unmarshal_public_key``, ``extract_public_key`` (from an inline peer ID) with
  go-libp2p's byte encodings.  The classes implement the key contracts in
  :mod:`geventp2p.core.crypto`, which is all ``core`` knows about keys.
* :mod:`geventp2p.crypto.backend`: ``get_backend()``: X25519, ChaCha20-Poly1305,
  SHA-256/HMAC and the signature primitives, from ``cryptography`` (preferred) or
  pycryptodome (``GEVENTP2P_CRYPTO=pycryptodome`` forces it).
"""

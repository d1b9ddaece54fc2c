"""Protobuf classes of the beacon example, built at run time (protoc is not needed).

They are what protoc would generate from this ``beacon.proto``::

    syntax = "proto3";
    package geventp2p.examples.beacon;

    message Block       { uint64 slot = 1; uint64 proposer_index = 2; bytes parent_root = 3; bytes body = 4; }
    message Attestation { uint64 slot = 1; uint64 validator_index = 2; bytes block_root = 3; bytes signature = 4; }
    message Status      { uint64 head_slot = 1; bytes head_root = 2; uint64 finalized_epoch = 3; }
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_U64 = descriptor_pb2.FieldDescriptorProto.TYPE_UINT64
_BYTES = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
_OPTIONAL = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL

_MESSAGES = {
    "Block": [("slot", _U64), ("proposer_index", _U64), ("parent_root", _BYTES), ("body", _BYTES)],
    "Attestation": [("slot", _U64), ("validator_index", _U64), ("block_root", _BYTES), ("signature", _BYTES)],
    "Status": [("head_slot", _U64), ("head_root", _BYTES), ("finalized_epoch", _U64)],
}


def _build() -> dict[str, Any]:
    fdp = descriptor_pb2.FileDescriptorProto(name="geventp2p/examples/beacon.proto",
                                             package="geventp2p.examples.beacon", syntax="proto3")
    for name, fields in _MESSAGES.items():
        mt = fdp.message_type.add(name=name)
        for number, (fname, ftype) in enumerate(fields, 1):
            mt.field.add(name=fname, number=number, type=ftype, label=_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    fd = pool.FindFileByName(fdp.name)
    return {name: message_factory.GetMessageClass(fd.message_types_by_name[name]) for name in _MESSAGES}


_classes = _build()
Block: Any = _classes["Block"]
Attestation: Any = _classes["Attestation"]
Status: Any = _classes["Status"]

"""Protobuf message classes for the p2p tests, built at run time (no protoc needed)."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def build_messages(package: str, spec: dict[str, list[tuple[str, str]]]) -> dict[str, Any]:
    """``{"Block": [("slot", "uint64"), ("body", "bytes")]}`` -> ``{"Block": <class>}``."""
    types = {"uint64": descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
             "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
             "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING}
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package.replace('.', '/')}.proto", package=package,
                                             syntax="proto3")
    for name, fields in spec.items():
        mt = fdp.message_type.add(name=name)
        for i, (fname, ftype) in enumerate(fields, 1):
            mt.field.add(name=fname, number=i, type=types[ftype],
                         label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    fd = pool.Add(fdp)
    fd = pool.FindFileByName(fdp.name)
    return {name: message_factory.GetMessageClass(fd.message_types_by_name[name]) for name in spec}


_M = build_messages("geventp2p.tests.p2p", {
    "Ping": [("n", "uint64"), ("body", "bytes")],
    "Note": [("text", "string")],
    "Other": [("x", "uint64")],
})
Ping: Any = _M["Ping"]
Note: Any = _M["Note"]
Other: Any = _M["Other"]

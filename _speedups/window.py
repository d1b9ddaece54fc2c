"""Per-stream flow-control accounting for yamux (u32 arithmetic).

API CONTRACT (implementation pending): see class StreamWindow docstring.
"""

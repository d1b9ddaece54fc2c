# C declarations for the compiled build of _py_frames.py (compiled as _c_frames).
# Public constants stay Python globals; the underscore copies are C constants.
cimport cython


cdef object _YAMUX_HEADER
cdef object _YAMUX_FIELDS
cdef int _VERSION
cdef int _TYPE_DATA
cdef int _TYPE_GO_AWAY
cdef int _RESET_INITIATOR
cdef Py_ssize_t _HEADER_SIZE
cdef Py_ssize_t _MAX_VARINT_LEN
cdef Py_ssize_t _COMPACT_THRESHOLD
cdef Py_ssize_t _SHRINK_ABOVE

cpdef bytes pack_yamux_header(object ftype, object flags, object stream_id, object length)
cpdef tuple unpack_yamux_header(object buf, object offset=*)


@cython.final
cdef class YamuxFrameReader:
    cdef bytearray _buf
    cdef Py_ssize_t _pos
    cdef Py_ssize_t _end
    cdef object _error
    cdef readonly Py_ssize_t max_data_length
    cdef readonly long long partial_stream
    cdef readonly Py_ssize_t partial_flags
    cdef readonly Py_ssize_t partial_length

    @cython.locals(buf=bytearray, end=Py_ssize_t, pos=Py_ssize_t)
    cpdef list feed(self, object data)
    @cython.locals(buf=bytearray, pos=Py_ssize_t, end=Py_ssize_t, cap=Py_ssize_t, mv=memoryview, view=memoryview)
    cpdef memoryview get_buffer(self, object size)
    cpdef list commit(self, object n)
    cpdef object detach_buffer(self)
    cpdef bint attach_buffer(self, bytearray buf) except -1
    @cython.locals(
        buf=bytearray, frames=list, payload=bytes, p="const unsigned char *",
        n=Py_ssize_t, pos=Py_ssize_t, limit=Py_ssize_t, start=Py_ssize_t, end=Py_ssize_t,
        ftype=Py_ssize_t, flags=Py_ssize_t, stream_id=Py_ssize_t, length=Py_ssize_t,
    )
    cdef list _parse(self)


@cython.final
cdef class YamuxWriteBuffer:
    cdef list _out
    cdef readonly Py_ssize_t nbytes
    cdef object _tail_sid
    cdef Py_ssize_t _tail_len
    cdef bytearray _tail_hdr
    cdef readonly Py_ssize_t max_body

    cpdef object frame(self, object ftype, object flags, object stream_id, object length)
    @cython.locals(
        out=list, hdr=bytearray, immutable=bint, size=Py_ssize_t, count=Py_ssize_t, off=Py_ssize_t,
        end=Py_ssize_t, k=Py_ssize_t, take=Py_ssize_t, body_max=Py_ssize_t, length=Py_ssize_t,
    )
    cpdef object data(self, object stream_id, object data, object n)
    cpdef list drain(self)


@cython.final
cdef class YamuxStreamSender:
    cdef readonly object window
    cdef readonly YamuxWriteBuffer buffer
    cdef readonly object stream_id
    cdef public bint open

    @cython.locals(buf=YamuxWriteBuffer, room=Py_ssize_t, size=Py_ssize_t, n=Py_ssize_t)
    cpdef Py_ssize_t send(self, object data, Py_ssize_t max_buffered) except -1
    cpdef bint blocked_on_buffer(self, Py_ssize_t max_buffered)


cdef object _encode_uvarint(unsigned long long value, bytearray out)

@cython.locals(out=bytearray)
cpdef bytes pack_mplex_header(object stream_id, object flag, object length)


@cython.final
cdef class MplexFrameReader:
    cdef bytearray _buf
    cdef Py_ssize_t _pos
    cdef object _error
    cdef unsigned long long _value
    cdef readonly Py_ssize_t max_message_size

    @cython.locals(start=Py_ssize_t, value="unsigned long long", b="unsigned long long", shift=int)
    cdef Py_ssize_t _uvarint(self, const unsigned char *p, Py_ssize_t n, Py_ssize_t i) except -3

    @cython.locals(
        buf=bytearray, frames=list, p="const unsigned char *",
        n=Py_ssize_t, pos=Py_ssize_t, i=Py_ssize_t, limit=Py_ssize_t, end=Py_ssize_t,
        header="unsigned long long", length="long long", flag=int,
    )
    cpdef list feed(self, object data)

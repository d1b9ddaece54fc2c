# C declarations for the compiled build of _py_varint.py (compiled as _c_varint).
# Public constants stay Python globals; the underscore copies are C constants.
cimport cython


cdef Py_ssize_t _MAX_VARINT_LEN
cdef unsigned long long _MAX_VALUE
cdef tuple _BYTE

@cython.locals(v="unsigned long long", out=bytearray)
cpdef bytes encode_uvarint(object value)

# ``b`` is 64-bit so that ``(b & 0x7F) << shift`` is computed in 64 bits.
@cython.locals(n=Py_ssize_t, i=Py_ssize_t, b="unsigned long long", shift=int, value="unsigned long long")
cpdef object decode_uvarint(object buf, Py_ssize_t offset=*)

cpdef bytes encode_lp(object payload)

@cython.locals(length=object, start=Py_ssize_t, end=Py_ssize_t)
cpdef object decode_lp(object buf, Py_ssize_t offset=*, object max_size=*)

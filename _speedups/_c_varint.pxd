# C declarations for the compiled build of varint.py (compiled as _c_varint).
cimport cython

cdef object LocalProtocolError
cdef object MessageTooLargeError
cdef object VarintError

cdef int MAX_VARINT_LEN
cdef unsigned long long MAX_VALUE
cdef Py_ssize_t MESSAGE_SIZE_MAX

cpdef bytes encode_uvarint(object value)

@cython.locals(n=Py_ssize_t, i=Py_ssize_t, b=int, shift=int, value=unsigned long long)
cpdef object decode_uvarint(object buf, Py_ssize_t offset=*)

cpdef bytes encode_lp(object payload)

@cython.locals(length=unsigned long long, start=Py_ssize_t, end=Py_ssize_t)
cpdef object decode_lp(object buf, Py_ssize_t offset=*, Py_ssize_t max_size=*)

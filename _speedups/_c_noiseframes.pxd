# C declarations for the compiled build of _py_noiseframes.py (compiled as _c_noiseframes).
cimport cython


cdef object _NONCE

@cython.locals(
    stp=Py_ssize_t, seg=Py_ssize_t, total=Py_ssize_t, frames=Py_ssize_t, need=Py_ssize_t,
    pos=Py_ssize_t, size=Py_ssize_t, off=Py_ssize_t, take=Py_ssize_t,
    nonce=bytearray, scratch=bytearray, ov=memoryview, obj=memoryview,
    mv="const unsigned char[:]", sv="unsigned char[:]",
)
cpdef tuple seal_frames(object buffers, object step, object seal, object n, object limit, bytearray out)

@cython.locals(ln=Py_ssize_t)
cdef Py_ssize_t _seal_one(object pt, Py_ssize_t seg, object seal, bytearray nonce,
                          object n, memoryview ov, Py_ssize_t pos) except -1



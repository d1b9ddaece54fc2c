# C declarations for the compiled build of _py_window.py (compiled as _c_window).
# Arguments are Python objects, range-checked before they meet the C fields, so
# the compiled build never raises OverflowError where the pure one would not.
cimport cython


cdef long long _U32_MAX


@cython.final
cdef class StreamWindow:
    cdef readonly long long send_window
    cdef readonly long long recv_window
    cdef readonly long long recv_buffered
    cdef readonly long long target
    cdef readonly long long max_window
    cdef double _last_update
    cdef bint _has_update

    @cython.locals(k="long long")
    cpdef object consume_send(self, object n)
    @cython.locals(d="long long")
    cpdef object add_send_credit(self, object delta)
    @cython.locals(k="long long")
    cpdef object on_data(self, object n)
    @cython.locals(k="long long")
    cpdef object on_read(self, object n)
    @cython.locals(freed="long long", new="long long")
    cpdef object take_update(self, double now, double rtt, bint force=*, bint can_grow=*)

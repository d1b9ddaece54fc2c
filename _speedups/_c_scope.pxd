# C declarations for the compiled build of _py_scope.py (compiled as _c_scope).
# Counters are C integers; scopes reach each other's counters and checks through C
# fields and C method calls.  Limits stay Python objects (UNLIMITED is sys.maxsize, and
# the priority threshold multiplies it), so no arithmetic on them can overflow.
cimport cython

cdef object _span_ids
cdef long long _ALWAYS

cpdef bint is_inbound(object direction) except -1


cdef class Scope:
    cdef public object name
    cdef public object limit
    cdef public list edges
    cdef public object peer
    cdef public object _hook
    cdef public long long streams_in
    cdef public long long streams_out
    cdef public long long conns_in
    cdef public long long conns_out
    cdef public long long fds
    cdef public long long memory
    cdef public bint closed
    cdef public long long refs

    cpdef object _refuse(self, str resource, object used, object requested, object limit, object peer=*)
    @cython.locals(limit=object, threshold=object)
    cpdef object _check_memory(self, long long size, long long priority, object peer=*)
    @cython.locals(total="long long")
    cpdef object _check_streams(self, bint inbound, long long n=*, object peer=*)
    @cython.locals(total="long long")
    cpdef object _check_conns(self, bint inbound, bint use_fd, long long n=*, object peer=*)
    cpdef object _check_usage(self, Scope src, object peer=*)
    cpdef object _add_usage(self, Scope src, long long sign)
    cpdef bint _is_empty(self)
    cpdef object _live(self)
    @cython.locals(e=Scope)
    cpdef object reserve_memory(self, long long size, long long priority=*)
    @cython.locals(e=Scope)
    cpdef object release_memory(self, long long size)
    @cython.locals(e=Scope, inbound=bint)
    cpdef object add_stream(self, object direction)
    @cython.locals(e=Scope)
    cpdef object _count_stream(self, bint inbound, long long n)
    @cython.locals(e=Scope, inbound=bint)
    cpdef object add_conn(self, object direction, bint use_fd)
    @cython.locals(s=Scope)
    cpdef object _count_conn(self, bint inbound, bint use_fd, long long n)
    @cython.locals(e=Scope)
    cpdef object done(self)


cdef class ConnScope(Scope):
    cdef public object _mgr
    cdef public Scope _peer_scope
    cdef public bint inbound
    cdef public bint use_fd
    cdef public object endpoint
    cdef public Scope _transient
    cdef public object ip

    cpdef object done(self)


cdef class StreamScope(Scope):
    cdef public object _mgr
    cdef public Scope _peer_scope
    cdef public Scope _transient
    cdef public Scope _proto
    cdef public Scope _proto_peer
    cdef public Scope _svc
    cdef public Scope _svc_peer
    cdef public object protocol
    cdef public object service
    cdef public bint inbound

    @cython.locals(s=Scope, inbound=bint, mem="long long")
    cpdef tuple _attach(self, tuple pair)
    @cython.locals(e=Scope, s=Scope, si="long long", so="long long", mem="long long")
    cpdef object done(self)

# C declarations for the compiled build of _py_wsmask.py (compiled as _c_wsmask).
cimport cython


@cython.locals(kv="const unsigned char[:]", sv="unsigned char[:]", n=Py_ssize_t, i=Py_ssize_t, j=Py_ssize_t,
               k0="unsigned char", k1="unsigned char", k2="unsigned char", k3="unsigned char")
cpdef mask_into(object buf, Py_ssize_t start, object key)

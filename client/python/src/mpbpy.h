/* mpbpy.h - what the C files of the extension module mpbroker._mpb share.
 *
 * _mpb.c makes the module: the Client type (one libmpb session), the msgpack codec for Python
 * values (pickle inside ext type MPBPY_EXT_PICKLE for what msgpack cannot carry), the Error
 * exception and the op and error code constants. Other C files of src/ add to the module through
 * an init function that _mpb.c calls when CMake (or setup.py) found the file. */
#ifndef MPBPY_H
#define MPBPY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <mpb/mpb.h>

/* The msgpack ext type that holds a pickle (PROTOCOL.md, "Values from Python"). */
#define MPBPY_EXT_PICKLE 80

/* The Client object: a libmpb client and the pid that connected it. */
typedef struct {
    PyObject_HEAD mpb_client_t *c;
    long pid;
    int use_pickle; /* 0: serializer "msgpack", pickle refused both ways */
    int op_timeout_ms;
} mpbpy_client_t;

/* The Client type, set up by the module's init. */
extern PyTypeObject *mpbpy_client_type;

/* Encodes obj as one msgpack value into a new bytes object (pickle for what msgpack cannot
 * carry, unless use_pickle is 0: then TypeError). NULL with an exception set on failure. */
PyObject *mpbpy_packb(PyObject *obj, int use_pickle);
/* Decodes one msgpack value of len bytes. NULL with an exception set (ValueError for bytes
 * that are not one well-formed value). */
PyObject *mpbpy_unpackb(const void *buf, size_t len, int use_pickle);
/* Raises _mpb.Error(code, message) for a negative MPB_E* code; returns NULL. */
PyObject *mpbpy_raise(int code, const char *msg);
/* The libmpb client of a Client object, after checking it is open and belongs to this
 * process; NULL with an exception set otherwise. */
mpb_client_t *mpbpy_client_get(PyObject *client);

/* Pool support (src/_mpb_pool.c): adds its types and functions to the module. 0 or -1 with an
 * exception set. Called only when the file is built in (MPBPY_HAVE_POOL). */
int mpb_py_pool_init(PyObject *module);

#endif

/* mpbpy.h - what the C files of the extension module mpbroker._mpb share.
 *
 * _mpb.c makes the module (the Error exception, the op and error code constants) and calls the
 * init of each other file: _mpb_codec.c (the msgpack codec for Python values, pickle inside ext
 * type MPBPY_EXT_PICKLE for what msgpack cannot carry), _mpb_client.c (the Client type, one
 * libmpb session), and _mpb_pool.c with _mpb_worker.c (Pool, Imap, Worker) when CMake (or
 * setup.py) found _mpb_pool.c. */
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
/* A growable buffer of msgpack that the pool's batch writer puts together from encoded values
 * (PyMem_Free() p when done); the headers come from libmpb's builder. Each append returns 0, or
 * -1 with an exception set (MemoryError; ValueError for a length past 32 bits). */
typedef struct {
    char *p;
    size_t len, cap;
} mpbpy_buf_t;
int mpbpy_buf_put(mpbpy_buf_t *b, const void *p, size_t n); /* n raw bytes */
int mpbpy_buf_array(mpbpy_buf_t *b, size_t n);              /* the header of an array of n */
int mpbpy_buf_bin(mpbpy_buf_t *b, size_t n);                /* the header of n bytes of bin */
/* _mpb_codec.c: imports pickle and adds the Ext type. 0 or -1 with an exception set. */
int mpbpy_codec_init(PyObject *module);

/* Raises _mpb.Error(code, message) for a negative MPB_E* code; returns NULL. */
PyObject *mpbpy_raise(int code, const char *msg);
/* The libmpb client of a Client object, after checking it is open and belongs to this
 * process; NULL with an exception set otherwise. */
mpb_client_t *mpbpy_client_get(PyObject *client);

/* _mpb_client.c: adds the Client type. 0 or -1 with an exception set. */
int mpbpy_client_init(PyObject *module);
/* For __init__ of a Pool or Worker on client: its libmpb client, unless the object was
 * initialised already (already non-NULL; what names it); NULL with an exception set. */
mpb_client_t *mpbpy_init_client(PyObject *client, const void *already, const char *what);
/* For __init__: 0 when rc (of making the libmpb object) is 0, else -1 with the error raised. */
int mpbpy_init_rc(mpb_client_t *c, int rc);

/* Pool support (src/_mpb_pool.c): adds its types and functions to the module. 0 or -1 with an
 * exception set. Called only when the file is built in (MPBPY_HAVE_POOL). */
int mpb_py_pool_init(PyObject *module);
/* _mpb_worker.c: adds the Worker type; called by mpb_py_pool_init(). */
int mpbpy_worker_init(PyObject *module);

#endif

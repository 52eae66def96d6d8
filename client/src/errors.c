/* errors.c - what libmpb says about an error: the message of a client's last failure, and the
 * static name and description of every MPB_E* code (MPB_ERRNO_MAP, the one error table). */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

int mpb__fail(mpb_client_t *c, int code, const char *fmt, ...) {
    if (!c) return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return code;
}

const char *mpb_errmsg(const mpb_client_t *c) {
    if (!c) return "out of memory";
    return c->err[0] ? c->err : "no error";
}

/* The broker's error replies use the same text (proto's table), so libmpb only forwards. */
const char *mpb_strerror(int err) {
    return mpb__strerror(err);
}

const char *mpb_err_name(int err) {
    if (err == 0) return "OK";
    const char *n = err < 0 ? mpb__err_name(-err) : NULL;
    return n ? n : "EUNKNOWN";
}

unsigned mpb_version(void) {
    return MPB_VERSION_HEX;
}

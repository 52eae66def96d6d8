/* pack.c - msgpack helpers for the common scalars, and reading the authkey the way the tools
 * do (a file, $MPB_AUTHKEY_FILE, or $MPB_AUTHKEY). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

size_t mpb_pack_i64(void *buf, int64_t v) {
    return mpb__enc_int(buf, v);
}

size_t mpb_pack_double(void *buf, double v) {
    return mpb__enc_double(buf, v);
}

size_t mpb_pack_bool(void *buf, int v) {
    *(uint8_t *)buf = v ? 0xc3 : 0xc2;
    return 1;
}

size_t mpb_pack_nil(void *buf) {
    *(uint8_t *)buf = 0xc0;
    return 1;
}

static size_t pack_with(void (*w)(mpb__buf_t *, const void *, size_t), const void *p, size_t n,
                        void **out) {
    mpb__buf_t b = {0};
    w(&b, p, n);
    if (b.oom) {
        mpb__buf_free(&b);
        *out = NULL;
        return 0;
    }
    *out = b.p;
    return b.len;
}

static void w_str(mpb__buf_t *b, const void *p, size_t n) {
    mpb__w_str(b, p, n);
}

size_t mpb_pack_str(const char *s, size_t len, void **out) {
    return pack_with(w_str, s, len, out);
}

size_t mpb_pack_bin(const void *p, size_t len, void **out) {
    return pack_with(mpb__w_bin, p, len, out);
}

/* Runs one reader over buf, which must hold exactly one value. */
#define UNPACK(call)                                                                               \
    do {                                                                                           \
        if (!buf || mpb__mp_check1(buf, len, MPB__MAX_DEPTH) != (long)len) return MPB_EPROTO;      \
        mpb__rd_t r = {buf, (const uint8_t *)buf + len};                                           \
        return call;                                                                               \
    } while (0)

int mpb_unpack_i64(const void *buf, size_t len, int64_t *v) {
    UNPACK(mpb__rd_int(&r, v));
}

int mpb_unpack_double(const void *buf, size_t len, double *v) {
    UNPACK(mpb__rd_double(&r, v));
}

static int rd_boolint(mpb__rd_t *r, int *v) {
    bool b;
    int rc = mpb__rd_bool(r, &b);
    if (!rc) *v = b;
    return rc;
}

int mpb_unpack_bool(const void *buf, size_t len, int *v) {
    UNPACK(rd_boolint(&r, v));
}

static int rd_str2(mpb__rd_t *r, const char **s, size_t *n) {
    uint32_t l;
    int rc = mpb__rd_str(r, s, &l);
    if (!rc) *n = l;
    return rc;
}

int mpb_unpack_str(const void *buf, size_t len, const char **s, size_t *slen) {
    UNPACK(rd_str2(&r, s, slen));
}

static int rd_bin2(mpb__rd_t *r, const void **p, size_t *n) {
    uint32_t l;
    const uint8_t *q;
    int rc = mpb__rd_bin(r, &q, &l);
    if (!rc) {
        *p = q;
        *n = l;
    }
    return rc;
}

int mpb_unpack_bin(const void *buf, size_t len, const void **p, size_t *plen) {
    UNPACK(rd_bin2(&r, p, plen));
}

int mpb_authkey_load(const char *path, void **key, size_t *len, char *errbuf, size_t errlen) {
    char dummy[8];
    if (!errbuf) {
        errbuf = dummy;
        errlen = sizeof dummy;
    }
    *key = NULL;
    *len = 0;
    if (!path || !*path) path = getenv("MPB_AUTHKEY_FILE");
    if (path && *path) {
        /* the warnings (if any) in errbuf: the callers say them in their own voice */
        uint8_t *k = NULL;
        char err[512];
        int rc = mpb__key_file_read("authkey file", path, &k, len, err, sizeof err, errbuf, errlen);
        if (rc)
            snprintf(errbuf, errlen, "%s", err);
        else
            *key = k;
        return rc;
    }
    const char *env = getenv("MPB_AUTHKEY");
    if (env && *env) {
        size_t n = strlen(env);
        if (!(*key = malloc(n))) return MPB_ENOMEM;
        memcpy(*key, env, n);
        *len = n;
        errbuf[0] = 0;
        mpb__key_check_len(n, errbuf, errlen);
        return 0;
    }
    snprintf(errbuf, errlen,
             "no authkey: give a file (-k/--authkey-file or MPB_AUTHKEY_FILE) or set MPB_AUTHKEY");
    return MPB_EINVAL;
}

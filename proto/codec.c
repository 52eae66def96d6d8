/* codec.c - msgpack writing into growable buffers and reading from validated bytes, without
 * allocation per value; canonical re-encoding for keys; Python-like ordering for list.sort. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpbproto.h"

/* ---- buffer ---- */

bool (*mpb__buf_on_oom)(void);

int mpb__buf_reserve(mpb__buf_t *b, size_t extra) {
    if (b->cap - b->len >= extra) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) {
            b->oom = true; /* as for a failed realloc: the write is lost */
            return MPB_ENOMEM;
        }
        cap *= 2;
    }
    uint8_t *p = realloc(b->p, cap);
    /* Short of memory, the doubling may be what fails: just the room asked for, then once
     * more after the program gave back what it keeps in reserve. */
    if (!p) p = realloc(b->p, cap = b->len + extra);
    if (!p && mpb__buf_on_oom && mpb__buf_on_oom()) p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return MPB_ENOMEM;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void mpb__buf_free(mpb__buf_t *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

void mpb__w_raw(mpb__buf_t *b, const void *p, size_t n) {
    if (mpb__buf_reserve(b, n)) return;
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void put_be(uint8_t *o, uint64_t v, int n) {
    for (int i = 0; i < n; i++)
        o[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static void w_hdr(mpb__buf_t *b, uint8_t tag, uint64_t v, int n) {
    uint8_t t[9];
    t[0] = tag;
    put_be(t + 1, v, n);
    mpb__w_raw(b, t, (size_t)n + 1);
}

size_t mpb__enc_uint(uint8_t *o, uint64_t v) {
    if (v <= 0x7f) {
        o[0] = (uint8_t)v;
        return 1;
    }
    if (v <= 0xff) {
        o[0] = 0xcc;
        o[1] = (uint8_t)v;
        return 2;
    }
    if (v <= 0xffff) {
        o[0] = 0xcd;
        put_be(o + 1, v, 2);
        return 3;
    }
    if (v <= 0xffffffffu) {
        o[0] = 0xce;
        put_be(o + 1, v, 4);
        return 5;
    }
    o[0] = 0xcf;
    put_be(o + 1, v, 8);
    return 9;
}

size_t mpb__enc_int(uint8_t *o, int64_t v) {
    if (v >= 0) return mpb__enc_uint(o, (uint64_t)v);
    if (v >= -32) {
        o[0] = (uint8_t)(int8_t)v;
        return 1;
    }
    if (v >= INT8_MIN) {
        o[0] = 0xd0;
        o[1] = (uint8_t)(int8_t)v;
        return 2;
    }
    if (v >= INT16_MIN) {
        o[0] = 0xd1;
        put_be(o + 1, (uint64_t)(uint16_t)(int16_t)v, 2);
        return 3;
    }
    if (v >= INT32_MIN) {
        o[0] = 0xd2;
        put_be(o + 1, (uint64_t)(uint32_t)(int32_t)v, 4);
        return 5;
    }
    o[0] = 0xd3;
    put_be(o + 1, (uint64_t)v, 8);
    return 9;
}

void mpb__w_nil(mpb__buf_t *b) {
    mpb__w_raw(b, "\xc0", 1);
}
void mpb__w_bool(mpb__buf_t *b, bool v) {
    mpb__w_raw(b, v ? "\xc3" : "\xc2", 1);
}
void mpb__w_int(mpb__buf_t *b, int64_t v) {
    uint8_t t[9];
    mpb__w_raw(b, t, mpb__enc_int(t, v));
}
void mpb__w_uint(mpb__buf_t *b, uint64_t v) {
    uint8_t t[9];
    mpb__w_raw(b, t, mpb__enc_uint(t, v));
}
/* The one float64 writer: libmpb's mpb_pack_double, the CLI's JSON reals and the broker's
 * value.add all come here, so a double has one encoding on the wire. */
size_t mpb__enc_double(uint8_t *o, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    o[0] = 0xcb;
    put_be(o + 1, u, 8);
    return 9;
}

void mpb__w_double(mpb__buf_t *b, double v) {
    uint8_t t[9];
    mpb__w_raw(b, t, mpb__enc_double(t, v));
}

/* msgpack cannot say a length above 2^32 - 1, and a cut header would frame what follows it as
 * other values: refuse the write and mark the buffer incomplete, as for memory. */
static bool w_toolong(mpb__buf_t *b, size_t n) {
    if (n <= UINT32_MAX) return false;
    b->oom = true;
    return true;
}

static void w_strhdr(mpb__buf_t *b, size_t n) {
    if (n <= 31) {
        uint8_t t = (uint8_t)(0xa0 | n);
        mpb__w_raw(b, &t, 1);
    } else if (n <= 0xff)
        w_hdr(b, 0xd9, n, 1);
    else if (n <= 0xffff)
        w_hdr(b, 0xda, n, 2);
    else
        w_hdr(b, 0xdb, n, 4);
}
void mpb__w_str(mpb__buf_t *b, const char *s, size_t n) {
    if (w_toolong(b, n)) return;
    w_strhdr(b, n);
    mpb__w_raw(b, s, n);
}
void mpb__w_cstr(mpb__buf_t *b, const char *s) {
    mpb__w_str(b, s, strlen(s));
}
static void w_binhdr(mpb__buf_t *b, size_t n) {
    if (n <= 0xff)
        w_hdr(b, 0xc4, n, 1);
    else if (n <= 0xffff)
        w_hdr(b, 0xc5, n, 2);
    else
        w_hdr(b, 0xc6, n, 4);
}
void mpb__w_bin(mpb__buf_t *b, const void *p, size_t n) {
    if (w_toolong(b, n)) return;
    w_binhdr(b, n);
    mpb__w_raw(b, p, n);
}
void mpb__w_array(mpb__buf_t *b, uint32_t n) {
    if (n <= 15) {
        uint8_t t = (uint8_t)(0x90 | n);
        mpb__w_raw(b, &t, 1);
    } else if (n <= 0xffff)
        w_hdr(b, 0xdc, n, 2);
    else
        w_hdr(b, 0xdd, n, 4);
}
void mpb__w_map(mpb__buf_t *b, uint32_t n) {
    if (n <= 15) {
        uint8_t t = (uint8_t)(0x80 | n);
        mpb__w_raw(b, &t, 1);
    } else if (n <= 0xffff)
        w_hdr(b, 0xde, n, 2);
    else
        w_hdr(b, 0xdf, n, 4);
}

/* ---- reader ---- */

static uint64_t get_be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

bool mpb__rd_more(const mpb__rd_t *r) {
    return r->p < r->end;
}

int mpb__rd_type(const mpb__rd_t *r) {
    if (r->p >= r->end) return MPB__MT_BAD;
    uint8_t b = *r->p;
    if (b <= 0x7f || b >= 0xe0) return MPB__MT_INT;
    if (b <= 0x8f) return MPB__MT_MAP;
    if (b <= 0x9f) return MPB__MT_ARRAY;
    if (b <= 0xbf) return MPB__MT_STR;
    switch (b) {
    case 0xc0: return MPB__MT_NIL;
    case 0xc2:
    case 0xc3: return MPB__MT_BOOL;
    case 0xc4:
    case 0xc5:
    case 0xc6: return MPB__MT_BIN;
    case 0xc7:
    case 0xc8:
    case 0xc9:
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8: return MPB__MT_EXT;
    case 0xca:
    case 0xcb: return MPB__MT_FLOAT;
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: return MPB__MT_INT;
    case 0xd9:
    case 0xda:
    case 0xdb: return MPB__MT_STR;
    case 0xdc:
    case 0xdd: return MPB__MT_ARRAY;
    case 0xde:
    case 0xdf: return MPB__MT_MAP;
    default: return MPB__MT_BAD;
    }
}

static bool has(const mpb__rd_t *r, size_t n) {
    return (size_t)(r->end - r->p) >= n;
}

int mpb__rd_nil(mpb__rd_t *r) {
    if (!has(r, 1)) return MPB_EPROTO;
    if (*r->p != 0xc0) return MPB_ETYPE;
    r->p++;
    return 0;
}

int mpb__rd_bool(mpb__rd_t *r, bool *v) {
    if (!has(r, 1)) return MPB_EPROTO;
    if (*r->p != 0xc2 && *r->p != 0xc3) return MPB_ETYPE;
    *v = *r->p++ == 0xc3;
    return 0;
}

/* Reads any integer as a sign flag and magnitude bits. */
static int rd_anyint(mpb__rd_t *r, bool *neg, uint64_t *u) {
    if (!has(r, 1)) return MPB_EPROTO;
    uint8_t b = *r->p;
    int n = 0;
    bool s = false;
    if (b <= 0x7f) {
        *neg = false;
        *u = b;
        r->p++;
        return 0;
    }
    if (b >= 0xe0) {
        *neg = true;
        *u = (uint64_t)(int64_t)(int8_t)b;
        r->p++;
        return 0;
    }
    switch (b) {
    case 0xcc: n = 1; break;
    case 0xcd: n = 2; break;
    case 0xce: n = 4; break;
    case 0xcf: n = 8; break;
    case 0xd0: n = 1, s = true; break;
    case 0xd1: n = 2, s = true; break;
    case 0xd2: n = 4, s = true; break;
    case 0xd3: n = 8, s = true; break;
    default: return MPB_ETYPE;
    }
    if (!has(r, (size_t)n + 1)) return MPB_EPROTO;
    uint64_t v = get_be(r->p + 1, n);
    r->p += n + 1;
    if (s) {
        int64_t sv;
        switch (n) {
        case 1: sv = (int8_t)v; break;
        case 2: sv = (int16_t)v; break;
        case 4: sv = (int32_t)v; break;
        default: sv = (int64_t)v; break;
        }
        *neg = sv < 0;
        *u = (uint64_t)sv;
    } else {
        *neg = false;
        *u = v;
    }
    return 0;
}

int mpb__rd_int(mpb__rd_t *r, int64_t *v) {
    mpb__rd_t save = *r;
    bool neg;
    uint64_t u;
    int rc = rd_anyint(r, &neg, &u);
    if (rc) return rc;
    if (!neg && u > INT64_MAX) {
        *r = save;
        return MPB_ETYPE;
    }
    *v = (int64_t)u;
    return 0;
}

int mpb__rd_uint(mpb__rd_t *r, uint64_t *v) {
    mpb__rd_t save = *r;
    bool neg;
    uint64_t u;
    int rc = rd_anyint(r, &neg, &u);
    if (rc) return rc;
    if (neg) {
        *r = save;
        return MPB_ETYPE;
    }
    *v = u;
    return 0;
}

int mpb__rd_double(mpb__rd_t *r, double *v) {
    if (!has(r, 1)) return MPB_EPROTO;
    uint8_t b = *r->p;
    if (b == 0xca) {
        if (!has(r, 5)) return MPB_EPROTO;
        uint32_t u = (uint32_t)get_be(r->p + 1, 4);
        float f;
        memcpy(&f, &u, 4);
        *v = f;
        r->p += 5;
        return 0;
    }
    if (b == 0xcb) {
        if (!has(r, 9)) return MPB_EPROTO;
        uint64_t u = get_be(r->p + 1, 8);
        memcpy(v, &u, 8);
        r->p += 9;
        return 0;
    }
    bool neg;
    uint64_t u;
    int rc = rd_anyint(r, &neg, &u);
    if (rc) return rc;
    *v = neg ? (double)(int64_t)u : (double)u;
    return 0;
}

static int rd_len(mpb__rd_t *r, uint8_t fix_lo, uint8_t fix_hi, uint8_t fixmask, uint8_t t8,
                  uint8_t t16, uint8_t t32, uint32_t *n) {
    if (!has(r, 1)) return MPB_EPROTO;
    uint8_t b = *r->p;
    int hl;
    if (fix_hi && b >= fix_lo && b <= fix_hi) {
        *n = b & fixmask;
        r->p++;
        return 0;
    }
    if (t8 && b == t8)
        hl = 1;
    else if (b == t16)
        hl = 2;
    else if (b == t32)
        hl = 4;
    else
        return MPB_ETYPE;
    if (!has(r, (size_t)hl + 1)) return MPB_EPROTO;
    *n = (uint32_t)get_be(r->p + 1, hl);
    r->p += hl + 1;
    return 0;
}

int mpb__rd_str(mpb__rd_t *r, const char **s, uint32_t *n) {
    mpb__rd_t save = *r;
    int rc = rd_len(r, 0xa0, 0xbf, 0x1f, 0xd9, 0xda, 0xdb, n);
    if (rc) return rc;
    if (!has(r, *n)) {
        *r = save;
        return MPB_EPROTO;
    }
    *s = (const char *)r->p;
    r->p += *n;
    return 0;
}

int mpb__rd_bin(mpb__rd_t *r, const uint8_t **p, uint32_t *n) {
    mpb__rd_t save = *r;
    int rc = rd_len(r, 0, 0, 0, 0xc4, 0xc5, 0xc6, n);
    if (rc) return rc;
    if (!has(r, *n)) {
        *r = save;
        return MPB_EPROTO;
    }
    *p = r->p;
    r->p += *n;
    return 0;
}

int mpb__rd_array(mpb__rd_t *r, uint32_t *n) {
    return rd_len(r, 0x90, 0x9f, 0x0f, 0, 0xdc, 0xdd, n);
}

int mpb__rd_map(mpb__rd_t *r, uint32_t *n) {
    return rd_len(r, 0x80, 0x8f, 0x0f, 0, 0xde, 0xdf, n);
}

int mpb__rd_span(mpb__rd_t *r, const uint8_t **v, size_t *n) {
    /* a span may be a whole request or a pool task: values nest inside them */
    long l = mpb__mp_check1(r->p, (size_t)(r->end - r->p), MPB__FRAME_DEPTH);
    if (l < 0) return MPB_EPROTO;
    *v = r->p;
    *n = (size_t)l;
    r->p += l;
    return 0;
}

int mpb__rd_mapget(const mpb__rd_t *r, const char *key, mpb__rd_t *val) {
    mpb__rd_t c = *r;
    uint32_t n;
    int rc = mpb__rd_map(&c, &n);
    if (rc) return rc;
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *k, *v;
        size_t kn, vn;
        if (mpb__rd_span(&c, &k, &kn)) return MPB_EPROTO;
        mpb__rd_t kr = {k, k + kn};
        const char *s;
        uint32_t sl;
        bool match = mpb__rd_str(&kr, &s, &sl) == 0 && sl == kl && memcmp(s, key, kl) == 0;
        if (match) {
            *val = c;
            return 0;
        }
        if (mpb__rd_span(&c, &v, &vn)) return MPB_EPROTO;
    }
    return MPB_ENOKEY;
}

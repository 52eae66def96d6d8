/* mpcheck.c - validates msgpack bytes before anything decodes them: every length must fit in
 * the bytes that are left and nesting is bounded, so that no decoder ever sizes storage from a
 * hostile header (an array32 header alone asks msgpack-c for 128 GiB). */
#include "mpbproto.h"

static long need(const uint8_t *p, const uint8_t *end, size_t n) {
    return (size_t)(end - p) >= n ? (long)n : -1;
}

static uint64_t be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Returns the pointer past one value, or NULL. Iterative over a counter of pending items so
 * that depth costs no C stack. */
static const uint8_t *check1(const uint8_t *p, const uint8_t *end, int max_depth) {
    uint64_t pending[MPB__FRAME_DEPTH + 2];
    int depth = 0;
    pending[0] = 1;
    if (max_depth > MPB__FRAME_DEPTH) max_depth = MPB__FRAME_DEPTH;
    while (depth >= 0) {
        if (pending[depth] == 0) {
            depth--;
            continue;
        }
        pending[depth]--;
        if (p >= end) return NULL;
        uint8_t b = *p++;
        uint64_t skip = 0, children = 0;
        int hl = 0;        /* length-field bytes */
        bool coll = false; /* an array or a map, even an empty one: it counts as a level */
        if (b <= 0x7f || b >= 0xe0) continue;
        if (b >= 0x80 && b <= 0x8f) {
            children = (uint64_t)(b & 0x0f) * 2;
            coll = true;
        } else if (b >= 0x90 && b <= 0x9f) {
            children = b & 0x0f;
            coll = true;
        } else if (b >= 0xa0 && b <= 0xbf) {
            skip = b & 0x1f;
        } else {
            switch (b) {
            case 0xc0:
            case 0xc2:
            case 0xc3: continue;
            case 0xc1: return NULL;
            case 0xc4:
            case 0xd9: hl = 1; break;
            case 0xc5:
            case 0xda: hl = 2; break;
            case 0xc6:
            case 0xdb: hl = 4; break;
            case 0xc7: hl = 1; break; /* ext8: length, then type byte */
            case 0xc8: hl = 2; break;
            case 0xc9: hl = 4; break;
            case 0xca: skip = 4; break;
            case 0xcb: skip = 8; break;
            case 0xcc:
            case 0xd0: skip = 1; break;
            case 0xcd:
            case 0xd1: skip = 2; break;
            case 0xce:
            case 0xd2: skip = 4; break;
            case 0xcf:
            case 0xd3: skip = 8; break;
            case 0xd4: skip = 2; break;
            case 0xd5: skip = 3; break;
            case 0xd6: skip = 5; break;
            case 0xd7: skip = 9; break;
            case 0xd8: skip = 17; break;
            case 0xdc:
            case 0xde: hl = 2; break;
            case 0xdd:
            case 0xdf: hl = 4; break;
            default: return NULL;
            }
            if (hl) {
                if (need(p, end, (size_t)hl) < 0) return NULL;
                uint64_t n = be(p, hl);
                p += hl;
                if (b == 0xdc || b == 0xdd)
                    children = n, coll = true;
                else if (b == 0xde || b == 0xdf)
                    children = n * 2, coll = true;
                else if (b >= 0xc7 && b <= 0xc9)
                    skip = n + 1;
                else
                    skip = n;
            }
        }
        if (skip) {
            if ((uint64_t)(end - p) < skip) return NULL;
            p += skip;
        }
        if (coll) {
            /* Each element takes at least one byte: a count beyond the bytes left is a lie. */
            if (children > (uint64_t)(end - p)) return NULL;
            if (depth + 1 > max_depth) return NULL;
            if (children) pending[++depth] = children;
        }
    }
    return p;
}

/* The length of the scalar at p (fixed size, or a str/bin with its length field), -1 when it
 * does not fit in n bytes, -2 when p starts an array, map or ext (or a reserved byte). */
static long scalar_len(const uint8_t *p, size_t n) {
    uint8_t b = p[0];
    size_t l;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) return 1;
    if (b >= 0xa0 && b <= 0xbf)
        l = 1 + (size_t)(b & 0x1f);
    else if (b == 0xc4 || b == 0xd9)
        l = n >= 2 ? 2 + (size_t)p[1] : SIZE_MAX;
    else if (b == 0xc5 || b == 0xda)
        l = n >= 3 ? 3 + (size_t)be(p + 1, 2) : SIZE_MAX;
    else if (b == 0xcc || b == 0xd0)
        l = 2;
    else if (b == 0xcd || b == 0xd1)
        l = 3;
    else if (b == 0xca || b == 0xce || b == 0xd2)
        l = 5;
    else if (b == 0xcb || b == 0xcf || b == 0xd3)
        l = 9;
    else
        return -2;
    return l <= n ? (long)l : -1;
}

long mpb__mp_check1(const uint8_t *buf, size_t len, int max_depth) {
    if (len) { /* most keys and values are scalars: no walk for them */
        long l = scalar_len(buf, len);
        if (l != -2) return l >= 0 ? l : MPB_EPROTO;
    }
    const uint8_t *e = check1(buf, buf + len, max_depth);
    return e ? (long)(e - buf) : MPB_EPROTO;
}

int mpb__mp_check(const uint8_t *buf, size_t len, int max_depth) {
    const uint8_t *p = buf, *end = buf + len;
    while (p < end) {
        p = check1(p, end, max_depth);
        if (!p) return MPB_EPROTO;
    }
    return 0;
}

/* json.c - JSON <-> msgpack for the mpb CLI. JSON is parsed by jansson and packed with libmpb's
 * public builder (mpb_mp_*), so the CLI stores exactly the bytes libmpb would (shortest
 * integers, float64); msgpack from the broker is read with libmpb's public reader (mpb_mpr_*,
 * which checks every length and the depth first) and turned into jansson values. Bytes that JSON
 * has no type for are spelt
 * {"$bytes": "<base64>"} (and {"$ext": type, "$bytes": "<base64>"}), and a map that a JSON
 * object cannot hold exactly is {"$map": [[key, value], ...]}, both ways, so that what `mpb get`
 * prints, `mpb set` stores back unchanged (tests/fuzz/fz_json.c checks it). */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mpb/mpb.h"

#include "b64.h" /* common/ */
#include "json.h"

/* PROTOCOL.md: a value nests at most 32 arrays and maps deep; the reader refuses more. */
#define JSON_MAX_DEPTH MPB_MP_MAX_DEPTH

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The base64 of p[0..n) (common/b64.c) as a jansson string, NULL for out of memory. */
static json_t *b64_string(const uint8_t *p, size_t n) {
    size_t olen;
    char *s = b64_encode(p, n, &olen);
    if (!s) return NULL;
    json_t *j = json_stringn_nocheck(s, olen); /* ASCII by construction */
    free(s);
    return j;
}

/* ---- JSON -> msgpack ---- */

static int pack(json_t *j, int depth, mpb_mpbuf_t *b, char *err, size_t errlen);

/* msgpack lengths are 32-bit: say so rather than write a header that lies. */
static int fits32(size_t n, const char *what, char *err, size_t errlen) {
    if (n <= UINT32_MAX) return 0;
    seterr(err, errlen, "%s of %zu is too big for msgpack (max %" PRIu32 ")", what, n, UINT32_MAX);
    return -1;
}

/* The shapes that stand for what a JSON object cannot: {"$bytes": STRING} alone or with
 * {"$ext": INTEGER} (bin, ext), and {"$map": [[key, value], ...]} alone (a map whose keys are
 * not all strings). Any other object is an ordinary map; the printer spells a map that has
 * one of these shapes as $map pairs, so that nothing reads back as what it was not. */
static bool is_bytes_shape(json_t *j) {
    size_t members = json_object_size(j);
    return json_is_string(json_object_get(j, "$bytes")) &&
           (members == 1 || (members == 2 && json_is_integer(json_object_get(j, "$ext"))));
}

static bool is_map_shape(json_t *j) {
    json_t *a = json_object_get(j, "$map");
    if (json_object_size(j) != 1 || !json_is_array(a)) return false;
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *pair = json_array_get(a, i);
        if (!json_is_array(pair) || json_array_size(pair) != 2) return false;
    }
    return true;
}

/* {"$bytes": "<base64>"} -> bin and {"$ext": type, "$bytes": "<base64>"} -> ext: the way
 * cli_msgpack_to_json prints them, read back; a map that merely has a "$bytes" key still
 * stores as a map. Returns 1 if packed, 0 if j is not one, -1 on error. */
static int pack_bytes(json_t *j, mpb_mpbuf_t *b, char *err, size_t errlen) {
    json_t *bytes = json_object_get(j, "$bytes");
    json_t *ext = json_object_get(j, "$ext");
    if (!is_bytes_shape(j)) return 0;
    if (ext && (json_integer_value(ext) < INT8_MIN || json_integer_value(ext) > INT8_MAX)) {
        seterr(err, errlen, "$ext type %" JSON_INTEGER_FORMAT " is not in -128..127",
               json_integer_value(ext));
        return -1;
    }
    uint8_t *d;
    size_t n;
    int rc = b64_decode(json_string_value(bytes), json_string_length(bytes), &d, &n);
    if (rc < 0) {
        seterr(err, errlen, rc == -1 ? "$bytes is not valid base64" : "out of memory");
        return -1;
    }
    if (fits32(n, "$bytes", err, errlen) < 0) {
        free(d);
        return -1;
    }
    if (ext)
        mpb_mp_ext(b, (int)json_integer_value(ext), d, n);
    else
        mpb_mp_bin(b, d, n);
    free(d);
    return 1;
}

static int too_deep(int depth, char *err, size_t errlen) {
    if (depth < JSON_MAX_DEPTH) return 0;
    seterr(err, errlen, "JSON nested deeper than %d arrays and objects, the most msgpack may",
           JSON_MAX_DEPTH);
    return -1;
}

/* {"$map": [[key, value], ...]}: a map with any keys, in the order given. */
static int pack_pairs(json_t *a, int depth, mpb_mpbuf_t *b, char *err, size_t errlen) {
    size_t n = json_array_size(a);
    if (fits32(n, "$map", err, errlen) < 0) return -1;
    mpb_mp_map(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        json_t *pair = json_array_get(a, i);
        if (pack(json_array_get(pair, 0), depth + 1, b, err, errlen) < 0 ||
            pack(json_array_get(pair, 1), depth + 1, b, err, errlen) < 0)
            return -1;
    }
    return 0;
}

static int pack_object(json_t *j, int depth, mpb_mpbuf_t *b, char *err, size_t errlen) {
    int rc = pack_bytes(j, b, err, errlen); /* bin and ext are not containers */
    if (rc) return rc < 0 ? -1 : 0;
    if (too_deep(depth, err, errlen)) return -1;
    if (is_map_shape(j)) return pack_pairs(json_object_get(j, "$map"), depth, b, err, errlen);
    if (fits32(json_object_size(j), "object", err, errlen) < 0) return -1;
    mpb_mp_map(b, (uint32_t)json_object_size(j));
    /* jansson iterates in insertion order, which is the order the user wrote. */
    for (void *it = json_object_iter(j); it; it = json_object_iter_next(j, it)) {
        size_t kn = json_object_iter_key_len(it);
        if (fits32(kn, "key", err, errlen) < 0) return -1;
        mpb_mp_str(b, json_object_iter_key(it), kn);
        if (pack(json_object_iter_value(it), depth + 1, b, err, errlen) < 0) return -1;
    }
    return 0;
}

/* depth: the arrays and maps around j. msgpack values nest at most JSON_MAX_DEPTH deep (mpcheck
 * refuses more, in libmpb, the broker and cli_msgpack_to_json), so deeper JSON is refused here
 * with the reason rather than packed into bytes nothing would take. This bounds the recursion. */
static int pack(json_t *j, int depth, mpb_mpbuf_t *b, char *err, size_t errlen) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return pack_object(j, depth, b, err, errlen);
    case JSON_ARRAY: {
        if (too_deep(depth, err, errlen)) return -1;
        size_t n = json_array_size(j);
        if (fits32(n, "array", err, errlen) < 0) return -1;
        mpb_mp_array(b, (uint32_t)n);
        for (size_t i = 0; i < n; i++) {
            if (pack(json_array_get(j, i), depth + 1, b, err, errlen) < 0) return -1;
        }
        return 0;
    }
    case JSON_STRING: {
        size_t n = json_string_length(j);
        if (fits32(n, "string", err, errlen) < 0) return -1;
        mpb_mp_str(b, json_string_value(j), n);
        return 0;
    }
    case JSON_INTEGER: mpb_mp_i64(b, json_integer_value(j)); return 0;
    case JSON_REAL: mpb_mp_double(b, json_real_value(j)); return 0;
    case JSON_TRUE: mpb_mp_bool(b, 1); return 0;
    case JSON_FALSE: mpb_mp_bool(b, 0); return 0;
    case JSON_NULL: mpb_mp_nil(b); return 0;
    }
    seterr(err, errlen, "unknown JSON type %d", (int)json_typeof(j));
    return -1;
}

int cli_json_to_msgpack(const char *text, void **out, size_t *outlen, char *err, size_t errlen) {
    *out = NULL;
    *outlen = 0;
    if (!text) {
        seterr(err, errlen, "JSON: no input");
        return -1;
    }
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!j) {
        /* jansson's text names the token ("too big integer near '18446744073709551616'");
         * for numbers add what the limit is and the way around it. */
        const char *hint = json_error_code(&jerr) == json_error_numeric_overflow
                               ? " (numbers must fit in int64 or double; quote bigger ones)"
                               : "";
        if (jerr.line > 0)
            seterr(err, errlen, "JSON: %s at line %d column %d%s", jerr.text, jerr.line,
                   jerr.column, hint);
        else
            seterr(err, errlen, "JSON: %s%s", jerr.text, hint);
        return -1;
    }
    mpb_mpbuf_t b = {0};
    int rc = pack(j, 0, &b, err, errlen);
    json_decref(j);
    if (rc < 0) {
        mpb_mp_reset(&b);
        return -1;
    }
    if (mpb_mp_take(&b, out, outlen)) { /* the builder's only failure here: memory */
        seterr(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* ---- msgpack -> JSON ---- */

/* A growing string for json_dump_callback(). */
typedef struct text {
    char *p;
    size_t len, cap;
} text_t;

static int dump_cb(const char *buf, size_t size, void *data) {
    text_t *t = data;
    if (t->len + size + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + size + 1)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) return -1;
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->len, buf, size);
    t->len += size;
    t->p[t->len] = 0;
    return 0;
}

/* j as JSON text in a malloc'd string (not jansson's allocator, which a program may replace:
 * our callers free() it). NULL for out of memory. */
static char *dump(const json_t *j, size_t flags) {
    text_t t = {0};
    if (json_dump_callback(j, dump_cb, &t, flags | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER) || !t.p) {
        free(t.p);
        return NULL;
    }
    return t.p;
}

static json_t *to_json(mpb_mpreader_t *r);

/* {"$bytes": "<base64>"}, with "$ext": type first for an ext. */
static json_t *bytes_object(const void *p, size_t n, const int8_t *ext_type) {
    json_t *o = json_object();
    if (!o) return NULL;
    if (ext_type && json_object_set_new(o, "$ext", json_integer(*ext_type)) < 0) goto fail;
    if (json_object_set_new(o, "$bytes", b64_string(p, n)) < 0) goto fail;
    return o;
fail:
    json_decref(o);
    return NULL;
}

/* {"$map": [[key, value], ...]} of the n pairs at r, every key as its own JSON value. */
static json_t *map_pairs(mpb_mpreader_t *r, uint32_t n) {
    json_t *pairs = json_array(), *o = json_object();
    for (uint32_t i = 0; pairs && o && i < n; i++) {
        json_t *pair = json_array();
        if (!pair || json_array_append_new(pair, to_json(r)) < 0 ||
            json_array_append_new(pair, to_json(r)) < 0 || json_array_append_new(pairs, pair) < 0) {
            json_decref(pairs);
            pairs = NULL;
        }
    }
    if (!pairs || !o || json_object_set_new(o, "$map", pairs) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Map keys are strings in JSON. A msgpack str key that is UTF-8 stays itself; any other key
 * is named by its compact JSON text (1 -> "1", [1,2] -> "[1,2]", bin -> "{\"$bytes\":...}")
 * so that every map prints. When that would lose or mislead, the map is {"$map": pairs}
 * instead: two keys that render alike (1 and "1"), or a map that has the very shape of $bytes,
 * $ext or $map and would read back as one. */
static json_t *map_to_json(mpb_mpreader_t *r, uint32_t n) {
    json_t *obj = json_object();
    if (!obj) return NULL;
    mpb_mpreader_t pairs = *r; /* where the pairs start, to read them again as $map */
    bool collide = false;
    for (uint32_t i = 0; i < n; i++) {
        json_t *k = to_json(r);
        if (!k) goto fail;
        char *s = json_is_string(k) ? NULL : dump(k, JSON_COMPACT);
        const char *ks = s ? s : json_string_value(k);
        size_t kl = s ? strlen(s) : json_string_length(k);
        int rc = -1;
        if (ks) {
            if (json_object_getn(obj, ks, kl)) collide = true;
            rc = json_object_setn_new(obj, ks, kl, to_json(r));
        }
        free(s);
        json_decref(k);
        if (rc < 0) goto fail; /* jansson released the value */
    }
    if (collide || is_bytes_shape(obj) || is_map_shape(obj)) {
        json_decref(obj);
        *r = pairs;
        return map_pairs(r, n);
    }
    return obj;
fail:
    json_decref(obj);
    return NULL;
}

/* uint64 above INT64_MAX: jansson's integers are int64 and it cannot print raw number text, so
 * such a value is a JSON real when the double is exactly it (2^63, 2^64 - 2048, ...) and
 * otherwise its decimal digits as a string ("18446744073709551615"): never a nearby number that
 * differs from what is stored. */
static json_t *big_uint(uint64_t u) {
    double d = (double)u;
    if (d < 18446744073709551616.0 && (uint64_t)d == u) return json_real(d);
    char s[24];
    snprintf(s, sizeof s, "%" PRIu64, u);
    return json_string(s);
}

/* NaN and the infinities are not JSON: they print as the strings JavaScript's Number() reads
 * back, rather than as null, which would lose which one it was. */
static json_t *real(double d) {
    if (isnan(d)) return json_string("NaN");
    if (isinf(d)) return json_string(d > 0 ? "Infinity" : "-Infinity");
    return json_real(d);
}

/* The next value at r as a new reference, NULL only for out of memory. Recursion is bounded by
 * the depth the reader was opened with. */
static json_t *to_json(mpb_mpreader_t *r) {
    mpb_mpval_t v;
    if (mpb_mpr_next(r, &v)) return NULL; /* never: the reader counted the items */
    switch (v.type) {
    case MPB_MP_NIL: return json_null();
    case MPB_MP_BOOL: return json_boolean(v.i);
    case MPB_MP_INT: return v.big ? big_uint(v.u) : json_integer((json_int_t)v.i);
    case MPB_MP_FLOAT: return real(v.d);
    case MPB_MP_STR: {
        /* jansson only holds UTF-8; anything else is shown as the bytes it is */
        if (!v.n) return json_string("");
        json_t *s = json_stringn(v.p, v.n);
        return s ? s : bytes_object(v.p, v.n, NULL);
    }
    case MPB_MP_BIN: return bytes_object(v.p, v.n, NULL);
    case MPB_MP_EXT: return bytes_object(v.p, v.n, &(int8_t){(int8_t)v.ext_type});
    case MPB_MP_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; a && i < v.n; i++) {
            if (json_array_append_new(a, to_json(r)) < 0) {
                json_decref(a);
                a = NULL;
            }
        }
        return a;
    }
    case MPB_MP_MAP: return map_to_json(r, v.n);
    }
    return NULL;
}

json_t *cli_msgpack_to_jansson(const void *mp, size_t len, char *err, size_t errlen) {
    if (!mp || !len) {
        seterr(err, errlen, "no msgpack value (0 bytes)");
        return NULL;
    }
    mpb_mpreader_t r;
    size_t n;
    if (mpb_mpr_init_prefix(&r, mp, len, JSON_MAX_DEPTH, &n)) {
        seterr(err, errlen, "invalid or truncated msgpack (%zu bytes, or nested deeper than %d)",
               len, JSON_MAX_DEPTH);
        return NULL;
    }
    if (n != len) {
        seterr(err, errlen, "%zu trailing bytes after a msgpack value of %zu", len - n, n);
        return NULL;
    }
    json_t *j = to_json(&r);
    if (!j) seterr(err, errlen, "out of memory");
    return j;
}

/* The fewest significant digits (1..17) whose %g text reads back as exactly d. */
static int digits_needed(double d) {
    char s[40];
    for (int p = 1; p < 17; p++) {
        snprintf(s, sizeof s, "%.*g", p, d);
        if (strtod(s, NULL) == d) return p;
    }
    return 17;
}

/* The most digits any real in j needs (0 if it has none). */
static int max_digits(json_t *j) {
    int m = 0;
    if (json_is_real(j)) return digits_needed(json_real_value(j));
    if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) {
            int p = max_digits(json_array_get(j, i));
            m = p > m ? p : m;
        }
    } else if (json_is_object(j)) {
        for (void *it = json_object_iter(j); it; it = json_object_iter_next(j, it)) {
            int p = max_digits(json_object_iter_value(it));
            m = p > m ? p : m;
        }
    }
    return m;
}

int cli_msgpack_to_json(const void *mp, size_t len, int compact, char **out, char *err,
                        size_t errlen) {
    *out = NULL;
    json_t *j = cli_msgpack_to_jansson(mp, len, err, errlen);
    if (!j) return -1;
    /* jansson prints every real with 17 digits unless told fewer, so 0.1 would show as
     * 0.10000000000000001. One precision applies to the whole document: the most that any of
     * its reals needs to read back exactly, which is the shortest form when there is one real
     * and still exact for all of them when there are several. */
    size_t flags = compact ? JSON_COMPACT : JSON_INDENT(2);
    int digits = max_digits(j);
    if (digits > 0) flags |= JSON_REAL_PRECISION(digits);
    *out = dump(j, flags);
    json_decref(j);
    if (!*out) {
        seterr(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

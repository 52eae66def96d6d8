/* json.h - JSON <-> msgpack for the mpb CLI: what a user types becomes the msgpack value that is
 * stored, and what the broker returns is printed as JSON. Bytes that JSON cannot hold travel as
 * {"$bytes": "<base64>"} (bin, or a str that is not UTF-8) and {"$ext": type, "$bytes": ...};
 * a map as {"$map": [[key, value], ...]} when a JSON object would lose or misread it (keys that
 * print alike, such as 1 and "1"; a map shaped like one of these three). Other maps with keys
 * that are not strings print as objects keyed by each key's JSON text (1 -> "1"). */
#ifndef MPB_CLI_JSON_H
#define MPB_CLI_JSON_H

#include <stddef.h>

/* Parses JSON text (any JSON value, including scalars like 42, "x", null, true) into msgpack
 * bytes in a new buffer (*out, *outlen; free() or mpb_free() it). Integers become the shortest
 * msgpack int, reals float64, object members keep their order; {"$bytes": "<base64>"} becomes
 * bin and {"$ext": type, "$bytes": "<base64>"} an ext. Arrays and objects may nest 32 deep, as
 * msgpack values may (PROTOCOL.md). Returns 0, or -1 with a one-line reason in err ("JSON: '['
 * expected near 'x' at line 1 column 3") and *out = NULL. jansson refuses a NUL (\u0000) in an
 * object key, though cli_msgpack_to_json may print one: such a map prints but cannot be typed. */
int cli_json_to_msgpack(const char *text, void **out, size_t *outlen, char *err, size_t errlen);

/* Renders one msgpack value (exactly len bytes, e.g. straight off the network: it is checked
 * before it is decoded) as JSON text into a new malloc'd NUL-terminated string (*out; free()
 * it). compact=1: one line, no spaces; compact=0: indented by 2. Returns 0, or -1 with a reason
 * in err (truncated or invalid msgpack, trailing bytes, out of memory) and *out = NULL. */
int cli_msgpack_to_json(const void *mp, size_t len, int compact, char **out, char *err,
                        size_t errlen);

/* Same, but returns a jansson json_t * (a new reference: json_decref() it) for callers that
 * embed values in bigger JSON documents; NULL with a reason in err on failure. */
struct json_t;
struct json_t *cli_msgpack_to_jansson(const void *mp, size_t len, char *err, size_t errlen);

#endif

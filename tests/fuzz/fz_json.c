/* fz_json.c - fuzz harness for the CLI's JSON <-> msgpack conversion (client/cli/json.c). The
 * bytes are taken both as msgpack (what a broker may send) and as JSON text (what a user may
 * type). Properties, besides "no crash, no sanitizer report": JSON that packs gives one valid
 * msgpack value that prints, and packing what printed gives the same bytes again; msgpack that
 * prints gives JSON that packs (unless a map key holds a NUL, which jansson cannot read), and
 * printing that again gives the same text. */
#include <stdbool.h>
#include <string.h>

#include "mpbproto.h"
#include "json.h"
#include "fuzz.h"

/* Each returns whether the input converted. */
static bool from_msgpack(const uint8_t *data, size_t len) {
    char *s = NULL, *s2 = NULL, err[256];
    int rc = cli_msgpack_to_json(data, len, 1, &s, err, sizeof err);
    char *ind = NULL;
    int rci = cli_msgpack_to_json(data, len, 0, &ind, err, sizeof err);
    FZ_CHECK(rc == rci, "compact and indented disagree (%d, %d)", rc, rci);
    free(ind);
    if (rc) {
        FZ_CHECK(!s, "failed but returned text");
        return false;
    }
    void *mp = NULL;
    size_t mpl;
    if (cli_json_to_msgpack(s, &mp, &mpl, err, sizeof err)) {
        FZ_CHECK(strstr(err, "NUL byte in object key"), "printed JSON does not read back: %s: %s",
                 err, s);
        free(s);
        return true;
    }
    FZ_CHECK(cli_msgpack_to_json(mp, mpl, 1, &s2, err, sizeof err) == 0,
             "re-packed value does not print: %s", err);
    FZ_CHECK(!strcmp(s, s2), "printing is not stable: %s then %s", s, s2);
    free(mp);
    free(s);
    free(s2);
    return true;
}

static bool from_text(const uint8_t *data, size_t len) {
    char *t = malloc(len + 1), *back = NULL, err[256];
    if (!t) return false;
    memcpy(t, data, len);
    t[len] = 0;
    void *mp = NULL, *mp2 = NULL;
    size_t mpl, mpl2;
    bool ok = cli_json_to_msgpack(t, &mp, &mpl, err, sizeof err) == 0;
    if (ok) {
        FZ_CHECK(mpb__mp_check1(mp, mpl, MPB__MAX_DEPTH) == (long)mpl,
                 "JSON packed into something that is not one valid value");
        FZ_CHECK(cli_msgpack_to_json(mp, mpl, 1, &back, err, sizeof err) == 0,
                 "packed JSON does not print: %s", err);
        FZ_CHECK(cli_json_to_msgpack(back, &mp2, &mpl2, err, sizeof err) == 0,
                 "printed JSON does not read back: %s: %s", err, back);
        FZ_CHECK(mpl == mpl2 && !memcmp(mp, mp2, mpl), "round trip changed the value: %s", back);
        free(back);
        free(mp);
        free(mp2);
    } else {
        FZ_CHECK(!mp && err[0], "failed without a reason");
    }
    free(t);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    bool a = from_msgpack(data, len), b = from_text(data, len);
    return a || b ? 0 : -1;
}

/* ---- seeds for driver.c ---- */

void fz_seeds(void (*add)(const void *p, size_t n)) {
    static const char *const text[] = {
        "42",
        "-7",
        "1.5",
        "0.1",
        "-0.0",
        "1e300",
        "9223372036854775807",
        "-9223372036854775808",
        "\"text\"",
        "\"a\\u0000b\"",
        "\"\\ud83d\\ude00\"",
        "null",
        "true",
        "false",
        "[]",
        "{}",
        "[1,\"two\",null,true,1.5,{\"$bytes\":\"AAE=\"}]",
        "{\"age\":30,\"tags\":[\"a\",\"b\"]}",
        "{\"$bytes\":\"AAE=\"}",
        "{\"$bytes\":\"AAE\"}",
        "{\"$ext\":5,\"$bytes\":\"AQID\"}",
        "{\"$bytes\":\"AAE=\",\"x\":1}",
        "{\"$bytes\":1}",
        "{\"$ext\":1.0,\"$bytes\":\"\"}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "{\"a\":{\"b\":{\"c\":[{\"d\":null}]}}}",
        "\"NaN\"",
        "[0.1,0.2,0.30000000000000004]",
    };
    for (size_t i = 0; i < sizeof text / sizeof *text; i++)
        add(text[i], strlen(text[i]));
    /* msgpack the broker may send: maps with keys that are not strings, big unsigned ints,
     * float32, str that is not UTF-8, ext, NaN. */
    mpb__buf_t b = {0};
    mpb__w_map(&b, 4);
    mpb__w_int(&b, 1);
    mpb__w_cstr(&b, "int key");
    mpb__w_cstr(&b, "1");
    mpb__w_cstr(&b, "str key");
    mpb__w_array(&b, 1);
    mpb__w_int(&b, 2);
    mpb__w_nil(&b);
    mpb__w_str(&b, "a\0b", 3);
    mpb__w_double(&b, 2.5);
    add(b.p, b.len);
    mpb__buf_reset(&b);
    mpb__w_array(&b, 5);
    mpb__w_uint(&b, UINT64_MAX);
    mpb__w_uint(&b, 1ULL << 63);
    mpb__w_str(&b, "\xc3\x28", 2);
    mpb__w_bin(&b, "\0\1\2", 3);
    mpb__w_double(&b, -0.0);
    add(b.p, b.len);
    mpb__buf_free(&b);
    static const fz_token_t raw[] = {
        {"\xca\x3f\xc0\x00\x00",                 5 }, /* float32 1.5 */
        {"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", 9 }, /* NaN */
        {"\xd6\x05\x01\x02\x03\x04",             6 }, /* fixext4 type 5 */
        {"\x81\xa6$bytes\xa4"
         "AAE=",                        13}, /* a map that looks like bytes */
        {"\x82\xa4$ext\x01\xa6$bytes\xa0",       15}, /* ... and like an ext */
        {"\x81\xa3"
         "a\0b\x01",                    6 }, /* a NUL in a map key */
    };
    fz_add_each(add, raw, sizeof raw / sizeof *raw);
}

const fz_token_t fz_tokens[] = {
    FZ_TOK("{"),
    FZ_TOK("}"),
    FZ_TOK("["),
    FZ_TOK("]"),
    FZ_TOK(","),
    FZ_TOK(":"),
    FZ_TOK("\""),
    FZ_TOK("\\u0000"),
    FZ_TOK("\\ud800"),
    FZ_TOK("\\\""),
    FZ_TOK("\"$bytes\""),
    FZ_TOK("\"$ext\""),
    FZ_TOK("\"AAE=\""),
    FZ_TOK("1e308"),
    FZ_TOK("-0.0"),
    FZ_TOK("1.0"),
    FZ_TOK("18446744073709551616"),
    FZ_TOK("null"),
    FZ_TOK("true"),
    FZ_TOK("\xff"),
    FZ_TOK("\xc3\xa9"),
    FZ_TOK("\xc0"),
    FZ_TOK("\xcb"),
    FZ_TOK("\xcf\x80\x00\x00\x00\x00\x00\x00\x00"),
    FZ_TOK("\xd9\x03"),
    FZ_TOK("\xc4\x02"),
    FZ_TOK("\xd4\x01"),
    FZ_TOK("\x91"),
    FZ_TOK("\x81"),
    FZ_TOK("\xde\x00\x01"),
    FZ_TOK("\xdd\xff\xff\xff\xff"),
    {NULL, 0},
};

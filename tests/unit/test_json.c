/* test_json.c - the CLI's JSON <-> msgpack conversion (client/cli/json.c): exact bytes for what
 * users type, round trips, $bytes/$ext, odd map keys, NaN, and hostile or broken msgpack. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "json.h"

/* JSON text -> msgpack must give exactly want[0..n). */
static void expect_mp(const char *text, const uint8_t *want, size_t n) {
    void *mp = (void *)1;
    size_t len = 0;
    char err[256] = "";
    int rc = cli_json_to_msgpack(text, &mp, &len, err, sizeof err);
    if (rc != 0) print_error("cli_json_to_msgpack(%s): %s\n", text, err);
    assert_int_equal(rc, 0);
    assert_non_null(mp);
    assert_int_equal(len, n);
    assert_memory_equal(mp, want, n);
    free(mp);
}
#define EXPECT_MP(text, ...)                                                                       \
    do {                                                                                           \
        const uint8_t want_[] = {__VA_ARGS__};                                                     \
        expect_mp(text, want_, sizeof want_);                                                      \
    } while (0)

/* msgpack mp[0..n) -> compact JSON must be exactly want. */
static void expect_json(const uint8_t *mp, size_t n, const char *want) {
    char *out = (char *)1;
    char err[256] = "";
    int rc = cli_msgpack_to_json(mp, n, 1, &out, err, sizeof err);
    if (rc != 0) print_error("cli_msgpack_to_json: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(out);
    assert_string_equal(out, want);
    free(out);
}
#define EXPECT_JSON(want, ...)                                                                     \
    do {                                                                                           \
        const uint8_t mp_[] = {__VA_ARGS__};                                                       \
        expect_json(mp_, sizeof mp_, want);                                                        \
    } while (0)

/* msgpack mp[0..n) is refused: -1, a reason, no output. */
static void expect_mp_error(const uint8_t *mp, size_t n) {
    char *out = (char *)1;
    char err[256] = "";
    assert_int_equal(cli_msgpack_to_json(mp, n, 1, &out, err, sizeof err), -1);
    assert_null(out);
    assert_true(strlen(err) > 0);
    err[0] = '\0';
    assert_null(cli_msgpack_to_jansson(mp, n, err, sizeof err));
    assert_true(strlen(err) > 0);
}
#define EXPECT_MP_ERROR(...)                                                                       \
    do {                                                                                           \
        const uint8_t mp_[] = {__VA_ARGS__};                                                       \
        expect_mp_error(mp_, sizeof mp_);                                                          \
    } while (0)

/* JSON text is refused: -1, a reason, no output. Returns nothing; the reason goes to err. */
static void expect_json_error(const char *text, char *err, size_t errlen) {
    void *mp = (void *)1;
    size_t len = 7;
    err[0] = '\0';
    assert_int_equal(cli_json_to_msgpack(text, &mp, &len, err, errlen), -1);
    assert_null(mp);
    assert_int_equal(len, 0);
    assert_true(strlen(err) > 0);
}

/* text -> msgpack -> compact JSON gives text back (text is written as jansson prints). */
static void round_trip(const char *text) {
    void *mp;
    size_t len;
    char err[256] = "";
    char *out;
    assert_int_equal(cli_json_to_msgpack(text, &mp, &len, err, sizeof err), 0);
    int rc = cli_msgpack_to_json(mp, len, 1, &out, err, sizeof err);
    if (rc != 0) print_error("round trip of %s: %s\n", text, err);
    assert_int_equal(rc, 0);
    assert_string_equal(out, text);
    free(out);
    free(mp);
}

/* The control case every bad-input test ends with: a plain value still converts both ways. */
static void still_works(void) {
    EXPECT_MP("{\"a\":1}", 0x81, 0xa1, 0x61, 0x01);
    EXPECT_JSON("{\"a\":1}", 0x81, 0xa1, 0x61, 0x01);
}

static void test_exact_bytes(void **state) {
    (void)state;
    EXPECT_MP("42", 0x2a);
    EXPECT_MP("\"a\"", 0xa1, 0x61);
    EXPECT_MP("[1,\"x\"]", 0x92, 0x01, 0xa1, 0x78);
    EXPECT_MP("{\"a\":1}", 0x81, 0xa1, 0x61, 0x01);
    EXPECT_MP("-1", 0xff);
    EXPECT_MP("1.5", 0xcb, 0x3f, 0xf8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00);
    EXPECT_MP("1.0", 0xcb, 0x3f, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00); /* a real stays one */
    EXPECT_MP("null", 0xc0);
    EXPECT_MP("true", 0xc3);
    EXPECT_MP("false", 0xc2);
    EXPECT_MP("\"\"", 0xa0);
    EXPECT_MP("[]", 0x90);
    EXPECT_MP("{}", 0x80);
    /* shortest integer encodings */
    EXPECT_MP("127", 0x7f);
    EXPECT_MP("128", 0xcc, 0x80);
    EXPECT_MP("256", 0xcd, 0x01, 0x00);
    EXPECT_MP("65536", 0xce, 0x00, 0x01, 0x00, 0x00);
    EXPECT_MP("4294967296", 0xcf, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00);
    EXPECT_MP("-32", 0xe0);
    EXPECT_MP("-33", 0xd0, 0xdf);
    EXPECT_MP("-129", 0xd1, 0xff, 0x7f);
    EXPECT_MP(" \n [ 1 ] \n", 0x91, 0x01); /* whitespace around the value is fine */
    EXPECT_MP("\"0123456789012345678901234567890123\"", 0xd9, 0x22, '0', '1', '2', '3', '4', '5',
              '6', '7', '8', '9', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '0', '1', '2',
              '3', '4', '5', '6', '7', '8', '9', '0', '1', '2', '3');
}

static void test_scalars_round_trip(void **state) {
    (void)state;
    const char *cases[] = {"0",     "42",    "-1",           "1000000", "1.5",  "-0.25",
                           "0.1",   "1e300", "-1.2345e-300", "null",    "true", "false",
                           "\"x\"", "\"\"",  "[]",           "{}"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        round_trip(cases[i]);
}

static void test_int64_limits(void **state) {
    (void)state;
    EXPECT_MP("9223372036854775807", 0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    EXPECT_MP("-9223372036854775808", 0xd3, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00);
    round_trip("9223372036854775807");
    round_trip("-9223372036854775808");
    round_trip("[-9223372036854775808,9223372036854775807]");
    /* uint64 beyond int64: exact as a real when the double is exact, else a decimal string */
    EXPECT_JSON("\"18446744073709551615\"", 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    EXPECT_JSON("\"9223372036854775809\"", 0xcf, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01);
    EXPECT_JSON("9.223372036854776e18", 0xcf, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00);
    /* non-shortest encodings from other writers still read as the number */
    EXPECT_JSON("5", 0xcf, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05);
    EXPECT_JSON("-1", 0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
}

static void test_nested_and_indent(void **state) {
    (void)state;
    round_trip("{\"a\":[1,{\"b\":[true,null,\"c\",[[[]]]]}],\"d\":{},\"e\":[{}]}");
    round_trip("[[1,2],[3,[4,[5]]]]");
    EXPECT_MP("{\"a\":[1,{\"b\":null}]}", 0x81, 0xa1, 0x61, 0x92, 0x01, 0x81, 0xa1, 0x62, 0xc0);

    void *mp;
    size_t len;
    char *out;
    char err[256];
    assert_int_equal(cli_json_to_msgpack("{\"a\":[1,2],\"b\":\"x\"}", &mp, &len, err, sizeof err),
                     0);
    assert_int_equal(cli_msgpack_to_json(mp, len, 0, &out, err, sizeof err), 0);
    assert_string_equal(out, "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": \"x\"\n}");
    free(out);
    free(mp);
}

static void test_object_order_preserved(void **state) {
    (void)state;
    EXPECT_MP("{\"z\":1,\"a\":2,\"m\":3}", 0x83, 0xa1, 'z', 0x01, 0xa1, 'a', 0x02, 0xa1, 'm', 0x03);
    EXPECT_JSON("{\"z\":1,\"a\":2,\"m\":3}", 0x83, 0xa1, 'z', 0x01, 0xa1, 'a', 0x02, 0xa1, 'm',
                0x03);
    round_trip("{\"zz\":{\"y\":1,\"b\":2,\"x\":3},\"aa\":[],\"mm\":null}");
    /* a duplicate key in JSON text: jansson keeps the last value in the first one's place */
    EXPECT_MP("{\"a\":1,\"b\":2,\"a\":3}", 0x82, 0xa1, 'a', 0x03, 0xa1, 'b', 0x02);
}

static void test_unicode(void **state) {
    (void)state;
    round_trip("\"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80\"");
    round_trip("{\"cl\xc3\xa9\":\"\xe6\x97\xa5\xe6\x9c\xac\"}");
    EXPECT_MP("\"\xc3\xa9\"", 0xa2, 0xc3, 0xa9);
    EXPECT_MP("\"\\u00e9\"", 0xa2, 0xc3, 0xa9);                    /* escapes become UTF-8 */
    EXPECT_MP("\"\\ud83d\\ude00\"", 0xa4, 0xf0, 0x9f, 0x98, 0x80); /* a surrogate pair */
    EXPECT_MP("\"a\\u0000b\"", 0xa3, 'a', 0x00, 'b');              /* NUL is allowed */
    EXPECT_JSON("\"a\\u0000b\"", 0xa3, 'a', 0x00, 'b');
}

static void test_escapes(void **state) {
    (void)state;
    EXPECT_JSON("\"t\\tn\\n\\\"\"", 0xa5, 't', '\t', 'n', '\n', '"');
    round_trip("\"back\\\\slash \\\"quoted\\\" \\u0001\"");
}

static void test_bytes(void **state) {
    (void)state;
    /* bin prints as $bytes, and $bytes reads back as bin */
    EXPECT_JSON("{\"$bytes\":\"AAEC\"}", 0xc4, 0x03, 0x00, 0x01, 0x02);
    EXPECT_MP("{\"$bytes\":\"AAEC\"}", 0xc4, 0x03, 0x00, 0x01, 0x02);
    EXPECT_JSON("{\"$bytes\":\"\"}", 0xc4, 0x00);
    EXPECT_MP("{\"$bytes\":\"\"}", 0xc4, 0x00);
    EXPECT_JSON("{\"$bytes\":\"/w==\"}", 0xc4, 0x01, 0xff);
    EXPECT_JSON("{\"$bytes\":\"//8=\"}", 0xc4, 0x02, 0xff, 0xff);
    EXPECT_MP("{\"$bytes\":\"/w==\"}", 0xc4, 0x01, 0xff);
    EXPECT_MP("{\"$bytes\":\"/w\"}", 0xc4, 0x01, 0xff); /* padding may be left off */
    EXPECT_MP("{\"$bytes\":\"//8\"}", 0xc4, 0x02, 0xff, 0xff);
    EXPECT_MP("[{\"$bytes\":\"AA==\"},{\"k\":{\"$bytes\":\"AA==\"}}]", 0x92, 0xc4, 0x01, 0x00, 0x81,
              0xa1, 'k', 0xc4, 0x01, 0x00);
    round_trip("{\"$bytes\":\"SGVsbG8sIHdvcmxkIQ==\"}");
    round_trip("[{\"$bytes\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g\"}]");

    /* a bin longer than 255 bytes takes a bin16 header */
    uint8_t big[3 + 300];
    big[0] = 0xc5, big[1] = 0x01, big[2] = 0x2c;
    for (int i = 0; i < 300; i++)
        big[3 + i] = (uint8_t)i;
    char *out;
    char err[256];
    assert_int_equal(cli_msgpack_to_json(big, sizeof big, 1, &out, err, sizeof err), 0);
    void *mp;
    size_t len;
    assert_int_equal(cli_json_to_msgpack(out, &mp, &len, err, sizeof err), 0);
    assert_int_equal(len, sizeof big);
    assert_memory_equal(mp, big, sizeof big);
    free(mp);
    free(out);

    /* a str that is not UTF-8 cannot be a JSON string: it shows as its bytes */
    EXPECT_JSON("{\"$bytes\":\"//4=\"}", 0xa2, 0xff, 0xfe);
    EXPECT_JSON("[\"ok\",{\"$bytes\":\"wCg=\"}]", 0x92, 0xa2, 'o', 'k', 0xa2, 0xc0, 0x28);

    /* other shapes are ordinary maps */
    EXPECT_MP("{\"$bytes\":1}", 0x81, 0xa6, '$', 'b', 'y', 't', 'e', 's', 0x01);
    EXPECT_MP("{\"$bytes\":\"AA==\",\"x\":1}", 0x82, 0xa6, '$', 'b', 'y', 't', 'e', 's', 0xa4, 'A',
              'A', '=', '=', 0xa1, 'x', 0x01);
    EXPECT_MP("{\"bytes\":\"AA==\"}", 0x81, 0xa5, 'b', 'y', 't', 'e', 's', 0xa4, 'A', 'A', '=',
              '=');
}

static void test_bad_base64(void **state) {
    (void)state;
    const char *bad[] = {
        "{\"$bytes\":\"A\"}",       "{\"$bytes\":\"AAAAA\"}", "{\"$bytes\":\"AA=A\"}",
        "{\"$bytes\":\"A*BC\"}",    "{\"$bytes\":\"AA EC\"}", "{\"$bytes\":\"AAEC\\n\"}",
        "{\"$bytes\":\"====\"}",    "{\"$bytes\":\"A===\"}",  "{\"$bytes\":\"AA=\"}",
        "{\"$bytes\":\"-_-_\"}",    "[1,{\"$bytes\":\"!\"}]", "{\"$bytes\":\"AA\\u0000A\"}",
        "{\"$bytes\":\"\\u00e9\"}",
    };
    char err[256];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        expect_json_error(bad[i], err, sizeof err);
        assert_non_null(strstr(err, "base64"));
    }
    still_works();
}

static void test_ext(void **state) {
    (void)state;
    EXPECT_JSON("{\"$ext\":5,\"$bytes\":\"Kg==\"}", 0xd4, 0x05, 0x2a);
    EXPECT_JSON("{\"$ext\":-1,\"$bytes\":\"AQID\"}", 0xc7, 0x03, 0xff, 0x01, 0x02, 0x03);
    EXPECT_JSON("{\"$ext\":1,\"$bytes\":\"\"}", 0xc7, 0x00, 0x01);
    EXPECT_MP("{\"$ext\":5,\"$bytes\":\"Kg==\"}", 0xd4, 0x05, 0x2a);
    EXPECT_MP("{\"$bytes\":\"Kg==\",\"$ext\":5}", 0xd4, 0x05, 0x2a);
    EXPECT_MP("{\"$ext\":-1,\"$bytes\":\"AQID\"}", 0xc7, 0x03, 0xff, 0x01, 0x02, 0x03);
    EXPECT_MP("{\"$ext\":-1,\"$bytes\":\"AAAAAA==\"}", 0xd6, 0xff, 0x00, 0x00, 0x00, 0x00);
    EXPECT_MP("{\"$ext\":127,\"$bytes\":\"\"}", 0xc7, 0x00, 0x7f);
    round_trip("{\"$ext\":-128,\"$bytes\":\"AAAAAAAAAAAAAAAAAAAAAA==\"}"); /* fixext 16 */
    round_trip("{\"$ext\":3,\"$bytes\":\"AAECAwQFBgc=\"}");                /* fixext 8 */

    char err[256];
    expect_json_error("{\"$ext\":128,\"$bytes\":\"\"}", err, sizeof err);
    assert_non_null(strstr(err, "128"));
    expect_json_error("{\"$ext\":-129,\"$bytes\":\"\"}", err, sizeof err);
    expect_json_error("{\"$ext\":1,\"$bytes\":\"A\"}", err, sizeof err);
    /* not the shape: a map */
    EXPECT_MP("{\"$ext\":\"x\",\"$bytes\":\"\"}", 0x82, 0xa4, '$', 'e', 'x', 't', 0xa1, 'x', 0xa6,
              '$', 'b', 'y', 't', 'e', 's', 0xa0);
    EXPECT_MP("{\"$ext\":1.5,\"$bytes\":\"\"}", 0x82, 0xa4, '$', 'e', 'x', 't', 0xcb, 0x3f, 0xf8, 0,
              0, 0, 0, 0, 0, 0xa6, '$', 'b', 'y', 't', 'e', 's', 0xa0);
    still_works();
}

static void test_non_string_keys(void **state) {
    (void)state;
    /* {1: "a", [1,2]: true} */
    EXPECT_JSON("{\"1\":\"a\",\"[1,2]\":true}", 0x82, 0x01, 0xa1, 'a', 0x92, 0x01, 0x02, 0xc3);
    /* nil, false, -1.5, a bin and a map as keys */
    EXPECT_JSON("{\"null\":1,\"false\":2,\"-1.5\":3,\"{\\\"$bytes\\\":\\\"AA==\\\"}\":4,"
                "\"{\\\"k\\\":[]}\":5}",
                0x85, 0xc0, 0x01, 0xc2, 0x02, 0xcb, 0xbf, 0xf8, 0, 0, 0, 0, 0, 0, 0x03, 0xc4, 0x01,
                0x00, 0x04, 0x81, 0xa1, 'k', 0x90, 0x05);
    /* a str key that is not UTF-8 is named by its $bytes form */
    EXPECT_JSON("{\"{\\\"$bytes\\\":\\\"/w==\\\"}\":0}", 0x81, 0xa1, 0xff, 0x00);
    /* a key with NUL in it survives */
    EXPECT_JSON("{\"a\\u0000b\":1}", 0x81, 0xa3, 'a', 0x00, 'b', 0x01);
    /* keys that render alike would collide: the map is then $map pairs, each key itself */
    EXPECT_JSON("{\"$map\":[[1,\"first\"],[\"1\",\"second\"]]}", 0x82, 0x01, 0xa5, 'f', 'i', 'r',
                's', 't', 0xa1, '1', 0xa6, 's', 'e', 'c', 'o', 'n', 'd');
    round_trip("{\"$map\":[[1,\"first\"],[\"1\",\"second\"]]}");
    /* the jansson form gives the same keys */
    const uint8_t mp[] = {0x82, 0x07, 0xa1, 'a', 0xa1, 'b', 0x92, 0x01, 0x02};
    char err[256];
    json_t *j = cli_msgpack_to_jansson(mp, sizeof mp, err, sizeof err);
    assert_non_null(j);
    assert_true(json_is_object(j));
    assert_string_equal(json_string_value(json_object_get(j, "7")), "a");
    assert_int_equal(json_array_size(json_object_get(j, "b")), 2);
    json_decref(j);
}

/* A map shaped like $bytes, $ext or $map would read back as what it is not: it prints as
 * $map pairs instead, and {"$map": pairs} typed in is a map with whatever keys it names. */
static void test_map_pairs(void **state) {
    (void)state;
    /* {"$bytes": "AAD="} as a map of one str: not bin [0, 0] */
    EXPECT_JSON("{\"$map\":[[\"$bytes\",\"AAD=\"]]}", 0x81, 0xa6, '$', 'b', 'y', 't', 'e', 's',
                0xa4, 'A', 'A', 'D', '=');
    round_trip("{\"$map\":[[\"$bytes\",\"AAD=\"]]}");
    /* {"$ext": 1, "$bytes": ""} as a map */
    EXPECT_JSON("{\"$map\":[[\"$ext\",1],[\"$bytes\",\"\"]]}", 0x82, 0xa4, '$', 'e', 'x', 't', 0x01,
                0xa6, '$', 'b', 'y', 't', 'e', 's', 0xa0);
    /* {"$map": [[1, 2]]} as a map of one key "$map" */
    EXPECT_JSON("{\"$map\":[[\"$map\",[[1,2]]]]}", 0x81, 0xa4, '$', 'm', 'a', 'p', 0x91, 0x92, 0x01,
                0x02);
    round_trip("{\"$map\":[[\"$map\",[[1,2]]]]}");
    /* near misses stay objects */
    EXPECT_JSON("{\"$map\":[1]}", 0x81, 0xa4, '$', 'm', 'a', 'p', 0x91, 0x01);
    EXPECT_JSON("{\"$bytes\":1}", 0x81, 0xa6, '$', 'b', 'y', 't', 'e', 's', 0x01);
    EXPECT_MP("{\"$map\":[[1,2],3]}", 0x81, 0xa4, '$', 'm', 'a', 'p', 0x92, 0x92, 0x01, 0x02, 0x03);
    EXPECT_MP("{\"$map\":[],\"x\":1}", 0x82, 0xa4, '$', 'm', 'a', 'p', 0x90, 0xa1, 'x', 0x01);
    /* typed in: any keys, in order, nested values packed as usual */
    EXPECT_MP("{\"$map\":[[1,\"a\"],[[1,2],{\"$bytes\":\"AA==\"}],[null,{\"k\":true}]]}", 0x83,
              0x01, 0xa1, 'a', 0x92, 0x01, 0x02, 0xc4, 0x01, 0x00, 0xc0, 0x81, 0xa1, 'k', 0xc3);
    EXPECT_MP("{\"$map\":[]}", 0x80);
    /* a map level for the depth limit: 31 arrays and a $map fit, 32 and a $map do not */
    char text[200], err[256];
    snprintf(text, sizeof text, "%.*s{\"$map\":[[1,2]]}%.*s", 31,
             "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", 31, "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    void *mp;
    size_t len;
    assert_int_equal(cli_json_to_msgpack(text, &mp, &len, err, sizeof err), 0);
    free(mp);
    snprintf(text, sizeof text, "%.*s{\"$map\":[[1,2]]}%.*s", 32,
             "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", 32, "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    expect_json_error(text, err, sizeof err);
    assert_non_null(strstr(err, "nested deeper"));
    still_works();
}

static void test_invalid_json(void **state) {
    (void)state;
    const char *bad[] = {
        "",    "   ",     "[1,",        "[1,]",           "{\"a\"}",     "{a:1}",    "x",
        "'x'", "1 2",     "[1] x",      "\"unterminated", "NaN",         "Infinity", "01",
        "+1",  "\"\\x\"", "{\"a\":1,}", "[\"\xff\"]",     "\"\\ud800\"", "tru",      "nul"};
    char err[256];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        expect_json_error(bad[i], err, sizeof err);
        assert_non_null(strstr(err, "JSON: "));
    }
    /* the position of the error is given */
    expect_json_error("[1, x]", err, sizeof err);
    assert_non_null(strstr(err, "line 1 column"));
    /* integers beyond int64 are refused and say why */
    expect_json_error("18446744073709551616", err, sizeof err);
    assert_non_null(strstr(err, "int64"));
    expect_json_error("[-9223372036854775809]", err, sizeof err);
    assert_non_null(strstr(err, "int64"));
    expect_json_error("1e400", err, sizeof err);
    /* nesting: jansson's parser stops at 2048 levels; msgpack values, and so the packer, at
     * 32 (deeper would pack into bytes that libmpb, the broker and the printer all refuse) */
    char deep[6001];
    memset(deep, '[', 3000);
    memset(deep + 3000, ']', 3000);
    deep[6000] = '\0';
    expect_json_error(deep, err, sizeof err);
    expect_json_error(deep + 1000, err, sizeof err); /* 2000 '[' then 3000 ']' */
    deep[3000 + 2000] = '\0';                        /* 2000 of each */
    expect_json_error(deep + 1000, err, sizeof err);
    assert_non_null(strstr(err, "nested deeper than 32"));
    deep[3000 + 33] = '\0'; /* 33 of each */
    expect_json_error(deep + 3000 - 33, err, sizeof err);
    assert_non_null(strstr(err, "nested deeper than 32"));
    expect_json_error("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[{\"a\":1}]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
                      err, sizeof err);
    deep[3000 + 32] = '\0'; /* 32 of each */
    void *dmp;
    size_t dlen;
    assert_int_equal(cli_json_to_msgpack(deep + 3000 - 32, &dmp, &dlen, err, sizeof err), 0);
    assert_int_equal(dlen, 32);
    free(dmp);
    /* bytes are not a level: {"$bytes"} at the deepest place packs (as bin) */
    EXPECT_MP(
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[{\"$bytes\":\"AA==\"}]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91,
        0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91,
        0x91, 0x91, 0xc4, 0x01, 0x00);
    /* no input, and no room for a reason, are no crash */
    void *mp = (void *)1;
    size_t len = 1;
    assert_int_equal(cli_json_to_msgpack(NULL, &mp, &len, err, sizeof err), -1);
    assert_null(mp);
    assert_int_equal(cli_json_to_msgpack("[", &mp, &len, NULL, 0), -1);
    assert_int_equal(cli_json_to_msgpack("[", &mp, &len, err, 1), -1);
    assert_string_equal(err, "");
    /* a small err buffer gets a truncated, terminated reason */
    char small[8];
    memset(small, 'x', sizeof small);
    assert_int_equal(cli_json_to_msgpack("[", &mp, &len, small, sizeof small), -1);
    assert_int_equal(strlen(small), sizeof small - 1);
    still_works();
}

static void test_bad_msgpack(void **state) {
    (void)state;
    EXPECT_MP_ERROR(0xdd, 0xff, 0xff, 0xff, 0xff); /* array32 header, no elements */
    EXPECT_MP_ERROR(0xdf, 0xff, 0xff, 0xff, 0xff); /* map32 header, no entries */
    EXPECT_MP_ERROR(0xdb, 0xff, 0xff, 0xff, 0xff); /* str32 header, no bytes */
    EXPECT_MP_ERROR(0xc6, 0x7f, 0xff, 0xff, 0xff, 0x00);
    EXPECT_MP_ERROR(0xc9, 0xff, 0xff, 0xff, 0xff, 0x01);
    EXPECT_MP_ERROR(0xa3, 'a', 'b');   /* truncated str */
    EXPECT_MP_ERROR(0x92, 0x01);       /* truncated array */
    EXPECT_MP_ERROR(0x81, 0xa1, 'a');  /* map without its value */
    EXPECT_MP_ERROR(0xcb, 0x3f, 0xf8); /* truncated float64 */
    EXPECT_MP_ERROR(0xcd, 0x01);       /* truncated uint16 */
    EXPECT_MP_ERROR(0xd8, 0x01, 0x00); /* truncated fixext 16 */
    EXPECT_MP_ERROR(0xc1);             /* never used */
    EXPECT_MP_ERROR(0x91, 0xc1);
    EXPECT_MP_ERROR(0x91, 0x01, 0x02); /* trailing bytes */
    EXPECT_MP_ERROR(0x01, 0x01);
    EXPECT_MP_ERROR(0xc0, 0x00);
    EXPECT_MP_ERROR(0x80, 0xdd, 0xff, 0xff, 0xff, 0xff);

    char *out = (char *)1;
    char err[256] = "";
    assert_int_equal(cli_msgpack_to_json("", 0, 1, &out, err, sizeof err), -1); /* empty */
    assert_null(out);
    assert_true(strlen(err) > 0);
    assert_int_equal(cli_msgpack_to_json(NULL, 0, 0, &out, NULL, 0), -1);
    assert_null(cli_msgpack_to_jansson(NULL, 5, err, sizeof err));

    /* the trailing-bytes reason says so */
    const uint8_t trail[] = {0x01, 0xc0, 0xc0};
    assert_int_equal(cli_msgpack_to_json(trail, sizeof trail, 1, &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "2 trailing bytes"));
    still_works();
}

/* Nesting as deep as the broker accepts (32) prints; one more is refused, not recursed into. */
static void test_depth(void **state) {
    (void)state;
    uint8_t mp[64];
    char want[256];
    for (int depth = 1; depth <= 33; depth++) {
        size_t n = 0, w = 0;
        for (int i = 0; i < depth; i++)
            mp[n++] = 0x91, want[w++] = '[';
        mp[n++] = 0x07;
        want[w++] = '7';
        for (int i = 0; i < depth; i++)
            want[w++] = ']';
        want[w] = '\0';
        if (depth <= 32)
            expect_json(mp, n, want);
        else
            expect_mp_error(mp, n);
    }
    /* and the same depth made from JSON reads back */
    char text[80];
    memset(text, '[', 32);
    memcpy(text + 32, "1,2", 3);
    memset(text + 35, ']', 32);
    text[67] = '\0';
    round_trip(text);
    still_works();
}

static void test_nan_and_floats(void **state) {
    (void)state;
    EXPECT_JSON("\"NaN\"", 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0);
    EXPECT_JSON("\"NaN\"", 0xcb, 0xff, 0xf8, 0, 0, 0, 0, 0, 0x01); /* any NaN */
    EXPECT_JSON("\"Infinity\"", 0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0);
    EXPECT_JSON("\"-Infinity\"", 0xcb, 0xff, 0xf0, 0, 0, 0, 0, 0, 0);
    EXPECT_JSON("\"NaN\"", 0xca, 0x7f, 0xc0, 0x00, 0x00);
    EXPECT_JSON("\"-Infinity\"", 0xca, 0xff, 0x80, 0x00, 0x00);
    EXPECT_JSON("[1.5,\"NaN\",null]", 0x93, 0xca, 0x3f, 0xc0, 0x00, 0x00, 0xca, 0x7f, 0xc0, 0x00,
                0x00, 0xc0);
    EXPECT_JSON("{\"x\":\"Infinity\"}", 0x81, 0xa1, 'x', 0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0);
    EXPECT_JSON("-0.0", 0xcb, 0x80, 0, 0, 0, 0, 0, 0, 0);
    EXPECT_JSON("1.5", 0xca, 0x3f, 0xc0, 0x00, 0x00); /* float32 */
    EXPECT_JSON("1.0", 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0);
    /* reals print in their shortest exact form, not jansson's 17 digits */
    EXPECT_JSON("0.1", 0xcb, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a);
    /* one precision serves a whole document: exact for both, shortest for the longer one */
    EXPECT_JSON("[0.10000000000000001,0.30000000000000004]", 0x92, 0xcb, 0x3f, 0xb9, 0x99, 0x99,
                0x99, 0x99, 0x99, 0x9a, 0xcb, 0x3f, 0xd3, 0x33, 0x33, 0x33, 0x33, 0x33, 0x34);
    round_trip("[0.5,3.14159,1e-7,123456789.125]");
    round_trip("{\"x\":0.3,\"y\":[2.5e100]}");
    EXPECT_MP("-0.0", 0xcb, 0x80, 0, 0, 0, 0, 0, 0, 0);
    EXPECT_MP("1e-300", 0xcb, 0x01, 0xa5, 0x6e, 0x1f, 0xc2, 0xf8, 0xf3, 0x59);
}

static void test_jansson_value(void **state) {
    (void)state;
    const uint8_t mp[] = {0x83, 0xa1, 'n', 0x2a, 0xa1, 'b', 0xc4, 0x01, 0x00, 0xa1, 's', 0xa1, 'x'};
    char err[256];
    json_t *j = cli_msgpack_to_jansson(mp, sizeof mp, err, sizeof err);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "n")), 42);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "b"), "$bytes")),
                        "AA==");
    assert_string_equal(json_string_value(json_object_get(j, "s")), "x");
    /* a caller embeds it in a bigger document */
    json_t *doc = json_pack("{s:o}", "value", j);
    char *s = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(s, "{\"value\":{\"n\":42,\"b\":{\"$bytes\":\"AA==\"},\"s\":\"x\"}}");
    free(s);
    json_decref(doc);

    const uint8_t one[] = {0x07};
    j = cli_msgpack_to_jansson(one, 1, err, sizeof err);
    assert_true(json_is_integer(j));
    json_decref(j);
}

/* A small deterministic generator, so a failure replays. */
static uint32_t rng_state = 0x2545f491u;
static uint32_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* Nothing crashes or leaks (ASan checks): every prefix of a rich value, every single-byte
 * corruption of it, and random bytes biased towards headers. */
static void test_never_crashes(void **state) {
    (void)state;
    const char *rich = "{\"a\":[1,-2,3.5,null,true,false,\"str\",{\"$bytes\":\"AAECAw==\"}],"
                       "\"b\":{\"c\":{\"d\":[[],{}]}},\"e\":{\"$ext\":4,\"$bytes\":\"AQ==\"},"
                       "\"f\":-9223372036854775808,\"g\":\"\xc3\xa9\"}";
    void *mpv;
    size_t len;
    char err[256];
    assert_int_equal(cli_json_to_msgpack(rich, &mpv, &len, err, sizeof err), 0);
    uint8_t *mp = mpv;
    char *out;
    assert_int_equal(cli_msgpack_to_json(mp, len, 0, &out, err, sizeof err), 0);
    free(out);
    for (size_t n = 0; n < len; n++) { /* each proper prefix is truncated */
        assert_int_equal(cli_msgpack_to_json(mp, n, 1, &out, err, sizeof err), -1);
    }
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    for (size_t i = 0; i < len; i++) {
        for (int v = 0; v < 256; v += 7) {
            memcpy(copy, mp, len);
            copy[i] = (uint8_t)v;
            if (cli_msgpack_to_json(copy, len, 1, &out, err, sizeof err) == 0) free(out);
        }
    }
    free(copy);
    free(mp);

    static const uint8_t heads[] = {0x91, 0x92, 0x81, 0xdc, 0xdd, 0xde, 0xdf, 0xc4, 0xc5,
                                    0xc6, 0xc7, 0xd4, 0xd8, 0xd9, 0xdb, 0xa3, 0xca, 0xcb,
                                    0xcf, 0xd3, 0xff, 0x00, 0xc1, 0x7f, 0x80, 0x90, 0xa0};
    uint8_t buf[48];
    int ok = 0;
    for (int iter = 0; iter < 50000; iter++) {
        size_t n = 1 + rng() % sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = (rng() & 1) ? heads[rng() % sizeof heads] : (uint8_t)rng();
        if (cli_msgpack_to_json(buf, n, (int)(iter & 1), &out, err, sizeof err) == 0) {
            ok++;
            /* whatever printed must parse as JSON and pack again */
            void *again;
            size_t alen;
            int rc = cli_json_to_msgpack(out, &again, &alen, err, sizeof err);
            if (rc != 0) print_error("%s: %s\n", out, err);
            assert_int_equal(rc, 0);
            free(again);
            free(out);
        }
    }
    assert_true(ok > 0);
    still_works();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_bytes),
        cmocka_unit_test(test_scalars_round_trip),
        cmocka_unit_test(test_int64_limits),
        cmocka_unit_test(test_nested_and_indent),
        cmocka_unit_test(test_object_order_preserved),
        cmocka_unit_test(test_unicode),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_bad_base64),
        cmocka_unit_test(test_ext),
        cmocka_unit_test(test_non_string_keys),
        cmocka_unit_test(test_map_pairs),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_bad_msgpack),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_nan_and_floats),
        cmocka_unit_test(test_jansson_value),
        cmocka_unit_test(test_never_crashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

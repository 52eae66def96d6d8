/* hello.c - a program from outside the tree, built against the INSTALLED libmpb (by run.sh,
 * through pkg-config and through find_package(mpb)). It needs no broker: it checks that the
 * header and library agree and that the basic calls link and work. Exits 0 only if all do. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <mpb/mpb.h>

static int failures;

static void check(int ok, const char *what) {
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) failures++;
}

int main(void) {
    /* The shared object we run against is the one whose header we compiled with. */
    unsigned v = mpb_version();
    printf("libmpb %u.%u.%u (header %d.%d.%d)\n", v >> 16, (v >> 8) & 0xff, v & 0xff,
           MPB_VERSION_MAJOR, MPB_VERSION_MINOR, MPB_VERSION_PATCH);
    check(v == MPB_VERSION_HEX, "mpb_version() == MPB_VERSION_HEX");

    const char *s = mpb_strerror(MPB_ENOKEY);
    printf("mpb_strerror(MPB_ENOKEY) = \"%s\"\n", s ? s : "(null)");
    check(s && strcmp(s, "no such key") == 0, "mpb_strerror(MPB_ENOKEY)");

    const int64_t samples[] = {0, 1, -1, 127, -33, 65536, INT64_MIN, INT64_MAX, -1234567890123};
    int packed_ok = 1;
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        uint8_t buf[MPB_PACK_MAX_SCALAR];
        size_t n = mpb_pack_i64(buf, samples[i]);
        int64_t back = 0;
        if (n == 0 || n > sizeof buf || mpb_unpack_i64(buf, n, &back) != 0 || back != samples[i])
            packed_ok = 0;
    }
    check(packed_ok, "mpb_pack_i64 / mpb_unpack_i64 round trip");

    /* Nothing listens on port 1: the connect must give up after ~200 ms with MPB_ECONN. */
    mpb_options_t o;
    mpb_options_init(&o);
    o.connect_timeout_ms = 200;
    mpb_client_t *c = NULL;
    int rc = mpb_connect("tcp://127.0.0.1:1", "key", 3, &o, &c);
    printf("mpb_connect(tcp://127.0.0.1:1) = %d (%s): %s\n", rc, mpb_strerror(rc),
           c ? mpb_errmsg(c) : "(no client)");
    check(rc == MPB_ECONN, "mpb_connect to an unreachable endpoint gives MPB_ECONN");
    mpb_close(&c);
    check(c == NULL, "mpb_close sets the handle to NULL");

    printf("%s\n", failures ? "hello: FAILED" : "hello: all ok");
    return failures ? 1 : 0;
}

/* interop.c - the C side of test_interop.py: reads or writes a dict key through libmpb, on the
 * broker in MPB_ENDPOINT with the key from MPB_AUTHKEY_FILE / MPB_AUTHKEY.
 *
 *   interop read DICT KEY        prints "int N", "str TEXT", "float X", "ext TYPE LEN" or
 *                                "other LEN" for the value under KEY (a str key)
 *   interop write DICT KEY N     sets KEY to the integer N and KEY_s to the string "from C"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpb/mpb.h>

/* The ext type and data length of a msgpack ext value, or -1 when it is not one. */
static int ext_of(const unsigned char *v, size_t n, int *type, size_t *len) {
    static const size_t fix[] = {1, 2, 4, 8, 16};
    if (n >= 2 && v[0] >= 0xd4 && v[0] <= 0xd8) {
        *len = fix[v[0] - 0xd4];
        *type = (signed char)v[1];
        return 0;
    }
    size_t hb = v[0] == 0xc7 ? 1 : v[0] == 0xc8 ? 2 : v[0] == 0xc9 ? 4 : 0;
    if (!hb || n < 2 + hb) return -1;
    *len = 0;
    for (size_t i = 0; i < hb; i++)
        *len = (*len << 8) | v[1 + i];
    *type = (signed char)v[1 + hb];
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4 || (strcmp(argv[1], "read") && strcmp(argv[1], "write")) ||
        (!strcmp(argv[1], "write") && argc < 5)) {
        fprintf(stderr, "usage: interop read DICT KEY | interop write DICT KEY N\n");
        return 2;
    }
    const char *ep = getenv("MPB_ENDPOINT");
    void *key;
    size_t keylen;
    char err[256];
    if (!ep || mpb_authkey_load(NULL, &key, &keylen, err, sizeof err)) {
        fprintf(stderr, "interop: set MPB_ENDPOINT and MPB_AUTHKEY_FILE\n");
        return 2;
    }
    mpb_client_t *c = NULL;
    mpb_dict_t *d = NULL;
    int rc = mpb_connect(ep, key, keylen, NULL, &c);
    mpb_free(key);
    if (!rc) rc = mpb_dict_open(c, argv[2], &d);
    if (!rc && !strcmp(argv[1], "write")) {
        char ks[300];
        snprintf(ks, sizeof ks, "%s_s", argv[3]);
        rc = mpb_dict_set_i64(d, argv[3], strtoll(argv[4], NULL, 10));
        if (!rc) rc = mpb_dict_set_str(d, ks, "from C");
    } else if (!rc) {
        void *k, *v;
        size_t kn = mpb_pack_str(argv[3], strlen(argv[3]), &k), vn;
        rc = kn ? mpb_dict_get(d, k, kn, &v, &vn) : MPB_ENOMEM;
        mpb_free(k);
        if (!rc) {
            int64_t i;
            double x;
            const char *s;
            size_t sn, en;
            int et;
            if (!mpb_unpack_i64(v, vn, &i))
                printf("int %lld\n", (long long)i);
            else if (!mpb_unpack_str(v, vn, &s, &sn))
                printf("str %.*s\n", (int)sn, s);
            else if (!mpb_unpack_double(v, vn, &x))
                printf("float %g\n", x);
            else if (!ext_of(v, vn, &et, &en))
                printf("ext %d %zu\n", et, en);
            else
                printf("other %zu\n", vn);
            mpb_free(v);
        }
    }
    if (rc) fprintf(stderr, "interop: %s\n", c ? mpb_errmsg(c) : mpb_strerror(rc));
    mpb_dict_close(&d);
    mpb_close(&c);
    return rc ? 1 : 0;
}

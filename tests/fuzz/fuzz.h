/* fuzz.h - what each harness in tests/fuzz/ provides. LLVMFuzzerTestOneInput() is libFuzzer's
 * entry point: it accepts any bytes and aborts (through FZ_CHECK) only when a property of the
 * code under test fails. It returns 0 for an input that got past the first gates and -1 for
 * one that did not: libFuzzer then leaves it out of its corpus, and driver.c, which has no
 * coverage to go by, mutates only the former. fz_seeds() and fz_tokens feed driver.c, which
 * runs a harness under ctest without libFuzzer: seeds, then random and mutated inputs, seeded
 * and bounded. */
#ifndef MPB_FUZZ_H
#define MPB_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

/* Calls add once per seed input; the driver copies each. */
void fz_seeds(void (*add)(const void *p, size_t n));

/* Byte strings the driver's mutator splices in (msgpack headers, JSON tokens); the list ends
 * with {NULL, 0}. FZ_TOK("\xcc\x00") keeps the NULs that a C string would lose. */
typedef struct fz_token {
    const char *p;
    size_t n;
} fz_token_t;
#define FZ_TOK(s)                                                                                  \
    { s, sizeof s - 1 }
extern const fz_token_t fz_tokens[];

/* Calls add on each of the n byte strings at t: seeds written out byte by byte. */
static inline void fz_add_each(void (*add)(const void *p, size_t n), const fz_token_t *t,
                               size_t n) {
    for (size_t i = 0; i < n; i++)
        add(t[i].p, t[i].n);
}

/* A failed property: says which, and aborts (the driver then saves the input). */
#define FZ_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: property failed: ", __FILE__, __LINE__);                       \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif

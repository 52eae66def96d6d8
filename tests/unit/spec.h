/* spec.h - readers of the byte-exact examples in proto/PROTOCOL.md (path MPB_PROTOCOL_MD, given
 * by the build), so the unit tests check the specification as it is written, not a copy. */
#ifndef MPB_TEST_SPEC_H
#define MPB_TEST_SPEC_H

#include <stddef.h>
#include <stdint.h>

/* The bytes of the first ``` block after the first line that contains after: on each line of
 * the block, the two-digit hex tokens it begins with (what follows, a comment, is skipped).
 * Returns how many; fails the test if there is no such block or it holds more than cap. */
size_t spec_block_hex(const char *after, uint8_t *out, size_t cap);
/* The n bytes written in hex after name on the first line that starts with name, past the
 * first line that contains after (a "(note)" between name and the hex is skipped). Fails the
 * test if there is none. */
void spec_named_hex(const char *after, const char *name, uint8_t *out, size_t n);

#endif

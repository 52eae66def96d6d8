/* table.h - the broker's one hash table idiom: uthash, hashing with the keyed SipHash
 * (mpb__hash) because routing ids and other keys come from clients. Include this instead of
 * <uthash.h>. */
#ifndef BROKER_TABLE_H
#define BROKER_TABLE_H

#include "util.h"

#define HASH_FUNCTION(keyptr, keylen, hashv) ((hashv) = (unsigned)mpb__hash((keyptr), (keylen)))
#define uthash_malloc(sz)                    xmalloc(sz) /* cannot fail: see util.h */
#include <uthash.h>

#endif

/* store.h - the named objects: one insertion-ordered map from name to object. */
#ifndef BROKER_STORE_H
#define BROKER_STORE_H

#include "obj.h"

void store_init(void);
void store_free(void);
/* The object called name, or NULL. */
obj_t *store_get(const char *name, size_t n);
/* Creates a new object (the name must be absent). */
obj_t *store_create(kind_t kind, const char *name, size_t n);
void store_delete(obj_t *o);
/* Puts o (same name) in the place of old and frees old (an anonymous old: anon_moved first). */
void store_replace(obj_t *old, obj_t *o);
size_t store_count(void);
size_t store_count_kind(kind_t k);
const omap_t *store_map(void);
uint64_t obj_size(const obj_t *o);
void obj_free(obj_t *o);

/* Whether o has waiters or holders: such an object cannot be deleted (why: who). */
bool obj_busy(const obj_t *o, char *why, size_t n);
/* Answers every call parked on o with code and msg (o is being deleted whatever waits). */
void obj_fail_all(obj_t *o, int code, const char *msg);
/* A new object that is in no store (dict.copy builds one before it takes a name's place). */
obj_t *obj_new(kind_t kind, const char *name, size_t n);
/* Calls fn for every object store_delete() deletes, before it is freed (sessions forget
 * their holds on it, the anonymous objects their references); fn once however often. */
void store_on_delete(void (*fn)(obj_t *o));

#endif

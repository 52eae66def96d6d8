/* anon.h - anonymous objects: obj.new, obj.ref, obj.unref (anon.c). */
#ifndef BROKER_ANON_H
#define BROKER_ANON_H

#include "obj.h"

int cmd_obj_new(req_t *r);
int cmd_obj_ref(req_t *r);
int cmd_obj_unref(req_t *r);
/* Names starting with '~' are the broker's: only obj.new makes an object so called. */
static inline bool anon_name(const char *name, size_t n) {
    return n > 0 && name[0] == '~';
}
/* A session ends: each of its references is given back (deleting what nobody else holds). */
void anon_sess_end(sess_t *s);
/* Deletes the anonymous objects whose grace period has passed. */
void anon_reap(int64_t now);
/* o takes old's place in the store (dict.copy onto it): its references come along. */
void anon_moved(obj_t *old, obj_t *o);
/* o is being deleted (by anyone): forget it in the reference tables. */
void anon_forget(obj_t *o);
/* obj.info's extra pairs for an anonymous object: refs, holders, delete_in_ms. */
uint32_t anon_describe(const obj_t *o, mpb__buf_t *b);
/* For info and /metrics. */
size_t anon_count(void);
uint64_t anon_refs_total(void);
extern uint64_t g_anon_deleted;
/* After a restart: o came from the snapshot (a '~' name); s held n references on o (-1 if o
 * is no anonymous object or n makes no sense); o's deletion was logged; and when all is
 * loaded, what nobody holds is doomed afresh (0 refs at the crash: deleted after a grace). */
void anon_loaded(obj_t *o);
int anon_restore_ref(sess_t *s, obj_t *o, int64_t n);
void anon_replay_gone(obj_t *o);
void anon_restore_done(void);

#endif

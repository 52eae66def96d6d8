/* mpb/objects.h - calls on the broker and on objects of any kind: listing, describing and
 * deleting objects, and anonymous objects with their reference counts. */
#ifndef MPB_OBJECTS_H
#define MPB_OBJECTS_H

#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- objects ---------------------------------------------------------------------------- */

/* Object names are 1..255 bytes of printable ASCII without '/' ... see PROTOCOL.md. One name
 * space for all kinds: opening a name as another kind fails with MPB_EKIND. Every
 * mpb_<kind>_open() also takes name NULL, for a new anonymous object, and a handle on one holds
 * a reference to it: see "anonymous objects" below. */

typedef struct mpb_obj_info {
    char kind[16]; /* "dict", "list", ... */
    char name[256];
    uint64_t size; /* items in it */
} mpb_obj_info_t;

/* Lists objects whose "kind/name" matches the glob pattern (NULL or "*": all), a page at a
 * time: start with *cursor = 0; each call fills up to max entries into out (the caller's
 * array), sets *n, and sets *cursor to 0 when there are no more. Objects made or deleted
 * during the listing may or may not appear. */
MPB_EXPORT int mpb_objects(mpb_client_t *c, const char *pattern, uint64_t *cursor,
                           mpb_obj_info_t *out, size_t max, size_t *n);
/* Describes one object as a msgpack map (field names per kind: PROTOCOL.md "obj.info") in a
 * new buffer *map (mpb_free() it). path is "kind/name". MPB_ENOOBJ when there is none,
 * MPB_EKIND when name is of another kind, MPB_EINVAL for a path that is not kind/name. */
MPB_EXPORT int mpb_obj_describe(mpb_client_t *c, const char *path, void **map, size_t *len);
/* Deletes the object "kind/name", with what it holds. MPB_ENOOBJ if absent, MPB_EKIND if it
 * is of another kind, MPB_EBUSY while clients hold it or are blocked on it (a held lock, a
 * queue with blocked getters or putters; mpb_errmsg() says which). Handles on it stay valid:
 * the next write through one makes a new, empty object. */
MPB_EXPORT int mpb_obj_delete(mpb_client_t *c, const char *path);
/* Broker facts as a msgpack map (version, uptime_s, clients, sessions, objects, memory) in a
 * new buffer *map (mpb_free() it). */
MPB_EXPORT int mpb_broker_info(mpb_client_t *c, void **map, size_t *len);

/* ---- anonymous objects ------------------------------------------------------------------
 *
 * Every mpb_<kind>_open() also accepts name NULL, as Python's manager.dict() takes none: the
 * broker makes a new object with a unique name of its own ("~" and 16 hex digits, such as
 * "~3f9a0c2b7d41e865"; read it with mpb_<kind>_name()). Names starting with '~' are reserved:
 * only the broker makes them, so no named open can ever create or collide with one.
 *
 * An anonymous object lives while some session holds a reference to it:
 *   - the handle that made it holds one; opening its name in any session takes another
 *     (mpb_dict_open(c2, "~3f9a...", &d) in the process it was passed to), and so does
 *     mpb_ref(); MPB_ENOOBJ when it is gone;
 *   - mpb_<kind>_close() of such a handle, and mpb_unref(), give one back; mpb_close() and the
 *     end of the session (expiry after its TTL: a killed process) give back all of its own;
 *   - when the last goes, the broker deletes the object after its grace period (the broker's
 *     anon-grace-ms, 5 s by default), unless a reference is taken again meanwhile: a handle
 *     passed through a queue by a process that then closed it can still be opened at the other
 *     end. Calls parked on it are answered MPB_ENOOBJ.
 * _attach() handles take no reference. A handle used after fork belongs to the parent: the
 * child's close of it gives nothing back (open the name again on the child's own client).
 * Named objects have no references and keep their rules. */

/* The handle's object name: NUL-terminated, owned by the handle, valid until it is closed.
 * NULL for a NULL handle. */
MPB_EXPORT const char *mpb_dict_name(const mpb_dict_t *d);
MPB_EXPORT const char *mpb_list_name(const mpb_list_t *l);
MPB_EXPORT const char *mpb_queue_name(const mpb_queue_t *q);
MPB_EXPORT const char *mpb_lock_name(const mpb_lock_t *l); /* also for an RLock's handle */
MPB_EXPORT const char *mpb_semaphore_name(const mpb_semaphore_t *s);
MPB_EXPORT const char *mpb_condition_name(const mpb_condition_t *cv);
MPB_EXPORT const char *mpb_event_name(const mpb_event_t *e);
MPB_EXPORT const char *mpb_barrier_name(const mpb_barrier_t *b);
MPB_EXPORT const char *mpb_value_name(const mpb_value_t *v);
MPB_EXPORT const char *mpb_namespace_name(const mpb_namespace_t *ns);

/* Takes one more reference for this session on the anonymous object kind/name (kind as the
 * wire says it: "dict", "list", "queue", "lock", "rlock", "semaphore", "condition", "event",
 * "barrier", "value", "namespace"; both strings borrowed). Returns the object's reference
 * count after the call (>= 1), or MPB_ENOOBJ (gone, or never was), MPB_EKIND (another kind),
 * MPB_EINVAL (a named object: it has no references; a bad kind or name). */
MPB_EXPORT int64_t mpb_ref(mpb_client_t *c, const char *kind, const char *name);
/* Gives back one of this session's references. Returns the count left (0: the object will be
 * deleted after the grace period unless someone takes a reference), or MPB_EVALUE when this
 * session holds none, or the errors of mpb_ref(). */
MPB_EXPORT int64_t mpb_unref(mpb_client_t *c, const char *kind, const char *name);

#ifdef __cplusplus
}
#endif
#endif

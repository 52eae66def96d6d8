/* anon.c - anonymous objects, as Python's manager.dict() makes them: obj.new gives a new object
 * a name of the broker's own ("~" and 16 hex digits) and a reference to the session that asked;
 * obj.ref and obj.unref take and give back more. The object lives while any session holds a
 * reference, and a short grace period after the last one goes (so that a name passed through a
 * queue by a process that then lets go can still be taken up at the other end); then it is
 * deleted and the calls parked on it are answered ENOOBJ.
 *
 *   sess ── refs ──> [{obj ~3f.., n 2}, {obj ~a1.., n 1}]    what each session keeps alive
 *   obj  ── refs:     the sum over all sessions
 *   doomed ─> [~77.., ~c0..]                                  no reference left: deleted at
 *                                                             their doomed_at unless ref'd */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "persist.h"

static obj_t **doomed;
static size_t ndoomed, capdoomed;
static size_t nanon;
static uint64_t total_refs;
uint64_t g_anon_deleted;

size_t anon_count(void) {
    return nanon;
}

uint64_t anon_refs_total(void) {
    return total_refs;
}

static void undoom(obj_t *o) {
    if (!o->doomed_at) return;
    o->doomed_at = 0;
    for (size_t i = 0; i < ndoomed; i++)
        if (doomed[i] == o) {
            doomed[i] = doomed[--ndoomed];
            return;
        }
}

/* Deletes o whatever waits on it, and with it the RLock that a condition made for itself. */
static void destroy(obj_t *o) {
    char msg[400], lock[300] = "";
    snprintf(msg, sizeof msg, "%s/%s was deleted: its last reference was given back",
             kind_name(o->kind), o->name);
    if (o->kind == KIND_CONDITION && o->u.cond.lock_name &&
        o->u.cond.lock_namelen == o->namelen + 5 &&
        !memcmp(o->u.cond.lock_name, o->name, o->namelen) &&
        !strcmp(o->u.cond.lock_name + o->namelen, ".lock"))
        snprintf(lock, sizeof lock, "%s", o->u.cond.lock_name);
    persist_anon_gone(o);
    log_kv(MPB_LOG_DEBUG, "anonymous object deleted", "kind", kind_name(o->kind), "name", o->name,
           NULL);
    obj_fail_all(o, MPB_ENOOBJ, msg);
    store_delete(o);
    g_anon_deleted++;
    obj_t *lo = lock[0] ? store_get(lock, strlen(lock)) : NULL;
    if (lo && (lo->kind == KIND_LOCK || lo->kind == KIND_RLOCK)) {
        obj_fail_all(lo, MPB_ENOOBJ, msg);
        store_delete(lo);
    }
}

/* o has no reference left: it goes after the grace period, or now if there is none. */
static void doom(obj_t *o) {
    if (g_limits.anon_grace_ms <= 0) {
        destroy(o);
        return;
    }
    o->doomed_at = now_ms() + g_limits.anon_grace_ms;
    if (ndoomed == capdoomed) {
        capdoomed = capdoomed ? capdoomed * 2 : 16;
        doomed = xrealloc(doomed, capdoomed * sizeof *doomed);
    }
    doomed[ndoomed++] = o;
}

void anon_reap(int64_t now) {
    for (size_t i = 0; i < ndoomed;) {
        obj_t *o = doomed[i];
        if (o->doomed_at > now) {
            i++;
            continue;
        }
        destroy(o); /* takes it off the list (anon_forget): look at i again */
    }
    if (!ndoomed) {
        free(doomed);
        doomed = NULL;
        capdoomed = 0;
    }
}

static long sref_find(const sess_t *s, const obj_t *o) {
    for (size_t i = 0; i < s->nrefs; i++)
        if (s->refs[i].obj == o) return (long)i;
    return -1;
}

static void ref_add(sess_t *s, obj_t *o) {
    long i = sref_find(s, o);
    if (i < 0) {
        if (s->nrefs == s->caprefs) {
            s->caprefs = s->caprefs ? s->caprefs * 2 : 4;
            s->refs = xrealloc(s->refs, s->caprefs * sizeof *s->refs);
        }
        s->refs[s->nrefs] = (sref_t){o, 0};
        i = (long)s->nrefs++;
    }
    s->refs[i].n++;
    o->refs++;
    total_refs++;
    undoom(o);
}

void anon_moved(obj_t *old, obj_t *o) {
    o->anon = true;
    o->refs = old->refs;
    o->doomed_at = old->doomed_at;
    for (size_t i = 0; i < ndoomed; i++)
        if (doomed[i] == old) doomed[i] = o;
    for (sess_t *s = sess_all(); s; s = LIST_NEXT(s, link)) {
        long i = sref_find(s, old);
        if (i >= 0) s->refs[i].obj = o;
    }
}

void anon_forget(obj_t *o) {
    if (!o->anon) return;
    undoom(o);
    /* Only obj.delete takes an object that sessions still refer to: the walk is for it. */
    for (sess_t *s = o->refs ? sess_all() : NULL; s; s = LIST_NEXT(s, link)) {
        long i = sref_find(s, o);
        if (i >= 0) s->refs[i] = s->refs[--s->nrefs];
    }
    total_refs -= (uint64_t)o->refs;
    o->refs = 0;
    nanon--;
}

void anon_sess_end(sess_t *s) {
    while (s->nrefs) {
        sref_t e = s->refs[--s->nrefs];
        e.obj->refs -= e.n;
        total_refs -= (uint64_t)e.n;
        if (e.obj->refs == 0) doom(e.obj);
    }
    free(s->refs);
    s->refs = NULL;
    s->caprefs = 0;
}

/* The open op of each kind, whose arguments and reply obj.new passes through. */
static const unsigned open_op[KIND__N] = {
    [KIND_DICT] = MPB_OP_DICT_OPEN,       [KIND_LIST] = MPB_OP_LIST_OPEN,
    [KIND_QUEUE] = MPB_OP_QUEUE_OPEN,     [KIND_LOCK] = MPB_OP_LOCK_OPEN,
    [KIND_RLOCK] = MPB_OP_RLOCK_OPEN,     [KIND_SEMAPHORE] = MPB_OP_SEM_OPEN,
    [KIND_CONDITION] = MPB_OP_COND_OPEN,  [KIND_EVENT] = MPB_OP_EVENT_OPEN,
    [KIND_BARRIER] = MPB_OP_BARRIER_OPEN, [KIND_VALUE] = MPB_OP_VALUE_OPEN,
    [KIND_NAMESPACE] = MPB_OP_NS_OPEN,
};

/* obj.new KIND OPEN-ARGS... -> [name, what KIND.open answers]: a new anonymous object, with
 * one reference for this session. An open that fails leaves nothing behind. */
int cmd_obj_new(req_t *r) {
    /* The log keeps each obj.new with the name it made; replay makes that one again. */
    bool replay = persist_replaying();
    if (r->name && !(replay && r->namelen == 17 && anon_name(r->name, r->namelen)))
        return reply_error(r, MPB_EINVAL, "obj.new takes no name: the broker makes one");
    const uint8_t *args = r->args.p;
    uint32_t argc = r->argc;
    const char *ks;
    uint32_t kl;
    if (arg_str(r, "kind", &ks, &kl)) return -1;
    kind_t k = kind_parse(ks, kl);
    if (k == KIND_NONE)
        return reply_error(r, MPB_EINVAL, "unknown kind '%.*s'", (int)(kl > 64 ? 64 : kl), ks);
    if (!open_op[k]) /* a pipe's ends are claimed by name: it has no anonymous form */
        return reply_error(r, MPB_EINVAL, "a %s cannot be made anonymous", kind_name(k));
    const command_t *oc = command_find(open_op[k]);
    if (!arity_ok(oc, r->argc - 1))
        return reply_error(
            r, MPB_EPROTO, "obj.new of a %s takes the %d argument%s of %s after the kind, got %u",
            kind_name(k), oc->arity, oc->arity == 1 ? "" : "s", mpb__op_name(oc->op), r->argc - 1);
    char name[18];
    if (r->name) {
        snprintf(name, sizeof name, "%.*s", 17, r->name);
        if (store_get(name, 17))
            return reply_error(r, MPB_EVALUE, "%s exists already: the log made it twice", name);
    } else
        do {
            uint64_t x;
            if (mpb__random(&x, sizeof x)) fatal("no randomness for an anonymous name");
            snprintf(name, sizeof name, "~%016llx", (unsigned long long)x);
        } while (store_get(name, 17));
    obj_t *o = store_create(k, name, 17);
    o->anon = true;
    nanon++;
    r->name = o->name;
    r->namelen = o->namelen;
    r->obj = o;
    r->argc--;
    /* The open writes its reply into a buffer of ours, to be wrapped with the name. */
    mpb__buf_t *out = r->out, open = {0};
    r->out = &open;
    int rc = oc->proc(r);
    r->out = out;
    bbuf_ensure(&open);
    mpb__rd_t rd = {open.p, open.p + open.len};
    uint32_t three;
    uint64_t rid, code;
    const uint8_t *v;
    size_t vn;
    if (rc < 0 || mpb__rd_array(&rd, &three) || three != 3 || mpb__rd_uint(&rd, &rid) ||
        mpb__rd_uint(&rd, &code) || code != 0 || mpb__rd_span(&rd, &v, &vn)) {
        mpb__w_raw(out, open.p, open.len); /* its error, as the open gave it */
        mpb__buf_free(&open);
        store_delete(o); /* nothing waits on it or holds it yet: it never was */
        return rc < 0 ? rc : MPB_EPROTO;
    }
    ref_add(r->sess, o);
    persist_obj_new(r->sess, r->rid, o, argc, args, (size_t)(r->args.end - args));
    mpb__buf_t *b = reply_begin(r);
    mpb__w_array(b, 2);
    mpb__w_str(b, o->name, o->namelen);
    mpb__w_raw(b, v, vn);
    mpb__buf_free(&open);
    return 0;
}

/* The anonymous object of obj.ref / obj.unref, or NULL after replying. */
static obj_t *anon_target(req_t *r) {
    obj_t *o = resolve_path(r);
    if (o && !o->anon) {
        reply_error(r, MPB_EINVAL,
                    "%s/%s is a named object: only anonymous objects (made by obj.new) have "
                    "references",
                    kind_name(o->kind), o->name);
        return NULL;
    }
    return o;
}

/* obj.ref "kind/name" -> the object's references now: one more, this session's. */
int cmd_obj_ref(req_t *r) {
    obj_t *o = anon_target(r);
    if (!o) return -1;
    ref_add(r->sess, o);
    return reply_int(r, o->refs);
}

/* obj.unref "kind/name" -> the references left; at 0 the object is doomed. EVALUE when this
 * session holds none. */
int cmd_obj_unref(req_t *r) {
    obj_t *o = anon_target(r);
    if (!o) return -1;
    sess_t *s = r->sess;
    long i = sref_find(s, o);
    if (i < 0)
        return reply_error(r, MPB_EVALUE, "session %llu holds no reference to %s/%s",
                           (unsigned long long)s->id, kind_name(o->kind), o->name);
    if (--s->refs[i].n == 0) s->refs[i] = s->refs[--s->nrefs];
    o->refs--;
    total_refs--;
    int64_t left = o->refs;
    reply_int(r, left);
    if (left == 0) doom(o);
    return 0;
}

uint32_t anon_describe(const obj_t *o, mpb__buf_t *b) {
    mpb__w_cstr(b, "anonymous");
    mpb__w_bool(b, true);
    mpb__w_cstr(b, "refs");
    mpb__w_int(b, o->refs);
    mpb__w_cstr(b, "delete_in_ms");
    int64_t left = o->doomed_at ? o->doomed_at - now_ms() : -1;
    mpb__w_int(b, o->doomed_at && left < 0 ? 0 : left);
    mpb__w_cstr(b, "holders");
    uint32_t n = 0;
    for (const sess_t *s = sess_all(); s; s = LIST_NEXT(s, link))
        n += sref_find(s, o) >= 0;
    mpb__w_array(b, n);
    for (const sess_t *s = sess_all(); s; s = LIST_NEXT(s, link)) {
        long i = sref_find(s, o);
        if (i < 0) continue;
        mpb__w_map(b, 4);
        sess_describe(s, b);
        mpb__w_cstr(b, "refs");
        mpb__w_int(b, s->refs[i].n);
    }
    return 4;
}

/* ---- after a restart: what the snapshot and the log bring back ---- */

void anon_loaded(obj_t *o) {
    o->anon = true;
    nanon++;
}

int anon_restore_ref(sess_t *s, obj_t *o, int64_t n) {
    if (!o->anon || n <= 0 || n > INT32_MAX) return -1;
    for (int64_t i = 0; i < n; i++)
        ref_add(s, o);
    return 0;
}

void anon_replay_gone(obj_t *o) {
    if (o->anon) destroy(o);
}

void anon_restore_done(void) {
    /* Their last reference went before the crash: a full grace again from now. Collected
     * first, since with no grace doom() deletes from the store being walked. */
    const omap_t *m = store_map();
    obj_t **zero = NULL;
    size_t n = 0;
    for (size_t i = 0; i < m->nents; i++) {
        obj_t *o = m->ents[i].item;
        if (!o || !o->anon || o->refs) continue;
        zero = xrealloc(zero, (n + 1) * sizeof *zero);
        zero[n++] = o;
    }
    for (size_t i = 0; i < n; i++) {
        undoom(zero[i]);
        doom(zero[i]);
    }
    free(zero);
}

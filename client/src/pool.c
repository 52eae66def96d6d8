/* pool.c - multiprocessing.Pool's API over the broker. Submitting is a call that returns task
 * ids; results come back through one parked pool.take per client that covers every task the
 * session has out, and each result is routed by task id to the AsyncResult or imap iterator
 * that owns it. A result may arrive inside any call that reads replies, even inside another
 * call's wait; its callback is queued and run when the caller is next in a pool call (poll,
 * join, wait/get/ready, imap_next, submitting), outside any wait, so a callback may itself
 * make calls on the client (submit more tasks, store the result). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum { A_APPLY, A_MAP, A_IMAP };

/* Where a task's result goes. */
typedef struct route {
    uint64_t id; /* 0: free */
    void *owner; /* mpb_async_t or mpb_imap_t */
    int kind;
    uint64_t index; /* the task's place in its owner */
} route_t;

/* Per client: the routing table and the one outstanding take. */
typedef struct prt {
    route_t *r;
    size_t cap, n;
    bool take_out;
} prt_t;

struct mpb_pool {
    mpb_client_t *c;
    bool closed;
    mpb_async_t *asyncs; /* outstanding or kept */
    size_t outstanding;
    mpb_imap_t *imaps; /* its iterators, so terminate and free reach them */
    mpb_async_t *notify_head, *notify_tail; /* finished, callback not yet run */
    bool notifying;
    size_t submitting; /* applies whose pool.submit is not answered yet */
    mpb_output_cb out_cb;
    void *out_arg;
    int deferred;      /* an apply without a handle failed to submit: the next apply says so */
    char deferred_msg[512];
};

struct mpb_async {
    mpb_pool_t *p;
    int kind;
    char fn[256];
    uint64_t ntasks, ndone;
    uint8_t **outs; /* per task: its outcomes array (copied) */
    size_t *outlens;
    uint64_t *firsts, *counts; /* submitted id ranges, for cancel */
    size_t nranges;
    bool ready, canceled, kept_by_pool, freed;
    int status;
    char msg[512];
    char ekind[64]; /* the failed call's error kind, "" when none */
    mpb__buf_t result;
    mpb_result_cb cb;
    mpb_error_cb ecb;
    void *arg;
    mpb_async_t *next, *prev;
    mpb_async_t *nnext; /* in its pool's notify queue */
    bool notify_pending;
    bool submitting; /* its pool.submit is not answered yet */
};

typedef struct islot {
    uint8_t *out; /* outcomes of the chunk, NULL until it arrives */
    size_t len;
    uint32_t pos, n; /* next item to hand out, items in it */
    bool used;
} islot_t;

struct mpb_imap {
    mpb_pool_t *p;
    char fn[256];
    mpb_next_fn next;
    void *arg;
    size_t chunksize, window;
    bool ordered, input_done;
    int input_err; /* next() failed, or gave a bad item: reported after the results before it */
    int fail;      /* results will not come (connection lost, out of memory): reported at once */
    uint64_t submitted, consumed; /* chunks */
    islot_t *slots;               /* ring of window, by chunk sequence */
    uint64_t job;
    uint64_t *ids; /* task id per slot */
    bool canceled; /* by terminate(): no more results */
    char input_msg[160]; /* why input_err, when it is not next()'s own error */
    mpb__buf_t carry; /* an item read from next() that did not fit in the last chunk */
    bool has_carry;
    mpb_imap_t *inext, *iprev; /* in its pool's list */
};

/* ---- routing ---- */

static prt_t *rt(mpb_client_t *c) {
    if (!c->pool_rt) c->pool_rt = calloc(1, sizeof(prt_t));
    return c->pool_rt;
}

static size_t rslot(const prt_t *t, uint64_t id) {
    return (size_t)(id * 0x9e3779b97f4a7c15ULL >> 17) & (t->cap - 1);
}

static int route_add(mpb_client_t *c, uint64_t id, void *owner, int kind, uint64_t index) {
    prt_t *t = rt(c);
    if (!t) return MPB_ENOMEM;
    if ((t->n + 1) * 2 > t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 256;
        route_t *nr = calloc(ncap, sizeof *nr);
        if (!nr) return MPB_ENOMEM;
        route_t *old = t->r;
        size_t ocap = t->cap;
        t->r = nr;
        t->cap = ncap;
        for (size_t i = 0; i < ocap; i++) {
            if (!old[i].id) continue;
            size_t s = rslot(t, old[i].id);
            while (t->r[s].id) s = (s + 1) & (t->cap - 1);
            t->r[s] = old[i];
        }
        free(old);
    }
    size_t s = rslot(t, id);
    while (t->r[s].id) s = (s + 1) & (t->cap - 1);
    t->r[s] = (route_t){id, owner, kind, index};
    t->n++;
    return 0;
}

/* Finds and removes the route of id (backward-shift deletion keeps probing intact). */
static bool route_take(mpb_client_t *c, uint64_t id, route_t *out) {
    prt_t *t = c->pool_rt;
    if (!t || !t->cap) return false;
    size_t s = rslot(t, id);
    while (t->r[s].id && t->r[s].id != id) s = (s + 1) & (t->cap - 1);
    if (!t->r[s].id) return false;
    *out = t->r[s];
    t->r[s].id = 0;
    t->n--;
    for (size_t j = (s + 1) & (t->cap - 1); t->r[j].id; j = (j + 1) & (t->cap - 1)) {
        route_t e = t->r[j];
        t->r[j].id = 0;
        size_t k = rslot(t, e.id);
        while (t->r[k].id) k = (k + 1) & (t->cap - 1);
        t->r[k] = e;
    }
    return true;
}

/* Forgets every route of owner (it is being freed). */
static void route_forget(mpb_client_t *c, void *owner) {
    prt_t *t = c->pool_rt;
    if (!t) return;
    for (size_t i = 0; i < t->cap; i++)
        if (t->r[i].id && t->r[i].owner == owner) {
            route_t dummy;
            route_take(c, t->r[i].id, &dummy);
            i = (size_t)-1; /* the table moved: start over */
        }
}

/* ---- completing ---- */

/* A remote message as the caller sees it: "fn: message", unless the function named itself
 * already ("sleep_ms: -1 is not ...", "square(4000000000) overflows"). */
static void remote_msg(char *out, size_t n, const char *fn, const char *s, uint32_t sl) {
    size_t fl = strlen(fn);
    if (sl > fl && !memcmp(s, fn, fl) && (s[fl] == ':' || s[fl] == '('))
        snprintf(out, n, "%.*s", (int)sl, s);
    else
        snprintf(out, n, "%s: %.*s", fn, (int)sl, s);
}

static void async_finish(mpb_async_t *a) {
    a->ready = true;
    mpb_pool_t *p = a->p;
    if (p) p->outstanding--;
    if (a->canceled && a->status == 0) {
        a->status = MPB_ECANCELED;
        snprintf(a->msg, sizeof a->msg, "canceled by terminate()");
    }
    if (!a->status) {
        /* Assemble the value: apply's one value, or map's array in input order. The first
         * failed call (in input order) fails the whole, as Python raises it. */
        uint64_t total = 0;
        for (uint64_t i = 0; i < a->ntasks; i++) {
            mpb__rd_t r = {a->outs[i], a->outs[i] + a->outlens[i]};
            uint32_t n = 0;
            mpb__rd_array(&r, &n);
            total += n;
        }
        if (a->kind == A_MAP) mpb__w_array(&a->result, (uint32_t)total);
        for (uint64_t i = 0; i < a->ntasks && !a->status; i++) {
            mpb__rd_t r = {a->outs[i], a->outs[i] + a->outlens[i]};
            uint32_t n = 0;
            mpb__rd_array(&r, &n);
            for (uint32_t k = 0; k < n; k++) {
                uint32_t two;
                bool ok = false;
                const uint8_t *v;
                size_t vn;
                if (mpb__rd_array(&r, &two) || two < 2 || two > 3 || mpb__rd_bool(&r, &ok) ||
                    mpb__rd_span(&r, &v, &vn)) {
                    a->status = MPB_EPROTO;
                    snprintf(a->msg, sizeof a->msg, "malformed result");
                    break;
                }
                if (!ok) {
                    mpb__rd_t m = {v, v + vn};
                    const char *s = "";
                    uint32_t sl = 0;
                    mpb__rd_str(&m, &s, &sl);
                    a->status = MPB_EREMOTE;
                    remote_msg(a->msg, sizeof a->msg, a->fn, s, sl);
                    const char *ks = "";
                    uint32_t kl = 0;
                    if (two == 3 && !mpb__rd_str(&r, &ks, &kl)) /* [false, message, kind] */
                        snprintf(a->ekind, sizeof a->ekind, "%.*s", (int)kl, ks);
                    if (sl == 8 && !memcmp(s, "canceled", 8)) a->status = MPB_ECANCELED;
                    break;
                }
                mpb__w_raw(&a->result, v, vn);
            }
        }
        if (a->result.oom && !a->status) {
            a->status = MPB_ENOMEM;
            snprintf(a->msg, sizeof a->msg, "out of memory assembling the result");
        }
    }
    for (uint64_t i = 0; i < a->ntasks; i++) free(a->outs[i]);
    free(a->outs);
    free(a->outlens);
    a->outs = NULL;
    a->outlens = NULL;
    if (p) { /* its callback runs later, outside whatever call is reading replies now */
        a->nnext = NULL;
        a->notify_pending = true;
        if (p->notify_tail) p->notify_tail->nnext = a;
        else p->notify_head = a;
        p->notify_tail = a;
    }
}

static void notify_remove(mpb_pool_t *p, mpb_async_t *a) {
    if (!a->notify_pending) return;
    mpb_async_t **pp = &p->notify_head, *prev = NULL;
    while (*pp && *pp != a) {
        prev = *pp;
        pp = &(*pp)->nnext;
    }
    if (*pp) *pp = a->nnext;
    if (p->notify_tail == a) p->notify_tail = prev;
    a->nnext = NULL;
    a->notify_pending = false;
}

static void notify_one(mpb_async_t *a) {
    if (a->status) {
        if (a->ecb) a->ecb(a->arg, a->status, a->msg);
    } else if (a->cb) {
        a->cb(a->arg, a->result.p, a->result.len);
    }
}

/* Runs the callbacks of finished results, in the order they finished. Not nested: a callback
 * that calls into the pool adds to the queue this loop is draining. */
static void run_notify(mpb_pool_t *p) {
    if (!p || p->notifying) return;
    p->notifying = true;
    while (p->notify_head) {
        mpb_async_t *a = p->notify_head;
        notify_remove(p, a);
        notify_one(a); /* may free a */
    }
    p->notifying = false;
    mpb_flush(p->c); /* what the callbacks submitted */
}

static void imap_arrive(mpb_imap_t *it, uint64_t seq, const uint8_t *out, size_t len);

static void pump_take(mpb_client_t *c);

/* Hands a task's [[stream, bytes], ...] to its pool's output callback. */
static void deliver_output(const route_t *r, const uint8_t *p, size_t n) {
    mpb_pool_t *pool =
        r->kind == A_IMAP ? ((mpb_imap_t *)r->owner)->p : ((mpb_async_t *)r->owner)->p;
    if (!pool || !pool->out_cb) return;
    mpb__rd_t rd = {p, p + n};
    uint32_t k;
    if (mpb__rd_array(&rd, &k)) return;
    for (uint32_t i = 0; i < k; i++) {
        uint32_t two;
        int64_t stream;
        const uint8_t *b;
        uint32_t bl;
        if (mpb__rd_array(&rd, &two) || two != 2 || mpb__rd_int(&rd, &stream) ||
            mpb__rd_bin(&rd, &b, &bl))
            return;
        pool->out_cb(pool->out_arg, r->kind == A_IMAP ? NULL : r->owner, r->index, (int)stream, b,
                     bl);
    }
}
static void send_cancel(mpb_client_t *c, uint64_t first, uint64_t count);

static void on_take(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    (void)arg;
    prt_t *t = c->pool_rt;
    if (!t) return;
    t->take_out = false;
    if (status) {
        /* The connection or session failed: every task still routed fails with it. */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", mpb_errmsg(c));
        for (size_t i = 0; i < t->cap; i++) {
            if (!t->r[i].id) continue;
            route_t r;
            if (!route_take(c, t->r[i].id, &r)) continue;
            i = (size_t)-1;
            if (r.kind == A_IMAP) {
                mpb_imap_t *it = r.owner;
                it->fail = status;
                continue;
            }
            mpb_async_t *a = r.owner;
            if (a->ready) continue;
            a->status = status;
            snprintf(a->msg, sizeof a->msg, "%s", msg);
            route_forget(c, a);
            async_finish(a);
        }
        return;
    }
    mpb__rd_t rd = {val, (const uint8_t *)val + len};
    uint32_t n;
    if (mpb__rd_array(&rd, &n)) return;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t two;
        uint64_t id;
        const uint8_t *out, *output = NULL;
        size_t ol, outputlen = 0;
        if (mpb__rd_array(&rd, &two) || two < 2 || two > 3 || mpb__rd_uint(&rd, &id) ||
            mpb__rd_span(&rd, &out, &ol) || (two == 3 && mpb__rd_span(&rd, &output, &outputlen)))
            return;
        route_t r;
        if (!route_take(c, id, &r)) continue;
        if (output) deliver_output(&r, output, outputlen);
        if (r.kind == A_IMAP) {
            imap_arrive(r.owner, r.index, out, ol);
            continue;
        }
        mpb_async_t *a = r.owner;
        uint8_t *copy = malloc(ol ? ol : 1);
        if (!copy) {
            a->status = MPB_ENOMEM;
            snprintf(a->msg, sizeof a->msg, "out of memory");
        } else {
            memcpy(copy, out, ol);
            a->outs[r.index] = copy;
            a->outlens[r.index] = ol;
        }
        if (++a->ndone == a->ntasks) async_finish(a);
    }
    pump_take(c);
}

/* Keeps one pool.take parked while any task is routed. */
static void pump_take(mpb_client_t *c) {
    prt_t *t = c->pool_rt;
    if (!t || t->take_out || !t->n) return;
    mpb__buf_t *b = mpb__req(c, MPB_OP_POOL_TAKE, NULL, 0, 3);
    mpb__w_uint(b, 1);
    mpb__w_uint(b, UINT64_MAX - 1);
    mpb__w_int(b, -1);
    if (mpb__send(c, on_take, NULL) == 0) t->take_out = true;
}

/* ---- submitting ---- */

/* submit()'s job for a lone apply: no job, so `mpb pool` does not list it as a map. */
#define JOB_NONE UINT64_MAX

/* Submits tasks (each a msgpack array of calls) given as one msgpack array body of n tasks,
 * into job (0: a new one; JOB_NONE: none). Returns the first task id. */
static int submit(mpb_pool_t *p, const char *fn, uint64_t job, const uint8_t *tasks,
                  size_t tlen, uint32_t n, uint64_t *first, uint64_t *job_out) {
    if (tlen > p->c->max_frame / 4) mpb_flush(p->c); /* a big batch gets a frame of its own */
    mpb__buf_t *b = mpb__req(p->c, MPB_OP_POOL_SUBMIT, NULL, 0, 3);
    mpb__w_cstr(b, fn);
    if (job == JOB_NONE) mpb__w_bool(b, false);
    else if (job) mpb__w_uint(b, job);
    else mpb__w_nil(b);
    mpb__w_array(b, n);
    mpb__w_raw(b, tasks, tlen);
    const uint8_t *v;
    size_t vn;
    int rc = mpb__call(p->c, 0, &v, &vn);
    if (rc) return rc;
    mpb__rd_t r = {v, v + vn};
    uint32_t two;
    uint64_t j;
    if (mpb__rd_array(&r, &two) || two != 2 || mpb__rd_uint(&r, &j) || mpb__rd_uint(&r, first))
        return mpb__fail(p->c, MPB_EPROTO, "malformed pool.submit reply");
    if (job_out) *job_out = j;
    return 0;
}

static int check_fn(mpb_pool_t *p, const char *fn) {
    if (!p) return MPB_EINVAL;
    if (!fn || !mpb__name_ok(fn, strlen(fn)))
        return mpb__fail(p->c, MPB_EINVAL, "function names are 1 to 255 printable characters");
    if (p->closed) return mpb__fail(p->c, MPB_EINVAL, "the pool is closed");
    return mpb__usable(p->c);
}

static mpb_async_t *async_new(mpb_pool_t *p, int kind, const char *fn, uint64_t ntasks) {
    mpb_async_t *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->p = p;
    a->kind = kind;
    snprintf(a->fn, sizeof a->fn, "%s", fn);
    a->ntasks = ntasks;
    a->outs = calloc(ntasks ? ntasks : 1, sizeof *a->outs);
    a->outlens = calloc(ntasks ? ntasks : 1, sizeof *a->outlens);
    if (!a->outs || !a->outlens) {
        free(a->outs);
        free(a->outlens);
        free(a);
        return NULL;
    }
    a->next = p->asyncs;
    if (p->asyncs) p->asyncs->prev = a;
    p->asyncs = a;
    p->outstanding++;
    return a;
}

static void async_unlink(mpb_async_t *a) {
    mpb_pool_t *p = a->p;
    if (!p) return;
    notify_remove(p, a);
    if (a->prev) a->prev->next = a->next;
    else p->asyncs = a->next;
    if (a->next) a->next->prev = a->prev;
    if (!a->ready) p->outstanding--;
    a->p = NULL;
}

static void async_destroy(mpb_async_t *a) {
    if (a->outs)
        for (uint64_t i = 0; i < a->ntasks; i++) free(a->outs[i]);
    free(a->outs);
    free(a->outlens);
    free(a->firsts);
    free(a->counts);
    mpb__buf_free(&a->result);
    free(a);
}

static int add_range(mpb_async_t *a, uint64_t first, uint64_t count) {
    uint64_t *f = realloc(a->firsts, (a->nranges + 1) * sizeof *f);
    if (!f) return MPB_ENOMEM;
    a->firsts = f;
    uint64_t *n = realloc(a->counts, (a->nranges + 1) * sizeof *n);
    if (!n) return MPB_ENOMEM;
    a->counts = n;
    a->firsts[a->nranges] = first;
    a->counts[a->nranges] = count;
    a->nranges++;
    return 0;
}

/* The number of calls the functions' workers can run at once (0 if none serve it). */
static uint64_t capacity(mpb_pool_t *p, const char *fn, uint64_t *nworkers) {
    mpb__buf_t *b = mpb__req(p->c, MPB_OP_POOL_FNINFO, NULL, 0, 1);
    mpb__w_cstr(b, fn);
    const uint8_t *v;
    size_t vn;
    uint64_t w = 0, cap = 0;
    if (mpb__call(p->c, 0, &v, &vn) == 0) {
        mpb__rd_t r = {v, v + vn};
        uint32_t six;
        if (!mpb__rd_array(&r, &six) && six >= 2 && !mpb__rd_uint(&r, &w)) mpb__rd_uint(&r, &cap);
    }
    if (nworkers) *nworkers = w;
    return cap;
}

static void cancel_ranges(mpb_client_t *c, mpb_async_t *a);

/* The largest task (a chunk's encoded calls) the broker takes, with room in a frame for it. */
static size_t task_limit(const mpb_client_t *c) {
    size_t lim = c->max_value;
    if (lim + 1024 > c->max_frame) lim = c->max_frame > 2048 ? c->max_frame - 1024 : 1024;
    return lim;
}

/* The encoded size of item as a call: [item], or item itself for starmap. */
static size_t call_len(size_t vn, bool star) {
    return star ? vn : vn + 1;
}

/* Sends the in_batch chunks in batch (tasks batch_start on of a's ntasks) in one pool.submit,
 * routes each task's result to a and records the range of task ids they got. oom: the chunk
 * buffer ran out of memory. *job: the job id, 0 until the first submit names one. Returns 0 or
 * a negative MPB_E*. */
static int submit_batch(mpb_pool_t *p, const char *fn, mpb_async_t *a, int kind,
                        const mpb__buf_t *batch, bool oom, uint64_t batch_start, uint32_t in_batch,
                        uint64_t ntasks, uint64_t *job) {
    mpb_client_t *c = p->c;
    uint64_t first;
    int rc = 0;
    if (batch->oom || oom || batch_start + in_batch > ntasks)
        rc = mpb__fail(c, MPB_ENOMEM, "out of memory");
    if (!rc) rc = submit(p, fn, *job, batch->p, batch->len, in_batch, &first, job);
    for (uint64_t t = 0; !rc && t < in_batch; t++)
        if (route_add(c, first + t, a, kind, batch_start + t))
            rc = mpb__fail(c, MPB_ENOMEM, "out of memory");
    if (!rc) rc = add_range(a, first, in_batch) ? MPB_ENOMEM : 0;
    return rc;
}

/* Splits items into chunks of up to chunksize calls, cut earlier where a chunk would pass the
 * broker's max_value (as Python never fails on a chunksize, neither does this), and submits
 * them, a frame's worth at a time. star: each item is already an argument array; else it
 * becomes [item]. */
static int submit_items(mpb_pool_t *p, const char *fn, const uint8_t *items, size_t len,
                        size_t chunksize, bool star, mpb_async_t **out, int kind) {
    mpb_client_t *c = p->c;
    mpb__rd_t r = {items, items + len};
    uint32_t n;
    if (!items || mpb__mp_check1(items, len, MPB__MAX_DEPTH) != (long)len || mpb__rd_array(&r, &n))
        return mpb__fail(c, MPB_EINVAL, "items must be one msgpack array");
    if (chunksize == 0) { /* as Python: about four chunks per worker process */
        uint64_t cap = capacity(p, fn, NULL);
        chunksize = cap ? (size_t)(((uint64_t)n + 4 * cap - 1) / (4 * cap)) : 1;
    }
    if (chunksize > n) chunksize = n ? n : 1;
    if (chunksize == 0) chunksize = 1;
    size_t limit = task_limit(c);
    /* First pass: check the items and count the chunks. */
    mpb__rd_t scan = r;
    uint64_t ntasks = 0;
    size_t k = 0, bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *v;
        size_t vn;
        mpb__rd_span(&scan, &v, &vn);
        if (star) {
            mpb__rd_t t = {v, v + vn};
            uint32_t dummy;
            if (mpb__rd_array(&t, &dummy))
                return mpb__fail(c, MPB_EINVAL, "starmap item %u is not an array of arguments", i);
        }
        size_t cl = call_len(vn, star);
        if (cl + 5 > limit)
            return mpb__fail(c, MPB_ETOOBIG, "item %u of %zu bytes > max_value %zu", i, vn,
                             c->max_value);
        if (k && (k == chunksize || bytes + cl + 5 > limit)) {
            ntasks++;
            k = bytes = 0;
        }
        k++;
        bytes += cl;
    }
    if (k) ntasks++;
    mpb_async_t *a = async_new(p, kind, fn, ntasks);
    if (!a) return mpb__fail(c, MPB_ENOMEM, "out of memory");
    mpb__buf_t batch = {0}, chunk = {0};
    uint64_t job = 0, task_index = 0, batch_start = 0;
    uint32_t in_batch = 0, in_chunk = 0;
    int rc = 0;
    for (uint32_t i = 0; i <= n && !rc; i++) {
        const uint8_t *v = NULL;
        size_t vn = 0;
        if (i < n) mpb__rd_span(&r, &v, &vn);
        size_t cl = call_len(vn, star);
        /* the chunk so far is complete: it goes into the batch, and the batch out when full */
        if (in_chunk && (i == n || in_chunk == chunksize || chunk.len + cl + 5 > limit)) {
            if (in_batch && (batch.len + chunk.len + 5 > c->max_frame / 4 || in_batch == 10000)) {
                rc = submit_batch(p, fn, a, kind, &batch, chunk.oom, batch_start, in_batch, ntasks,
                                  &job);
                task_index += in_batch;
                batch_start = task_index;
                in_batch = 0;
                mpb__buf_reset(&batch);
            }
            mpb__w_array(&batch, in_chunk);
            mpb__w_raw(&batch, chunk.p, chunk.len);
            mpb__buf_reset(&chunk);
            in_chunk = 0;
            in_batch++;
        }
        if (i == n || rc) break;
        if (!star) mpb__w_array(&chunk, 1);
        mpb__w_raw(&chunk, v, vn);
        in_chunk++;
    }
    if (!rc && in_batch)
        rc = submit_batch(p, fn, a, kind, &batch, chunk.oom, batch_start, in_batch, ntasks, &job);
    mpb__buf_free(&batch);
    mpb__buf_free(&chunk);
    if (rc) {
        /* what went out is cancelled; the handle is not given out */
        if (mpb__usable(c) == 0) {
            cancel_ranges(c, a);
            mpb_flush(c);
        }
        route_forget(c, a);
        async_unlink(a);
        async_destroy(a);
        return rc;
    }
    if (ntasks == 0) async_finish(a);
    *out = a;
    pthread_mutex_lock(&c->mu);
    pump_take(c);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

/* ---- the public calls ---- */

int mpb_pool_open(mpb_client_t *c, mpb_pool_t **out) {
    *out = NULL;
    if (!c) return MPB_EINVAL;
    int rc = mpb__usable(c);
    if (rc) return rc;
    mpb_pool_t *p = calloc(1, sizeof *p);
    if (!p) return mpb__fail(c, MPB_ENOMEM, "out of memory");
    p->c = c;
    *out = p;
    return 0;
}

/* Applies in flight before an apply waits for their pool.submit replies: enough to fill a
 * frame with small ones, few enough that an error (ELIMIT) comes back soon. */
#define SUBMIT_WINDOW 64

/* An apply's pool.submit reply: its task id routes its result; a refusal fails it. */
static void on_apply_submit(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    mpb_async_t *a = arg;
    mpb_pool_t *p = a->p;
    a->submitting = false;
    if (p) p->submitting--;
    mpb__rd_t r = {val, (const uint8_t *)val + len};
    uint32_t two;
    uint64_t job, first = 0;
    if (!status && (mpb__rd_array(&r, &two) || two != 2 || mpb__rd_uint(&r, &job) ||
                    mpb__rd_uint(&r, &first)))
        status = mpb__fail(c, MPB_EPROTO, "malformed pool.submit reply");
    if (!status && (route_add(c, first, a, A_APPLY, 0) || add_range(a, first, 1)))
        status = mpb__fail(c, MPB_ENOMEM, "out of memory");
    if (status) {
        route_forget(c, a);
        a->status = status;
        snprintf(a->msg, sizeof a->msg, "%s", mpb_errmsg(c));
        if (p && a->kept_by_pool && !p->deferred) { /* nobody holds it to hear why */
            p->deferred = status;
            snprintf(p->deferred_msg, sizeof p->deferred_msg, "%s", a->msg);
        }
        if (!a->ready) async_finish(a);
        return;
    }
    if (a->canceled) { /* terminated while the submit was out */
        send_cancel(c, first, 1);
        return;
    }
    pump_take(c);
}

/* Waits until at most `most` applies of p are waiting for their pool.submit reply. */
static int submits_settle(mpb_pool_t *p, size_t most) {
    int rc = 0;
    int64_t end = mpb__now_ms() + p->c->opts.op_timeout_ms;
    while (p->submitting > most && rc >= 0) {
        if (mpb__now_ms() > end)
            return mpb__fail(p->c, MPB_ETIMEDOUT, "no pool.submit reply from the broker");
        rc = mpb_poll(p->c, 100);
    }
    return rc < 0 ? rc : 0;
}

/* apply_async sends its pool.submit without waiting for the reply (up to SUBMIT_WINDOW of them
 * at once), so a caller keeping many in flight pays no round trip for each; the reply routes
 * the result when it comes. */
int mpb_pool_apply_async(mpb_pool_t *p, const char *fn, const void *args, size_t alen,
                         mpb_result_cb cb, mpb_error_cb ecb, void *arg, mpb_async_t **out) {
    if (out) *out = NULL;
    int rc = check_fn(p, fn);
    if (rc) return rc;
    mpb__rd_t r = {args, (const uint8_t *)args + alen};
    uint32_t na;
    if (!args || mpb__mp_check1(args, alen, MPB__MAX_DEPTH) != (long)alen || mpb__rd_array(&r, &na))
        return mpb__fail(p->c, MPB_EINVAL, "args must be one msgpack array");
    if (alen + 1 > p->c->max_value)
        return mpb__fail(p->c, MPB_ETOOBIG, "task of %zu bytes > max_value %zu", alen + 1,
                         p->c->max_value);
    if ((rc = submits_settle(p, SUBMIT_WINDOW - 1))) return rc;
    if (p->deferred) {
        rc = p->deferred;
        p->deferred = 0;
        return mpb__fail(p->c, rc, "%s", p->deferred_msg);
    }
    mpb_async_t *a = async_new(p, A_APPLY, fn, 1);
    if (!a) return mpb__fail(p->c, MPB_ENOMEM, "out of memory");
    a->cb = cb;
    a->ecb = ecb;
    a->arg = arg;
    a->kept_by_pool = !out;
    /* one task of one call: [[args]] */
    mpb__buf_t *b = mpb__req(p->c, MPB_OP_POOL_SUBMIT, NULL, 0, 3);
    mpb__w_cstr(b, fn);
    mpb__w_bool(b, false); /* no job: `mpb pool` does not list it as a map */
    mpb__w_array(b, 1);
    mpb__w_array(b, 1);
    mpb__w_raw(b, args, alen);
    a->submitting = true;
    p->submitting++;
    rc = mpb__send(p->c, on_apply_submit, a);
    if (rc) { /* not sent: no reply will come */
        if (a->submitting) {
            a->submitting = false;
            p->submitting--;
        }
        async_unlink(a);
        async_destroy(a);
        return rc;
    }
    if (out) *out = a;
    /* Out now, as Python's apply_async hands its task on at once, even if the caller does
     * not call the pool again for a while; from inside a callback, run_notify() sends what
     * the callbacks submitted in one frame when they are done. */
    rc = p->notifying ? 0 : mpb_flush(p->c);
    run_notify(p);
    return rc;
}

static int map_async(mpb_pool_t *p, const char *fn, const void *items, size_t len,
                     size_t chunksize, bool star, mpb_result_cb cb, mpb_error_cb ecb, void *arg,
                     mpb_async_t **out) {
    if (out) *out = NULL;
    int rc = check_fn(p, fn);
    if (rc) return rc;
    mpb_async_t *a = NULL;
    rc = submit_items(p, fn, items, len, chunksize, star, &a, A_MAP);
    if (rc) return rc;
    a->cb = cb;
    a->ecb = ecb;
    a->arg = arg;
    if (out) *out = a;
    else a->kept_by_pool = true;
    run_notify(p); /* an empty map is done at once */
    return 0;
}

int mpb_pool_map_async(mpb_pool_t *p, const char *fn, const void *items, size_t len,
                       size_t chunksize, mpb_result_cb cb, mpb_error_cb ecb, void *arg,
                       mpb_async_t **out) {
    return map_async(p, fn, items, len, chunksize, false, cb, ecb, arg, out);
}

int mpb_pool_starmap_async(mpb_pool_t *p, const char *fn, const void *items, size_t len,
                           size_t chunksize, mpb_result_cb cb, mpb_error_cb ecb, void *arg,
                           mpb_async_t **out) {
    return map_async(p, fn, items, len, chunksize, true, cb, ecb, arg, out);
}

/* Waits for a, gives out its result, frees it. */
static int finish_sync(mpb_async_t *a, int timeout_ms, void **result, size_t *rlen) {
    int rc = mpb_async_get(a, timeout_ms, result, rlen);
    mpb_async_free(&a);
    return rc;
}

int mpb_pool_apply(mpb_pool_t *p, const char *fn, const void *args, size_t alen, int timeout_ms,
                   void **result, size_t *rlen) {
    mpb_async_t *a = NULL;
    int rc = mpb_pool_apply_async(p, fn, args, alen, NULL, NULL, NULL, &a);
    return rc ? rc : finish_sync(a, timeout_ms, result, rlen);
}

int mpb_pool_map(mpb_pool_t *p, const char *fn, const void *items, size_t len, size_t chunksize,
                 int timeout_ms, void **results, size_t *rlen) {
    mpb_async_t *a = NULL;
    int rc = mpb_pool_map_async(p, fn, items, len, chunksize, NULL, NULL, NULL, &a);
    return rc ? rc : finish_sync(a, timeout_ms, results, rlen);
}

int mpb_pool_starmap(mpb_pool_t *p, const char *fn, const void *items, size_t len,
                     size_t chunksize, int timeout_ms, void **results, size_t *rlen) {
    mpb_async_t *a = NULL;
    int rc = mpb_pool_starmap_async(p, fn, items, len, chunksize, NULL, NULL, NULL, &a);
    return rc ? rc : finish_sync(a, timeout_ms, results, rlen);
}

/* ---- AsyncResult ---- */

int mpb_async_wait(mpb_async_t *a, int timeout_ms) {
    if (!a) return MPB_EINVAL;
    mpb_pool_t *p = a->p;
    if (!p) return a->ready ? 1 : 0;
    int64_t end = timeout_ms < 0 ? INT64_MAX : mpb__now_ms() + timeout_ms;
    while (!a->ready) {
        int64_t left = end == INT64_MAX ? -1 : end - mpb__now_ms();
        if (end != INT64_MAX && left <= 0) break;
        int rc = mpb_poll(p->c, (int)(left < 0 || left > 1000 ? 1000 : left));
        if (rc < 0 && !a->ready) return rc;
    }
    int ready = a->ready; /* a callback run now may free a */
    run_notify(p);
    return ready ? 1 : 0;
}

int mpb_async_ready(mpb_async_t *a) {
    if (!a) return MPB_EINVAL;
    mpb_pool_t *p = a->p;
    if (!a->ready && p) mpb_poll(p->c, 0);
    int ready = a->ready;
    run_notify(p);
    return ready ? 1 : 0;
}

int mpb_async_successful(mpb_async_t *a) {
    if (!a) return MPB_EINVAL;
    if (!mpb_async_ready(a)) {
        if (a->p) mpb__fail(a->p->c, MPB_EINVAL, "the result is not ready yet");
        return MPB_EINVAL;
    }
    return a->status == 0;
}

int mpb_async_get(mpb_async_t *a, int timeout_ms, void **result, size_t *rlen) {
    if (!a) return MPB_EINVAL;
    mpb_pool_t *p = a->p;
    int rc = mpb_async_wait(a, timeout_ms);
    if (rc < 0) return rc;
    mpb_client_t *c = p ? p->c : NULL;
    if (!a->ready && !p) return MPB_ECLOSED; /* its pool was freed before it finished */
    if (!a->ready) {
        uint64_t nworkers = 0;
        uint64_t cap = capacity(p, a->fn, &nworkers);
        char when[48] = "not ready"; /* a poll (timeout 0) did not wait */
        if (timeout_ms != 0) snprintf(when, sizeof when, "timed out after %d ms", timeout_ms);
        if (!nworkers)
            return mpb__fail(c, MPB_ETIMEDOUT, "%s: no worker serves function '%s'", when, a->fn);
        return mpb__fail(c, MPB_ETIMEDOUT,
                         "%s: %llu of %llu tasks done; %llu workers (%llu slots) serve '%s'",
                         when, (unsigned long long)a->ndone, (unsigned long long)a->ntasks,
                         (unsigned long long)nworkers, (unsigned long long)cap, a->fn);
    }
    if (a->status) return c ? mpb__fail(c, a->status, "%s", a->msg) : a->status;
    if (result) {
        void *q = malloc(a->result.len ? a->result.len : 1);
        if (!q) return c ? mpb__fail(c, MPB_ENOMEM, "out of memory") : MPB_ENOMEM;
        memcpy(q, a->result.p, a->result.len);
        *result = q;
        if (rlen) *rlen = a->result.len;
    }
    return 0;
}

int mpb_async_error(const mpb_async_t *a, const char **kind, const char **msg) {
    if (!a || !a->ready) return MPB_EINVAL;
    if (kind) *kind = a->ekind;
    if (msg) *msg = a->msg;
    return a->status;
}

void mpb_async_progress(const mpb_async_t *a, uint64_t *done, uint64_t *total) {
    if (done) *done = a ? (a->ready ? a->ntasks : a->ndone) : 0;
    if (total) *total = a ? a->ntasks : 0;
}

/* ---- cancelling: task id ranges, merged where they touch, one pool.cancel per run ---- */

typedef struct range {
    uint64_t first, count;
} range_t;

typedef struct ranges {
    range_t *v;
    size_t n, cap;
} ranges_t;

static void send_cancel(mpb_client_t *c, uint64_t first, uint64_t count) {
    mpb__buf_t *b = mpb__req(c, MPB_OP_POOL_CANCEL, NULL, 0, 2);
    mpb__w_uint(b, first);
    mpb__w_uint(b, count);
    mpb__send(c, NULL, NULL);
}

static void ranges_add(mpb_client_t *c, ranges_t *r, uint64_t first, uint64_t count) {
    if (r->n && r->v[r->n - 1].first + r->v[r->n - 1].count == first) {
        r->v[r->n - 1].count += count; /* the common case: the next batch of the same map */
        return;
    }
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 16;
        range_t *nv = realloc(r->v, ncap * sizeof *nv);
        if (!nv) { /* no room to merge it: it goes alone */
            send_cancel(c, first, count);
            return;
        }
        r->v = nv;
        r->cap = ncap;
    }
    r->v[r->n++] = (range_t){first, count};
}

static int range_cmp(const void *x, const void *y) {
    const range_t *a = x, *b = y;
    return a->first < b->first ? -1 : a->first > b->first;
}

/* Sends the cancels (replies not awaited) and frees the list. */
static void ranges_send(mpb_client_t *c, ranges_t *r) {
    if (r->n) qsort(r->v, r->n, sizeof *r->v, range_cmp);
    for (size_t i = 0; i < r->n;) {
        uint64_t first = r->v[i].first, end = first + r->v[i].count;
        for (i++; i < r->n && r->v[i].first <= end; i++)
            if (r->v[i].first + r->v[i].count > end) end = r->v[i].first + r->v[i].count;
        send_cancel(c, first, end - first);
    }
    free(r->v);
    *r = (ranges_t){0};
}

static void async_ranges(mpb_client_t *c, mpb_async_t *a, ranges_t *r) {
    for (size_t i = 0; i < a->nranges; i++) ranges_add(c, r, a->firsts[i], a->counts[i]);
}

/* The ids of an iterator's chunks that have not come back. */
static void imap_ranges(mpb_client_t *c, mpb_imap_t *it, ranges_t *r) {
    if (!it->slots || !it->ids) return;
    for (uint64_t q = it->consumed; q < it->submitted; q++) {
        islot_t *s = &it->slots[q % it->window];
        if (s->used && !s->out) ranges_add(c, r, it->ids[q % it->window], 1);
    }
}

static void cancel_ranges(mpb_client_t *c, mpb_async_t *a) {
    ranges_t r = {0};
    async_ranges(c, a, &r);
    ranges_send(c, &r);
}

void mpb_async_free(mpb_async_t **ap) {
    mpb_async_t *a = *ap;
    if (!a) return;
    *ap = NULL;
    if (a->submitting && a->p) submits_settle(a->p, 0); /* its reply names it */
    if (a->p && a->notify_pending) { /* finished: its callback is owed */
        notify_remove(a->p, a);
        notify_one(a);
    }
    if (a->p) {
        mpb_client_t *c = a->p->c;
        if (!a->ready && mpb__usable(c) == 0) {
            cancel_ranges(c, a);
            mpb_flush(c);
        }
        route_forget(c, a);
        async_unlink(a);
    }
    async_destroy(a);
}

/* ---- imap ---- */

/* Submits chunks while fewer than window are out. A chunk ends at chunksize items or where
 * the next item would take it past max_value; that item waits in it->carry. */
static int imap_fill(mpb_imap_t *it) {
    mpb_pool_t *p = it->p;
    mpb_client_t *c = p->c;
    size_t limit = task_limit(c);
    mpb__buf_t batch = {0};
    uint32_t nt = 0;
    uint64_t seq0 = it->submitted;
    while (!it->canceled && (!it->input_done || it->has_carry) &&
           it->submitted + nt - it->consumed < it->window &&
           (nt == 0 || batch.len + limit + 16 <= c->max_frame / 2)) {
        uint32_t k = 0;
        mpb__buf_t chunk = {0};
        while (k < it->chunksize) {
            const void *item;
            size_t il;
            if (it->has_carry) {
                item = it->carry.p;
                il = it->carry.len;
            } else {
                if (it->input_done) break;
                int r = it->next(it->arg, &item, &il);
                if (r < 0) {
                    it->input_err = r;
                    it->input_done = true;
                    break;
                }
                if (r == 0) {
                    it->input_done = true;
                    break;
                }
                if (mpb__mp_check1(item, il, MPB__MAX_DEPTH) != (long)il) {
                    it->input_err = MPB_EINVAL;
                    it->input_done = true;
                    break;
                }
                if (il + 6 > limit) {
                    it->input_err = MPB_ETOOBIG;
                    snprintf(it->input_msg, sizeof it->input_msg,
                             "an item of %zu bytes > max_value %zu", il, c->max_value);
                    it->input_done = true;
                    break;
                }
            }
            if (k && chunk.len + il + 6 > limit) { /* full: the item starts the next chunk */
                if (!it->has_carry) {
                    mpb__buf_reset(&it->carry);
                    mpb__w_raw(&it->carry, item, il);
                    if (it->carry.oom) {
                        it->input_err = MPB_ENOMEM;
                        it->input_done = true;
                    } else {
                        it->has_carry = true;
                    }
                }
                break;
            }
            mpb__w_array(&chunk, 1);
            mpb__w_raw(&chunk, item, il);
            it->has_carry = false; /* item may have been it->carry: copied just now */
            k++;
        }
        if (k) {
            mpb__w_array(&batch, k);
            mpb__w_raw(&batch, chunk.p, chunk.len);
            it->slots[(seq0 + nt) % it->window] = (islot_t){.used = true, .n = k};
            nt++;
        }
        mpb__buf_free(&chunk);
        if (!k) break;
    }
    int rc = 0;
    if (nt) {
        uint64_t first;
        rc = batch.oom ? MPB_ENOMEM : submit(p, it->fn, it->job, batch.p, batch.len, nt, &first, &it->job);
        for (uint32_t i = 0; !rc && i < nt; i++) {
            it->ids[(seq0 + i) % it->window] = first + i;
            if (route_add(c, first + i, it, A_IMAP, seq0 + i)) rc = MPB_ENOMEM;
        }
        if (!rc) it->submitted += nt;
        pthread_mutex_lock(&c->mu);
        pump_take(c);
        pthread_mutex_unlock(&c->mu);
    }
    mpb__buf_free(&batch);
    return rc;
}

static void imap_arrive(mpb_imap_t *it, uint64_t seq, const uint8_t *out, size_t len) {
    islot_t *s = &it->slots[seq % it->window];
    s->out = malloc(len ? len : 1);
    if (!s->out) {
        it->fail = MPB_ENOMEM;
        return;
    }
    memcpy(s->out, out, len);
    s->len = len;
    s->pos = 0;
}

int mpb_pool_imap(mpb_pool_t *p, const char *fn, mpb_next_fn next, void *arg, size_t chunksize,
                  int ordered, size_t window, mpb_imap_t **out) {
    *out = NULL;
    int rc = check_fn(p, fn);
    if (rc) return rc;
    if (!next) return mpb__fail(p->c, MPB_EINVAL, "next is NULL");
    mpb_imap_t *it = calloc(1, sizeof *it);
    if (!it) return mpb__fail(p->c, MPB_ENOMEM, "out of memory");
    it->p = p;
    snprintf(it->fn, sizeof it->fn, "%s", fn);
    it->next = next;
    it->arg = arg;
    it->chunksize = chunksize ? chunksize : 1;
    it->window = window ? window : 64;
    it->ordered = ordered != 0;
    it->slots = calloc(it->window, sizeof *it->slots);
    it->ids = calloc(it->window, sizeof *it->ids);
    if (!it->slots || !it->ids) {
        mpb_imap_free(&it);
        return mpb__fail(p->c, MPB_ENOMEM, "out of memory");
    }
    it->inext = p->imaps;
    if (p->imaps) p->imaps->iprev = it;
    p->imaps = it;
    rc = imap_fill(it);
    if (rc) {
        mpb_imap_free(&it);
        return rc;
    }
    *out = it;
    return 0;
}

/* The slot to read from: the oldest chunk (ordered), or any that has arrived. */
static islot_t *imap_ready(mpb_imap_t *it) {
    if (it->consumed == it->submitted) return NULL;
    if (it->ordered) {
        islot_t *s = &it->slots[it->consumed % it->window];
        return s->out ? s : NULL;
    }
    for (uint64_t q = it->consumed; q < it->submitted; q++) {
        islot_t *s = &it->slots[q % it->window];
        if (s->out) return s;
    }
    return NULL;
}

/* Marks fully read chunks done, oldest first (unordered reads may finish later ones first). */
static void imap_retire(mpb_imap_t *it) {
    while (it->consumed < it->submitted) {
        islot_t *s = &it->slots[it->consumed % it->window];
        if (s->used) break;
        it->consumed++;
    }
}

int mpb_imap_next(mpb_imap_t *it, int timeout_ms, void **result, size_t *rlen) {
    if (!it) return MPB_EINVAL;
    if (!it->p) return MPB_ECLOSED; /* its pool was freed */
    mpb_client_t *c = it->p->c;
    if (it->canceled)
        return mpb__fail(c, MPB_ECANCELED, "imap of '%s' canceled by terminate()", it->fn);
    int64_t end = timeout_ms < 0 ? INT64_MAX : mpb__now_ms() + timeout_ms;
    for (;;) {
        islot_t *s = imap_ready(it);
        if (s) {
            mpb__rd_t r = {s->out, s->out + s->len};
            uint32_t n = 0;
            mpb__rd_array(&r, &n);
            uint32_t two;
            bool ok = false;
            const uint8_t *v = NULL;
            size_t vn = 0;
            int rc = 0;
            for (uint32_t k = 0; k <= s->pos && k < n; k++) {
                if (mpb__rd_array(&r, &two) || mpb__rd_bool(&r, &ok) || mpb__rd_span(&r, &v, &vn)) {
                    rc = mpb__fail(c, MPB_EPROTO, "malformed result");
                    break;
                }
            }
            if (!rc && n != s->n) rc = mpb__fail(c, MPB_EPROTO, "a chunk came back with %u of %u results", n, s->n);
            if (!rc && !ok) {
                mpb__rd_t m = {v, v + vn};
                const char *msg = "";
                uint32_t ml = 0;
                mpb__rd_str(&m, &msg, &ml);
                char m2[600];
                remote_msg(m2, sizeof m2, it->fn, msg, ml);
                rc = mpb__fail(c, MPB_EREMOTE, "%s", m2);
            }
            if (!rc) rc = mpb__dup(c, v, vn, result, rlen);
            if (++s->pos >= s->n) {
                free(s->out);
                *s = (islot_t){0};
                imap_retire(it);
                int frc = imap_fill(it);
                if (frc && !rc) rc = frc;
            }
            return rc;
        }
        if (it->consumed == it->submitted && it->input_done) {
            if (it->input_err) {
                int e = it->input_err;
                it->input_err = 0;
                if (it->input_msg[0])
                    return mpb__fail(c, e, "the input of imap: %s", it->input_msg);
                return mpb__fail(c, e, "the input of imap failed (%s)", mpb_strerror(e));
            }
            return mpb__fail(c, MPB_ECLOSED, "no more results");
        }
        if (it->fail) return mpb__fail(c, it->fail, "imap: %s", mpb_strerror(it->fail));
        int64_t left = end == INT64_MAX ? -1 : end - mpb__now_ms();
        if (end != INT64_MAX && left <= 0) {
            uint64_t nworkers = 0;
            capacity(it->p, it->fn, &nworkers);
            return mpb__fail(c, MPB_ETIMEDOUT, "timed out waiting for a result of '%s'%s",
                             it->fn, nworkers ? "" : ": no worker serves it");
        }
        int rc = mpb_poll(c, (int)(left < 0 || left > 1000 ? 1000 : left));
        run_notify(it->p);
        if (rc < 0) return rc;
    }
}

void mpb_imap_free(mpb_imap_t **itp) {
    mpb_imap_t *it = *itp;
    if (!it) return;
    *itp = NULL;
    mpb_pool_t *p = it->p;
    if (p) { /* detached from a freed pool, it has nothing more to tell the broker */
        mpb_client_t *c = p->c;
        if (!it->canceled && mpb__usable(c) == 0) {
            ranges_t r = {0};
            imap_ranges(c, it, &r);
            ranges_send(c, &r);
            mpb_flush(c);
        }
        route_forget(c, it);
        if (it->iprev) it->iprev->inext = it->inext;
        else p->imaps = it->inext;
        if (it->inext) it->inext->iprev = it->iprev;
    }
    mpb__buf_free(&it->carry);
    if (it->slots)
        for (size_t i = 0; i < it->window; i++) free(it->slots[i].out);
    free(it->slots);
    free(it->ids);
    free(it);
}

/* ---- close, join, terminate ---- */

int mpb_pool_close(mpb_pool_t *p) {
    if (!p) return MPB_EINVAL;
    p->closed = true;
    return 0;
}

void mpb_pool_set_output(mpb_pool_t *p, mpb_output_cb cb, void *arg) {
    if (!p) return;
    p->out_cb = cb;
    p->out_arg = arg;
}

int mpb_pool_poll(mpb_pool_t *p, int timeout_ms) {
    if (!p) return MPB_EINVAL;
    size_t before = p->outstanding;
    int rc = mpb_poll(p->c, timeout_ms);
    size_t done = before - p->outstanding;
    run_notify(p);
    if (rc < 0) return rc;
    return (int)done;
}

int mpb_pool_join(mpb_pool_t *p, int timeout_ms) {
    if (!p) return MPB_EINVAL;
    if (!p->closed) return mpb__fail(p->c, MPB_EINVAL, "join() before close() or terminate()");
    int64_t end = timeout_ms < 0 ? INT64_MAX : mpb__now_ms() + timeout_ms;
    while (p->outstanding) {
        int64_t left = end == INT64_MAX ? -1 : end - mpb__now_ms();
        if (end != INT64_MAX && left <= 0)
            return mpb__fail(p->c, MPB_ETIMEDOUT, "%zu results still outstanding",
                             p->outstanding);
        int rc = mpb_poll(p->c, (int)(left < 0 || left > 1000 ? 1000 : left));
        run_notify(p);
        if (rc < 0) return rc;
    }
    run_notify(p);
    return 0;
}

int mpb_pool_terminate(mpb_pool_t *p) {
    if (!p) return MPB_EINVAL;
    p->closed = true;
    if (mpb__usable(p->c)) return mpb__usable(p->c);
    submits_settle(p, 0); /* every apply has its task id */
    ranges_t r = {0};
    for (mpb_async_t *a = p->asyncs; a; a = a->next) {
        if (a->ready) continue;
        a->canceled = true;
        async_ranges(p->c, a, &r);
    }
    for (mpb_imap_t *it = p->imaps; it; it = it->inext) {
        if (it->canceled) continue;
        imap_ranges(p->c, it, &r);
        it->canceled = true;
        it->input_done = true;
        route_forget(p->c, it); /* what still comes for it is dropped */
    }
    ranges_send(p->c, &r); /* 80,000 applies in a row are one cancel */
    return mpb_flush(p->c);
}

void mpb_pool_free(mpb_pool_t **pp) {
    mpb_pool_t *p = *pp;
    if (!p) return;
    *pp = NULL;
    run_notify(p);
    if (p->submitting && mpb__usable(p->c) == 0) submits_settle(p, 0);
    if ((p->outstanding || p->imaps) && mpb__usable(p->c) == 0) mpb_pool_terminate(p);
    while (p->imaps) { /* a caller's iterator stays valid (detached) until mpb_imap_free */
        mpb_imap_t *it = p->imaps;
        p->imaps = it->inext;
        route_forget(p->c, it);
        it->inext = it->iprev = NULL;
        it->p = NULL;
    }
    while (p->asyncs) {
        mpb_async_t *a = p->asyncs;
        route_forget(p->c, a);
        async_unlink(a);
        if (a->kept_by_pool) async_destroy(a);
        /* a handle the caller holds stays valid (detached) until mpb_async_free */
    }
    free(p);
}

/* pool_imap.c - imap and imap_unordered: a window of chunks in flight, filled from the
 * caller's next() as results are consumed, handed out in order (or as they come). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

/* ---- imap ---- */

/* Submits chunks while fewer than window are out. A chunk ends at chunksize items or where
 * the next item would take it past max_value; that item waits in it->carry. */
static int imap_fill(mpb_imap_t *it) {
    mpb_pool_t *p = it->p;
    mpb_client_t *c = p->c;
    size_t limit = mpb__pool_task_limit(c);
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
        rc = batch.oom
                 ? mpb__fail(c, MPB_ENOMEM, "out of memory")
                 : mpb__pool_submit(p, it->fn, it->job, batch.p, batch.len, nt, &first, &it->job);
        for (uint32_t i = 0; !rc && i < nt; i++) {
            it->ids[(seq0 + i) % it->window] = first + i;
            if (mpb__pool_route_add(c, first + i, it, A_IMAP, seq0 + i))
                rc = mpb__fail(c, MPB_ENOMEM, "out of memory");
        }
        if (!rc) it->submitted += nt;
        pthread_mutex_lock(&c->mu);
        mpb__pool_pump_take(c);
        pthread_mutex_unlock(&c->mu);
    }
    mpb__buf_free(&batch);
    return rc;
}

void mpb__pool_imap_arrive(mpb_imap_t *it, uint64_t seq, const uint8_t *out, size_t len) {
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
    int rc = mpb__pool_check_fn(p, fn);
    if (rc) return rc;
    MPB__POOL_HOLD(p->c);
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
    LIST_INSERT_HEAD(&p->imaps, it, ilink);
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
    MPB__POOL_HOLD(c);
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
            if (!rc && n != s->n)
                rc = mpb__fail(c, MPB_EPROTO, "a chunk came back with %u of %u results", n, s->n);
            if (!rc && !ok) {
                mpb__rd_t m = {v, v + vn};
                const char *msg = "";
                uint32_t ml = 0;
                mpb__rd_str(&m, &msg, &ml);
                char m2[600];
                mpb__pool_remote_msg(m2, sizeof m2, it->fn, msg, ml);
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
            mpb__pool_capacity(it->p, it->fn, &nworkers);
            return mpb__fail(c, MPB_ETIMEDOUT, "timed out waiting for a result of '%s'%s", it->fn,
                             nworkers ? "" : ": no worker serves it");
        }
        int rc = mpb_poll(c, (int)(left < 0 || left > 1000 ? 1000 : left));
        mpb__pool_run_notify(it->p);
        if (rc < 0) return rc;
    }
}

void mpb_imap_free(mpb_imap_t **itp) {
    mpb_imap_t *it = *itp;
    if (!it) return;
    *itp = NULL;
    mpb_pool_t *p = it->p;
    MPB__POOL_HOLD(p ? p->c : NULL);
    if (p) { /* detached from a freed pool, it has nothing more to tell the broker */
        mpb_client_t *c = p->c;
        if (!it->canceled && mpb__usable(c) == 0) {
            ranges_t r = {0};
            mpb__pool_imap_ranges(c, it, &r);
            mpb__pool_ranges_send(c, &r);
            mpb_flush(c);
        }
        mpb__pool_route_forget(c, it);
        LIST_REMOVE(it, ilink);
    }
    mpb__buf_free(&it->carry);
    if (it->slots)
        for (size_t i = 0; i < it->window; i++)
            free(it->slots[i].out);
    free(it->slots);
    free(it->ids);
    free(it);
}

/* async_thread.c - when the caller's callbacks run: where replies are read (the default), on a
 * thread of libmpb's as they arrive (mpb_set_callback_thread), or in the caller's own loop
 * (mpb_fd + mpb_process). Callbacks of one client never run at once: each runs holding the
 * client's cb_mu, and never holding its mu (the socket's lock), so a callback may call the
 * client again and the heartbeat goes on while a long one computes. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <zmq.h>

#include "pool.h"

_Thread_local int mpb__in_reply;

/* ---- replies put off for the callback thread ---- */

void mpb__reply_cb(mpb_client_t *c, bool user, mpb_callback_t cb, void *arg, int status,
                   const void *val, size_t len) {
    if (user && c->cbt_on) {
        size_t ml = status ? strlen(c->err) + 1 : 0;
        mpb__later_t *l = malloc(sizeof *l + len + ml);
        if (l) { /* without memory it runs here, at once: late is worse than on this thread */
            *l = (mpb__later_t){.cb = cb, .arg = arg, .status = status, .len = len};
            if (len) memcpy(l->data, val, len);
            if (ml) {
                l->msg = (char *)l->data + len;
                memcpy(l->msg, c->err, ml);
            }
            STAILQ_INSERT_TAIL(&c->later, l, link);
            mpb__cb_due(c);
            return;
        }
    }
    mpb__in_reply++;
    cb(c, status, val, len, arg);
    mpb__in_reply--;
}

void mpb__cb_due(mpb_client_t *c) {
    if (!c->cbt_on) return;
    uint64_t one = 1;
    ssize_t n = write(c->cbt_wake, &one, sizeof one); /* EAGAIN: it is awake already */
    (void)n;
}

void mpb__cb_kick(mpb_client_t *c) {
    if (!c->cbt_on) return;
    if (c->ufd >= 0) {
        if (mpb__unix_pending(c)) mpb__cb_due(c);
        return;
    }
    if (!c->sock) return;
    int ev = 0;
    size_t len = sizeof ev;
    /* Reading ZMQ_EVENTS also re-arms ZMQ_FD when nothing is left. */
    if (zmq_getsockopt(c->sock, ZMQ_EVENTS, &ev, &len) == 0 && (ev & ZMQ_POLLIN)) mpb__cb_due(c);
}

/* Holds of pool calls by this thread, on the one client whose pool call it is in. */
static _Thread_local int held_here;

mpb__hold_t mpb__hold(mpb_client_t *c) {
    if (c) {
        pthread_mutex_lock(&c->mu);
        held_here++;
    }
    return (mpb__hold_t){c};
}

void mpb__hold_end(mpb__hold_t *h) {
    if (!h->c) return;
    held_here--;
    pthread_mutex_unlock(&h->c->mu);
}

bool mpb__cb_enter(mpb_client_t *c, int *held) {
    *held = held_here;
    for (int i = 0; i < *held; i++)
        pthread_mutex_unlock(&c->mu);
    held_here = 0;
    if (pthread_mutex_trylock(&c->cb_mu) == 0) return true;
    /* A callback run inline by a reading call holds some client's mu: waiting for cb_mu
     * could wait for a callback that waits for that mu. The thread holding cb_mu runs what
     * is due. */
    if (!mpb__in_reply) {
        pthread_mutex_lock(&c->cb_mu);
        return true;
    }
    mpb__cb_leave(c, -1 - *held);
    return false;
}

/* held < 0: cb_mu was not taken (-1 - the holds to take back). */
void mpb__cb_leave(mpb_client_t *c, int held) {
    if (held >= 0)
        pthread_mutex_unlock(&c->cb_mu);
    else
        held = -1 - held;
    for (int i = 0; i < held; i++)
        pthread_mutex_lock(&c->mu);
    held_here = held;
}

void mpb__run_callbacks(mpb_client_t *c, bool pools) {
    if (!c->cbt_on && !pools) return; /* nothing is ever put off */
    int held;
    if (!mpb__cb_enter(c, &held)) return;
    if (c->cb_running) { /* called from a callback: the loop below goes on after it */
        mpb__cb_leave(c, held);
        return;
    }
    c->cb_running = true;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        mpb__later_t *l = STAILQ_FIRST(&c->later);
        if (l) {
            STAILQ_REMOVE_HEAD(&c->later, link);
            if (l->msg) snprintf(c->err, sizeof c->err, "%s", l->msg);
        }
        pthread_mutex_unlock(&c->mu);
        if (!l) break;
        l->cb(c, l->status, l->status ? NULL : l->data, l->len, l->arg);
        free(l);
    }
    /* A callback may close a pool (any of them): start over when one was. */
    for (bool again = pools; again;) {
        again = false;
        struct mpb_pool *p;
        LIST_FOREACH(p, &c->pools, clink) {
            unsigned gen = c->pools_gen;
            mpb__pool_run_notify(p);
            if (gen != c->pools_gen) {
                again = true;
                break;
            }
        }
    }
    c->cb_running = false;
    mpb__cb_leave(c, held);
}

/* ---- the callback thread ---- */

static void *cbt_main(void *arg) {
    mpb_client_t *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->cbt_stop) {
        /* Read to the end (which re-arms the descriptor), then run what is due. */
        if (c->connected && !mpb__read_arrived(c))
            mpb_flush(c); /* what reading queued (a pool's next take) */
        int fd = mpb_fd(c);
        pthread_mutex_unlock(&c->mu);
        mpb__run_callbacks(c, true);
        struct pollfd p[2] = {
            {c->cbt_wake, POLLIN, 0},
            {fd,          POLLIN, 0}
        };
        /* A bounded wait: a reconnect may have made the descriptor another one. */
        if (poll(p, fd >= 0 ? 2 : 1, 1000) > 0 && p[0].revents) {
            uint64_t n;
            ssize_t r = read(c->cbt_wake, &n, sizeof n);
            (void)r;
        }
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

int mpb_set_callback_thread(mpb_client_t *c, int on) {
    if (!c) return MPB_EINVAL;
    pthread_mutex_lock(&c->mu);
    int rc = mpb__usable(c);
    if (!rc && c->cbt_on && pthread_equal(pthread_self(), c->cbt))
        rc = mpb__fail(c, MPB_EBUSY,
                       "the callback thread cannot stop itself: call this from "
                       "another thread");
    if (rc || (on != 0) == c->cbt_on) {
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    if (!on) {
        pthread_mutex_unlock(&c->mu);
        mpb__cb_stop(c);
        mpb__run_callbacks(c, true); /* what it had put off runs here */
        return 0;
    }
    c->cbt_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->cbt_wake < 0) rc = mpb__fail(c, MPB_ENOMEM, "eventfd: %s", strerror(errno));
    c->cbt_stop = false;
    c->cbt_on = !rc; /* before it starts: replies read from now on are put off */
    if (!rc && pthread_create(&c->cbt, NULL, cbt_main, c) != 0) {
        c->cbt_on = false;
        close(c->cbt_wake);
        rc = mpb__fail(c, MPB_ENOMEM, "cannot start the callback thread");
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void mpb__cb_stop(mpb_client_t *c) {
    if (!c->cbt_on) return;
    pthread_mutex_lock(&c->mu);
    c->cbt_stop = true;
    mpb__cb_due(c);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->cbt, NULL);
    pthread_mutex_lock(&c->mu);
    c->cbt_on = false;
    close(c->cbt_wake);
    pthread_mutex_unlock(&c->mu);
}

void mpb__cb_free(mpb_client_t *c) {
    while (!STAILQ_EMPTY(&c->later)) {
        mpb__later_t *l = STAILQ_FIRST(&c->later);
        STAILQ_REMOVE_HEAD(&c->later, link);
        free(l);
    }
}

/* ---- the caller's own loop ---- */

int mpb_process(mpb_client_t *c) {
    if (!c) return MPB_EINVAL;
    pthread_mutex_lock(&c->mu);
    int rc = mpb__read_arrived(c);
    if (!rc) rc = mpb_flush(c); /* what reading queued (a pool's next take) */
    int64_t now = mpb__now_ms();
    int64_t due = rc ? 0 : mpb__ping_if_due(c, now) - now;
    mpb__cb_kick(c);
    pthread_mutex_unlock(&c->mu);
    mpb__run_callbacks(c, true);
    if (rc) return rc;
    return due < 1 ? 1 : due > 1000 ? 1000 : (int)due;
}

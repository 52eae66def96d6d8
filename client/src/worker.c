/* worker.c - serving pool tasks. One thread talks to the broker (a parked pool.fetch for as
 * many tasks as there is credit, pool.done for finished ones); `concurrency` threads run the
 * functions. Finished tasks wake the talking thread through a pipe it polls beside its
 * ZeroMQ socket, so results go out at once even while a fetch is parked. Results go back in
 * pool.done requests that each fit in a frame; a result the broker could not take (over
 * max_value, or a chunk's results over max_frame) is replaced by an error saying so. When
 * serve returns, pool.unregister tells the broker this session serves no more.
 *
 *   broker ──fetch reply──> [todo] ──threads──> [done] ──pipe──> pool.done ──> broker */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "internal.h"

/* How long a stopping worker waits for the broker to take its last results and its unregister
 * before it gives up on it: not so long that a stop (SIGTERM, podman stop) hangs on a dead one. */
#define STOP_GRACE_MS 2000

typedef struct fnent {
    char name[256];
    mpb_task_fn fn;
    void *ctx;
} fnent_t;

typedef struct job {
    uint64_t id;
    const fnent_t *fn;
    uint8_t *calls;
    size_t len;
    mpb__buf_t out; /* outcomes */
    struct job *next;
} job_t;

struct mpb_worker {
    mpb_client_t *c;
    fnent_t *fns;
    size_t nfns;
    int concurrency, prefetch;
    uint64_t max_tasks, received, done;
    int (*init)(void *);
    void *init_arg;
    bool inited;
    size_t max_value; /* the broker's, for the threads */
    volatile sig_atomic_t stop;
    int pipefd[2];
    pthread_t *threads;
    int nthreads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job_t *todo_head, *todo_tail, *done_head;
    bool quit;    /* threads: no more jobs will come */
    int inflight; /* received, not yet reported */
    bool fetching;
    int64_t fetch_sent_ms; /* when the parked fetch went out */
    int64_t stop_ms;       /* when winding down began (0: not yet) */
    bool unregistered; /* pool.unregister sent: the broker took back what it had given */
    int err;
};

int mpb_worker_new(mpb_client_t *c, mpb_worker_t **out) {
    *out = NULL;
    if (!c) return MPB_EINVAL;
    mpb_worker_t *w = calloc(1, sizeof *w);
    if (!w) return mpb__fail(c, MPB_ENOMEM, "out of memory");
    w->c = c;
    w->concurrency = 1;
    w->prefetch = 1;
    w->pipefd[0] = w->pipefd[1] = -1;
    if (pipe(w->pipefd) != 0) {
        free(w);
        return mpb__fail(c, MPB_ENOMEM, "pipe: %s", strerror(errno));
    }
    for (int i = 0; i < 2; i++) fcntl(w->pipefd[i], F_SETFL, O_NONBLOCK);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    *out = w;
    return 0;
}

static void job_free(job_t *j) {
    free(j->calls);
    mpb__buf_free(&j->out);
    free(j);
}

void mpb_worker_free(mpb_worker_t **wp) {
    mpb_worker_t *w = *wp;
    if (!w) return;
    *wp = NULL;
    for (job_t *j = w->todo_head, *n; j; j = n) {
        n = j->next;
        job_free(j);
    }
    for (job_t *j = w->done_head, *n; j; j = n) {
        n = j->next;
        job_free(j);
    }
    close(w->pipefd[0]);
    close(w->pipefd[1]);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->fns);
    free(w);
}

int mpb_worker_add(mpb_worker_t *w, const char *name, mpb_task_fn fn, void *ctx) {
    if (!w) return MPB_EINVAL;
    if (!name || !mpb__name_ok(name, strlen(name)) || !fn)
        return mpb__fail(w->c, MPB_EINVAL, "function names are 1 to 255 printable characters");
    fnent_t *f = realloc(w->fns, (w->nfns + 1) * sizeof *f);
    if (!f) return mpb__fail(w->c, MPB_ENOMEM, "out of memory");
    w->fns = f;
    snprintf(f[w->nfns].name, sizeof f[w->nfns].name, "%s", name);
    f[w->nfns].fn = fn;
    f[w->nfns].ctx = ctx;
    w->nfns++;
    return 0;
}

void mpb_worker_set_concurrency(mpb_worker_t *w, int n) {
    if (!w) return;
    w->concurrency = n < 1 ? 1 : n;
}

void mpb_worker_set_prefetch(mpb_worker_t *w, int n) {
    if (!w) return;
    w->prefetch = n < 0 ? 0 : n;
}

void mpb_worker_set_initializer(mpb_worker_t *w, int (*init)(void *arg), void *arg) {
    if (!w) return;
    w->init = init;
    w->init_arg = arg;
}

void mpb_worker_set_max_tasks(mpb_worker_t *w, uint64_t n) {
    if (!w) return;
    w->max_tasks = n;
}

uint64_t mpb_worker_tasks_done(const mpb_worker_t *w) {
    if (!w) return 0;
    return w->done;
}

void mpb_worker_stop(mpb_worker_t *w) {
    if (!w) return;
    w->stop = 1;
    ssize_t r = write(w->pipefd[1], "s", 1);
    (void)r;
}

/* ---- the executing threads ---- */

/* [false, msg] for each of n calls, in place of what out held. */
static void fail_outcomes(mpb__buf_t *out, uint32_t n, const char *msg) {
    mpb__buf_reset(out);
    mpb__w_array(out, n);
    for (uint32_t k = 0; k < n; k++) {
        mpb__w_array(out, 2);
        mpb__w_bool(out, false);
        mpb__w_cstr(out, msg);
    }
}

static void run_job(job_t *j, size_t max_value) {
    mpb__rd_t r = {j->calls, j->calls + j->len};
    uint32_t n = 0;
    mpb__rd_array(&r, &n);
    mpb__w_array(&j->out, n);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *args;
        size_t alen;
        char err[1024] = "";
        void *res = NULL;
        size_t rlen = 0;
        mpb__rd_span(&r, &args, &alen);
        int rc = j->fn->fn(j->fn->ctx, args, alen, &res, &rlen, err, sizeof err);
        mpb__w_array(&j->out, 2);
        if (rc == 0 && res && rlen > max_value) { /* the broker would not hold it */
            mpb__w_bool(&j->out, false);
            snprintf(err, sizeof err, "result of %zu bytes > max_value %zu", rlen, max_value);
            mpb__w_cstr(&j->out, err);
        } else if (rc == 0 && res && mpb__mp_check1(res, rlen, MPB__MAX_DEPTH) == (long)rlen) {
            mpb__w_bool(&j->out, true);
            mpb__w_raw(&j->out, res, rlen);
        } else {
            mpb__w_bool(&j->out, false);
            if (rc == 0) snprintf(err, sizeof err, "%s returned no well-formed msgpack value",
                                  j->fn->name);
            else if (!err[0]) snprintf(err, sizeof err, "%s failed (error %d)", j->fn->name, rc);
            mpb__w_cstr(&j->out, err);
        }
        free(res);
    }
}

static void *thread_main(void *arg) {
    mpb_worker_t *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->todo_head && !w->quit) pthread_cond_wait(&w->cv, &w->mu);
        if (!w->todo_head) break;
        job_t *j = w->todo_head;
        w->todo_head = j->next;
        if (!w->todo_head) w->todo_tail = NULL;
        pthread_mutex_unlock(&w->mu);
        run_job(j, w->max_value);
        pthread_mutex_lock(&w->mu);
        j->next = w->done_head;
        w->done_head = j;
        ssize_t r = write(w->pipefd[1], "d", 1);
        (void)r;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- talking to the broker ---- */

static const fnent_t *find_fn(mpb_worker_t *w, const char *name, uint32_t n) {
    for (size_t i = 0; i < w->nfns; i++)
        if (strlen(w->fns[i].name) == n && !memcmp(w->fns[i].name, name, n)) return &w->fns[i];
    return NULL;
}

static void on_fetch(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    mpb_worker_t *w = arg;
    (void)c;
    w->fetching = false;
    if (status) {
        if (status != MPB_ETIMEDOUT) w->err = status;
        return;
    }
    if (w->unregistered) return; /* tasks sent before the broker saw it: it queued them again */
    mpb__rd_t r = {val, (const uint8_t *)val + len};
    uint32_t n;
    if (mpb__rd_array(&r, &n)) return;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t three, fl;
        uint64_t id;
        const char *fname;
        const uint8_t *calls;
        size_t cl;
        if (mpb__rd_array(&r, &three) || three != 3 || mpb__rd_uint(&r, &id) ||
            mpb__rd_str(&r, &fname, &fl) || mpb__rd_span(&r, &calls, &cl))
            return;
        job_t *j = calloc(1, sizeof *j);
        if (!j || !(j->calls = malloc(cl))) {
            free(j);
            w->err = MPB_ENOMEM;
            return;
        }
        j->id = id;
        memcpy(j->calls, calls, cl);
        j->len = cl;
        j->fn = find_fn(w, fname, fl);
        w->received++;
        w->inflight++;
        if (!j->fn) { /* the broker sent a function we do not serve: answer with an error */
            mpb__rd_t cr = {calls, calls + cl};
            uint32_t nc = 0;
            mpb__rd_array(&cr, &nc);
            mpb__w_array(&j->out, nc);
            for (uint32_t k = 0; k < nc; k++) {
                mpb__w_array(&j->out, 2);
                mpb__w_bool(&j->out, false);
                mpb__w_cstr(&j->out, "this worker does not serve that function");
            }
            pthread_mutex_lock(&w->mu);
            j->next = w->done_head;
            w->done_head = j;
            pthread_mutex_unlock(&w->mu);
            continue;
        }
        pthread_mutex_lock(&w->mu);
        if (w->todo_tail) w->todo_tail->next = j;
        else w->todo_head = j;
        w->todo_tail = j;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
}

static void on_done_reply(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    (void)c;
    (void)val;
    (void)len;
    mpb_worker_t *w = arg;
    if (status) w->err = status;
}

/* Room for results in one pool.done: the frame less its header, MAC and the request's own. */
static size_t done_room(const mpb_client_t *c) {
    return c->max_frame > 2048 ? c->max_frame - 1024 : c->max_frame / 2;
}

/* Sends pool.done for every finished job, as many requests as it takes for each to fit in a
 * frame of its own. */
static int report(mpb_worker_t *w) {
    pthread_mutex_lock(&w->mu);
    job_t *list = w->done_head;
    w->done_head = NULL;
    pthread_mutex_unlock(&w->mu);
    if (!list) return 0;
    mpb_client_t *c = w->c;
    size_t room = done_room(c);
    int rc = mpb_flush(c); /* what is queued goes first: each pool.done gets a frame to itself */
    for (job_t *j = list; j; j = j->next) {
        if (j->out.len + 16 <= room) continue;
        mpb__rd_t r = {j->calls, j->calls + j->len};
        uint32_t nc = 0;
        mpb__rd_array(&r, &nc);
        char msg[128];
        snprintf(msg, sizeof msg, "result of %zu bytes > max_frame %zu", j->out.len, c->max_frame);
        fail_outcomes(&j->out, nc, msg);
    }
    for (job_t *j = list; j && !rc;) {
        uint32_t n = 0;
        size_t bytes = 0;
        job_t *end = j;
        for (; end && (n == 0 || bytes + end->out.len + 16 <= room); end = end->next) {
            bytes += end->out.len + 16;
            n++;
        }
        mpb__buf_t *b = mpb__req(c, MPB_OP_POOL_DONE, NULL, 0, 1);
        mpb__w_array(b, n);
        for (; j != end; j = j->next) {
            mpb__w_array(b, 2);
            mpb__w_uint(b, j->id);
            mpb__w_raw(b, j->out.p, j->out.len);
        }
        rc = mpb__send(c, on_done_reply, w);
        if (!rc) rc = mpb_flush(c);
    }
    for (job_t *j = list, *nx; j; j = nx) {
        nx = j->next;
        job_free(j);
        w->inflight--;
        w->done++;
    }
    return rc;
}

static int fetch(mpb_worker_t *w) {
    int64_t credit = w->concurrency + w->prefetch - w->inflight;
    if (w->max_tasks && w->max_tasks - w->received < (uint64_t)credit)
        credit = (int64_t)(w->max_tasks - w->received);
    if (credit <= 0) return 0;
    mpb__buf_t *b = mpb__req(w->c, MPB_OP_POOL_FETCH, NULL, 0, 2);
    mpb__w_int(b, credit);
    mpb__w_int(b, 1000); /* short, so a stop never waits long for a parked fetch */
    int rc = mpb__send(w->c, on_fetch, w);
    if (!rc) {
        w->fetching = true;
        w->fetch_sent_ms = mpb__now_ms();
    }
    return rc;
}

int mpb_worker_serve(mpb_worker_t *w) {
    if (!w) return MPB_EINVAL;
    mpb_client_t *c = w->c;
    if (!w->nfns) return mpb__fail(c, MPB_EINVAL, "no function to serve: mpb_worker_add() first");
    if (w->init && !w->inited) { /* before registering: no task is given to a worker that fails */
        int irc = w->init(w->init_arg);
        if (irc) return mpb__fail(c, MPB_EINVAL, "the initializer failed (returned %d)", irc);
        w->inited = true;
    }
    w->max_value = c->max_value;
    w->received = 0;
    w->unregistered = false;
    w->quit = false;
    w->err = 0;
    mpb__buf_t *b = mpb__req(c, MPB_OP_POOL_REGISTER, NULL, 0, 3);
    mpb__w_array(b, (uint32_t)w->nfns);
    for (size_t i = 0; i < w->nfns; i++) mpb__w_cstr(b, w->fns[i].name);
    mpb__w_int(b, w->concurrency);
    mpb__w_int(b, w->prefetch);
    const uint8_t *v;
    size_t vn;
    int rc = mpb__call(c, 0, &v, &vn);
    if (rc) return rc;
    w->threads = calloc((size_t)w->concurrency, sizeof *w->threads);
    if (!w->threads) return mpb__fail(c, MPB_ENOMEM, "out of memory");
    for (int i = 0; i < w->concurrency; i++) {
        if (pthread_create(&w->threads[i], NULL, thread_main, w) != 0) break;
        w->nthreads++;
    }
    if (!w->nthreads) return mpb__fail(c, MPB_ENOMEM, "cannot start worker threads");
    void *sock = c->sock;
    while (!w->err) {
        bool winding_down = w->stop || (w->max_tasks && w->received >= w->max_tasks);
        if (winding_down && !w->fetching && w->inflight == 0) break;
        /* A broker that is gone says nothing (pings get no replies), so silence is the sign:
         * the parked fetch is answered within its 1 s, and a stop within a couple of seconds
         * once every running task has finished. */
        int64_t now = mpb__now_ms();
        if (w->fetching && now - w->fetch_sent_ms > 1000 + c->opts.op_timeout_ms) {
            rc = mpb__fail(c, MPB_ECONN, "no answer from the broker for %lld ms",
                           (long long)(now - w->fetch_sent_ms));
            break;
        }
        if (winding_down && w->inflight == 0 && !w->stop_ms) w->stop_ms = now; /* all ran */
        if (w->stop_ms && now - w->stop_ms > STOP_GRACE_MS) {
            rc = mpb__fail(c, MPB_ECONN, "stopping: no answer from the broker for %d ms",
                           STOP_GRACE_MS);
            break;
        }
        if (winding_down && w->inflight == 0 && !w->unregistered) {
            /* all reported: unregistering also answers the parked fetch, so this ends now */
            if ((rc = report(w))) break;
            mpb__req(c, MPB_OP_POOL_UNREGISTER, NULL, 0, 0);
            if ((rc = mpb__send(c, NULL, NULL))) break;
            w->unregistered = true;
        }
        if (!winding_down && !w->fetching && (rc = fetch(w))) break;
        if ((rc = report(w))) break;
        if ((rc = mpb_flush(c))) break;
        zmq_pollitem_t it[2] = {{sock, 0, ZMQ_POLLIN, 0}, {NULL, w->pipefd[0], ZMQ_POLLIN, 0}};
        if (zmq_poll(it, 2, 500) < 0 && zmq_errno() != EINTR) {
            rc = mpb__fail(c, MPB_ECONN, "poll: %s", zmq_strerror(zmq_errno()));
            break;
        }
        if (it[1].revents & ZMQ_POLLIN) {
            char drain[256];
            while (read(w->pipefd[0], drain, sizeof drain) > 0) {
            }
        }
        rc = mpb_poll(c, 0);
        if (rc < 0) break;
        rc = 0;
    }
    if (!rc && w->err) rc = w->err;
    /* Let the threads finish what they hold, and report it if the connection allows. */
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < w->nthreads; i++) pthread_join(w->threads[i], NULL);
    free(w->threads);
    w->threads = NULL;
    w->nthreads = 0;
    if (!rc) {
        report(w);
        if (!w->unregistered) { /* `mpb pool` lists it no more */
            mpb__req(c, MPB_OP_POOL_UNREGISTER, NULL, 0, 0);
            mpb__send(c, NULL, NULL);
        }
        mpb_drain(c, c->opts.op_timeout_ms);
    }
    w->stop = 0; /* a stop ends one serve; the worker may serve again */
    w->stop_ms = 0;
    w->fetching = false;
    char drain[256];
    while (read(w->pipefd[0], drain, sizeof drain) > 0) {
    }
    return rc;
}

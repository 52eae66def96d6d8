/* worker.c - serving pool tasks. One thread talks to the broker (a parked pool.fetch for as
 * many tasks as there is credit, pool.start to ask before starting a tentative task, pool.done
 * for finished ones); `concurrency` threads run the functions, only while the lease holds (the
 * broker answered within half a session TTL), or hand each task to a child process of their
 * own (process mode), which the talking thread kills when the broker says the task is over.
 * Finished tasks wake the talking thread through a pipe it polls beside its ZeroMQ socket, so
 * results go out at once even while a fetch is parked. Results go back in pool.done requests
 * that each fit in a frame; a result the broker could not take (over max_value, or a chunk's
 * results over max_frame) is replaced by an error saying so. When serve returns,
 * pool.unregister tells the broker this session serves no more. The executing threads and
 * process mode are in worker_run.c.
 *
 *   broker ──fetch reply──> [todo] ──threads──> [done] ──pipe──> pool.done ──> broker */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <zmq.h>

#include "worker.h"

/* How long a stopping worker waits for the broker to take its last results and its unregister
 * before it gives up on it: not so long that a stop (SIGTERM, podman stop) hangs on a dead one. */
#define STOP_GRACE_MS 2000

int mpb_worker_open(mpb_client_t *c, mpb_worker_t **out) {
    *out = NULL;
    if (!c) return MPB_EINVAL;
    mpb_worker_t *w = calloc(1, sizeof *w);
    if (!w) return mpb__fail(c, MPB_ENOMEM, "out of memory");
    w->c = c;
    w->concurrency = 1;
    w->prefetch = MPB_WORKER_PREFETCH;
    w->pipefd[0] = w->pipefd[1] = -1;
    if (pipe(w->pipefd) != 0) {
        free(w);
        return mpb__fail(c, MPB_ENOMEM, "pipe: %s", strerror(errno));
    }
    for (int i = 0; i < 2; i++)
        fcntl(w->pipefd[i], F_SETFL, O_NONBLOCK);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    TAILQ_INIT(&w->todo);
    TAILQ_INIT(&w->finished);
    TAILQ_INIT(&w->ask);
    STAILQ_INIT(&w->asked);
    *out = w;
    return 0;
}

static void job_free(job_t *j) {
    free(j->calls);
    mpb__buf_free(&j->output);
    mpb__buf_free(&j->out);
    free(j);
}

/* Frees every job on list l, leaving it empty. */
static void jobs_free(struct wjob_list *l) {
    while (!TAILQ_EMPTY(l)) {
        job_t *j = TAILQ_FIRST(l);
        TAILQ_REMOVE(l, j, link);
        job_free(j);
    }
}

/* Forgets the pool.start requests not answered (the connection is gone). */
static void asked_free(mpb_worker_t *w) {
    while (!STAILQ_EMPTY(&w->asked)) {
        asked_t *a = STAILQ_FIRST(&w->asked);
        STAILQ_REMOVE_HEAD(&w->asked, link);
        jobs_free(&a->jobs);
        free(a);
    }
    w->nasking = 0;
}

void mpb_worker_close(mpb_worker_t **wp) {
    mpb_worker_t *w = *wp;
    if (!w) return;
    *wp = NULL;
    jobs_free(&w->todo);
    jobs_free(&w->finished);
    jobs_free(&w->ask);
    asked_free(w);
    mpb__buf_free(&w->stream);
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

void mpb_worker_set_forward_output(mpb_worker_t *w, int on) {
    if (!w) return;
    w->forward_output = on != 0;
    if (on) w->isolate = MPB_ISOLATE_PROCESS;
}

void mpb_worker_set_isolate(mpb_worker_t *w, int mode) {
    if (!w) return;
    w->isolate = mode == MPB_ISOLATE_PROCESS ? MPB_ISOLATE_PROCESS : MPB_ISOLATE_THREAD;
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

/* ---- talking to the broker ---- */

static const fnent_t *find_fn(mpb_worker_t *w, const char *name, uint32_t n) {
    for (size_t i = 0; i < w->nfns; i++)
        if (strlen(w->fns[i].name) == n && !memcmp(w->fns[i].name, name, n)) return &w->fns[i];
    return NULL;
}

/* Held tasks may start until half a session's life after the broker last answered a request
 * sent at sent_ms: before then it cannot have taken this session for dead. */
static void lease_renew(mpb_worker_t *w, int64_t sent_ms) {
    int64_t until = sent_ms + w->c->ttl_ms / 2;
    if (until > __atomic_load_n(&w->lease_until, __ATOMIC_ACQUIRE))
        __atomic_store_n(&w->lease_until, until, __ATOMIC_RELEASE);
}

static void todo_push(mpb_worker_t *w, job_t *j) {
    pthread_mutex_lock(&w->mu);
    TAILQ_INSERT_TAIL(&w->todo, j, link);
    w->ntodo++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void done_push(mpb_worker_t *w, job_t *j) {
    pthread_mutex_lock(&w->mu);
    TAILQ_INSERT_TAIL(&w->finished, j, link);
    pthread_mutex_unlock(&w->mu);
}

/* Removes the job with this id and attempt from list l. */
static job_t *list_take(struct wjob_list *l, uint64_t id, uint64_t gen) {
    job_t *j;
    TAILQ_FOREACH(j, l, link) {
        if (j->id != id || j->gen != gen) continue;
        TAILQ_REMOVE(l, j, link);
        return j;
    }
    return NULL;
}

/* The broker finished a task this worker holds (cancelled, timed out, its caller gone): one not
 * started is dropped; a running one's process is killed (its thread replaces it), or on a
 * thread, the task is told (mpb_task_cancelled()) and its result will not be sent. */
static void stop_task(mpb_worker_t *w, uint64_t id, uint64_t gen) {
    job_t *j = list_take(&w->ask, id, gen);
    pthread_mutex_lock(&w->mu);
    if (!j && (j = list_take(&w->todo, id, gen))) w->ntodo--;
    if (!j) {
        for (int i = 0; i < w->nthreads; i++) {
            slot_t *sl = &w->slots[i];
            if (!sl->job || sl->job->id != id || sl->job->gen != gen) continue;
            sl->job->fate = J_KILLED;
            __atomic_store_n(&sl->job->cancelled, 1, __ATOMIC_RELEASE);
            if (sl->pid) kill(sl->pid, SIGKILL);
            w->killed++;
        }
    }
    pthread_mutex_unlock(&w->mu);
    if (j) {
        w->inflight--;
        job_free(j);
    }
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
    lease_renew(w, w->fetch_sent_ms);
    mpb__rd_t r = {val, (const uint8_t *)val + len};
    uint32_t n;
    if (mpb__rd_array(&r, &n)) return;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t five, fl;
        uint64_t id, gen;
        bool start;
        const char *fname;
        const uint8_t *calls;
        size_t cl;
        mpb__rd_t kr = r;
        if (!mpb__rd_array(&kr, &five) && five == 2) { /* [task_id, attempt]: stop it */
            if (mpb__rd_uint(&kr, &id) || mpb__rd_uint(&kr, &gen)) return;
            r = kr;
            stop_task(w, id, gen);
            continue;
        }
        if (mpb__rd_array(&r, &five) || five != 5 || mpb__rd_uint(&r, &id) ||
            mpb__rd_str(&r, &fname, &fl) || mpb__rd_span(&r, &calls, &cl) ||
            mpb__rd_uint(&r, &gen) || mpb__rd_bool(&r, &start))
            return;
        job_t *j = calloc(1, sizeof *j);
        if (!j || !(j->calls = malloc(cl))) {
            free(j);
            w->err = MPB_ENOMEM;
            return;
        }
        j->id = id;
        j->gen = gen;
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
            done_push(w, j);
            continue;
        }
        if (start)
            todo_push(w, j);
        else
            TAILQ_INSERT_TAIL(&w->ask, j, link);
    }
}

/* The broker's answer to pool.start: the granted go to the threads, the refused are dropped
 * (the broker gave them to another worker, or took this session for dead). */
static void on_start(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    mpb_worker_t *w = arg;
    asked_t *a = STAILQ_FIRST(&w->asked);
    (void)c;
    if (!a) return;
    STAILQ_REMOVE_HEAD(&w->asked, link);
    w->nasking -= a->n;
    mpb__rd_t r = {val, (const uint8_t *)val + len};
    uint32_t n = 0;
    if (status)
        w->err = status;
    else if (mpb__rd_array(&r, &n))
        n = 0;
    else
        lease_renew(w, a->sent_ms);
    uint64_t next_ok = 0;
    bool have = n > 0 && !mpb__rd_uint(&r, &next_ok);
    while (!TAILQ_EMPTY(&a->jobs)) {
        job_t *j = TAILQ_FIRST(&a->jobs);
        TAILQ_REMOVE(&a->jobs, j, link);
        if (have && j->id == next_ok) { /* granted ids come in the order they were named */
            todo_push(w, j);
            have = --n > 0 && !mpb__rd_uint(&r, &next_ok);
            continue;
        }
        w->refused++;
        w->inflight--;
        job_free(j);
    }
    free(a);
}

/* Asks the broker for leave to start as many held tasks as there are slots free. */
static int ask_start(mpb_worker_t *w) {
    pthread_mutex_lock(&w->mu);
    int free_slots = w->concurrency - w->nrunning - w->ntodo - w->nasking;
    pthread_mutex_unlock(&w->mu);
    if (free_slots <= 0 || TAILQ_EMPTY(&w->ask)) return 0;
    asked_t *a = calloc(1, sizeof *a);
    if (!a) return mpb__fail(w->c, MPB_ENOMEM, "out of memory");
    TAILQ_INIT(&a->jobs);
    while (!TAILQ_EMPTY(&w->ask) && a->n < free_slots) {
        job_t *j = TAILQ_FIRST(&w->ask);
        TAILQ_REMOVE(&w->ask, j, link);
        TAILQ_INSERT_TAIL(&a->jobs, j, link);
        a->n++;
    }
    mpb__buf_t *b = mpb__req(w->c, MPB_OP_POOL_START, NULL, 0, 1);
    mpb__w_array(b, (uint32_t)a->n);
    job_t *j;
    TAILQ_FOREACH(j, &a->jobs, link) {
        mpb__w_array(b, 2);
        mpb__w_uint(b, j->id);
        mpb__w_uint(b, j->gen);
    }
    a->sent_ms = mpb__now_ms();
    w->nasking += a->n;
    STAILQ_INSERT_TAIL(&w->asked, a, link);
    return mpb__send(w->c, on_start, w);
}

/* The lease ran out with tasks waiting for the threads: they go back to be asked about. */
static void lease_lapsed(mpb_worker_t *w) {
    pthread_mutex_lock(&w->mu);
    w->lease_note = false;
    if (!TAILQ_EMPTY(&w->todo) && !mpb__worker_lease_ok(w)) { /* todo, then ask, is the new ask */
        TAILQ_CONCAT(&w->todo, &w->ask, link);
        TAILQ_CONCAT(&w->ask, &w->todo, link);
        w->ntodo = 0;
    }
    pthread_mutex_unlock(&w->mu);
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
    struct wjob_list list = TAILQ_HEAD_INITIALIZER(list);
    mpb__buf_t stream = {0};
    pthread_mutex_lock(&w->mu);
    TAILQ_CONCAT(&list, &w->finished, link);
    uint32_t nstream = w->nstream;
    if (nstream) { /* what tasks wrote goes before their results */
        stream = w->stream;
        w->stream = (mpb__buf_t){0};
        w->nstream = 0;
    }
    pthread_mutex_unlock(&w->mu);
    if (TAILQ_EMPTY(&list) && !nstream) return 0;
    mpb_client_t *c = w->c;
    size_t room = w->room;
    int rc = mpb_flush(c); /* what is queued goes first: each pool.done gets a frame to itself */
    if (nstream && !rc && !stream.oom) {
        mpb__buf_t *b = mpb__req(c, MPB_OP_POOL_OUTPUT, NULL, 0, 1);
        mpb__w_array(b, nstream);
        mpb__w_raw(b, stream.p, stream.len);
        rc = mpb__send(c, NULL, NULL); /* best effort: what is lost is output, not results */
        if (!rc) rc = mpb_flush(c);
    }
    mpb__buf_free(&stream);
    job_t *j, *end;
    TAILQ_FOREACH(j, &list, link) {
        if (j->out.len + j->output.len + 16 > room) { /* the result goes first */
            mpb__buf_reset(&j->output);
            j->noutput = 0;
        }
        if (j->out.len + 16 <= room) continue;
        mpb__rd_t r = {j->calls, j->calls + j->len};
        uint32_t nc = 0;
        mpb__rd_array(&r, &nc);
        char msg[128];
        snprintf(msg, sizeof msg, "result of %zu bytes > max_frame %zu", j->out.len, c->max_frame);
        mpb__worker_fail_outcomes(&j->out, nc, msg);
    }
    for (j = TAILQ_FIRST(&list); j && !rc; j = end) {
        uint32_t n = 0, nsent = 0;
        size_t bytes = 0;
        for (end = j; end && (n == 0 || bytes + end->out.len + end->output.len + 16 <= room);
             end = TAILQ_NEXT(end, link)) {
            bytes += end->out.len + end->output.len + 16;
            n++;
            nsent += end->fate != J_KILLED;
        }
        if (!nsent) continue; /* only stopped tasks: the broker is done with them already */
        mpb__buf_t *b = mpb__req(c, MPB_OP_POOL_DONE, NULL, 0, 1);
        mpb__w_array(b, nsent);
        for (job_t *k = j; k != end; k = TAILQ_NEXT(k, link)) {
            if (k->fate == J_KILLED) continue;
            bool with_output = k->noutput && k->fate == J_RAN;
            mpb__w_array(b, with_output ? 3 : 2);
            mpb__w_uint(b, k->id);
            if (k->fate == J_DIED)
                mpb__w_bool(b, false); /* its process died: a retry */
            else
                mpb__w_raw(b, k->out.p, k->out.len);
            if (with_output) { /* [[stream, bytes], ...] */
                mpb__w_array(b, k->noutput);
                mpb__w_raw(b, k->output.p, k->output.len);
            }
        }
        rc = mpb__send(c, on_done_reply, w);
        if (!rc) rc = mpb_flush(c);
    }
    while (!TAILQ_EMPTY(&list)) {
        j = TAILQ_FIRST(&list);
        TAILQ_REMOVE(&list, j, link);
        w->died += j->fate == J_DIED;
        w->done += j->fate == J_RAN;
        job_free(j);
        w->inflight--;
    }
    return rc;
}

/* How long a fetch stays parked: short, so a stop never waits long for it, and a fraction of
 * the session's life, so an idle worker's lease stays fresh. */
static int fetch_park_ms(const mpb_worker_t *w) {
    int third = w->c->ttl_ms / 3;
    return third > 0 && third < 1000 ? third : 1000;
}

static int fetch(mpb_worker_t *w) {
    int64_t credit = w->concurrency + w->prefetch - w->inflight;
    if (w->max_tasks && w->max_tasks - w->received < (uint64_t)credit)
        credit = (int64_t)(w->max_tasks - w->received);
    if (credit < 0) credit = 0;
    /* A fetch stays parked even without credit: its reply also carries the tasks to stop.
     * Such a fetch is short, so that one for tasks follows soon once a slot is free (the
     * broker parks one fetch per worker). */
    mpb__buf_t *b = mpb__req(w->c, MPB_OP_POOL_FETCH, NULL, 0, 2);
    mpb__w_int(b, credit);
    mpb__w_int(b, credit ? fetch_park_ms(w) : 50);
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
    w->room = done_room(c);
    w->received = 0;
    w->unregistered = false;
    w->quit = false;
    w->err = 0;
    bool isolated = w->isolate == MPB_ISOLATE_PROCESS;
    mpb__buf_t *b = mpb__req(c, MPB_OP_POOL_REGISTER, NULL, 0, isolated ? 4 : 3);
    mpb__w_array(b, (uint32_t)w->nfns);
    for (size_t i = 0; i < w->nfns; i++)
        mpb__w_cstr(b, w->fns[i].name);
    mpb__w_int(b, w->concurrency);
    mpb__w_int(b, w->prefetch);
    if (isolated) mpb__w_bool(b, true); /* it can stop a running task */
    const uint8_t *v;
    size_t vn;
    int64_t sent = mpb__now_ms();
    __atomic_store_n(&w->lease_until, 0, __ATOMIC_RELEASE);
    int rc = mpb__call(c, 0, &v, &vn);
    if (rc) return rc;
    lease_renew(w, sent);
    w->threads = calloc((size_t)w->concurrency, sizeof *w->threads);
    w->slots = calloc((size_t)w->concurrency, sizeof *w->slots);
    if (!w->threads || !w->slots) {
        free(w->threads);
        free(w->slots);
        w->threads = NULL;
        w->slots = NULL;
        return mpb__fail(c, MPB_ENOMEM, "out of memory");
    }
    for (int i = 0; i < w->concurrency; i++) {
        w->slots[i].w = w;
        /* forked ahead: a task starts at once */
        if (isolated && mpb__worker_slot_spawn(&w->slots[i])) break;
        if (pthread_create(&w->threads[i], NULL, mpb__worker_thread_main, &w->slots[i]) != 0) {
            mpb__worker_slot_reap(&w->slots[i]);
            break;
        }
        w->nthreads++;
    }
    if (!w->nthreads) return mpb__fail(c, MPB_ENOMEM, "cannot start worker threads");
    while (!w->err) {
        bool winding_down = w->stop || (w->max_tasks && w->received >= w->max_tasks);
        if (winding_down && !w->fetching && w->inflight == 0) break;
        /* A broker that is gone says nothing (pings get no replies), so silence is the sign:
         * the parked fetch is answered within its 1 s, and a stop within a couple of seconds
         * once every running task has finished. */
        int64_t now = mpb__now_ms();
        if (w->fetching && now - w->fetch_sent_ms > fetch_park_ms(w) + c->opts.op_timeout_ms) {
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
        lease_lapsed(w);
        if ((rc = ask_start(w))) break;
        if (!winding_down && !w->fetching && (rc = fetch(w))) break;
        if ((rc = report(w))) break;
        if ((rc = mpb_flush(c))) break;
        /* The client's socket is the heartbeat thread's too: wait on it holding the client's
         * lock (so no ping is sent from there meanwhile: libzmq sockets are not thread-safe,
         * and a ping racing this poll corrupted the socket) and send the pings from here. */
        pthread_mutex_lock(&c->mu);
        int64_t to_ping = c->last_send_ms + c->heartbeat_ms / 2 - mpb__now_ms();
        int wait = to_ping < 500 ? (to_ping < 0 ? 0 : (int)to_ping) : 500;
        zmq_pollitem_t it[2] = {
            {c->sock, c->sock ? 0 : c->ufd, ZMQ_POLLIN, 0}, /* none while reconnecting */
            {NULL,    w->pipefd[0],         ZMQ_POLLIN, 0}
        };
        if (c->ufd >= 0 && mpb__unix_pending(c)) wait = 0; /* read already, or lost */
        int prc = zmq_poll(it, 2, wait);
        if (prc < 0 && zmq_errno() != EINTR) {
            rc = mpb__fail(c, MPB_ECONN, "poll: %s", zmq_strerror(zmq_errno()));
            pthread_mutex_unlock(&c->mu);
            break;
        }
        mpb__ping_if_due(c, mpb__now_ms());
        pthread_mutex_unlock(&c->mu);
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
    for (int i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    for (int i = 0; i < w->nthreads; i++)
        mpb__worker_slot_reap(&w->slots[i]);
    free(w->threads);
    free(w->slots);
    w->threads = NULL;
    w->slots = NULL;
    w->nthreads = 0;
    if (!rc) {
        report(w);
        if (!w->unregistered) { /* `mpb pool` lists it no more */
            mpb__req(c, MPB_OP_POOL_UNREGISTER, NULL, 0, 0);
            mpb__send(c, NULL, NULL);
        }
        mpb_drain(c, c->opts.op_timeout_ms);
    }
    /* What was held and not started: the broker has it back (unregistered, or the session
     * is gone). */
    jobs_free(&w->todo);
    jobs_free(&w->ask);
    w->ntodo = 0;
    asked_free(w);
    mpb__buf_reset(&w->stream);
    w->nstream = 0;
    w->inflight = 0;
    w->lease_note = false;
    w->stop = 0; /* a stop ends one serve; the worker may serve again */
    w->stop_ms = 0;
    w->fetching = false;
    char drain[256];
    while (read(w->pipefd[0], drain, sizeof drain) > 0) {
    }
    return rc;
}

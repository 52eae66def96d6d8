/* worker_run.c - running a worker's tasks: the executing threads, which run each function in
 * the thread while the lease holds (a task the broker finished meanwhile can see it:
 * mpb_task_cancelled()), or (process mode) in a child process of their own that sends its
 * result and output back over pipes and that the talking thread can kill. What a child writes
 * is handed on as it comes (pool.output), at most every STREAM_MS or STREAM_BYTES. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "worker.h"

/* ---- the executing threads ---- */

/* The cancel flag of the task this thread runs (thread mode), or NULL. */
static _Thread_local const int *cur_cancel;

int mpb_task_cancelled(void) {
    const int *f = cur_cancel;
    return f && __atomic_load_n(f, __ATOMIC_ACQUIRE);
}

/* [false, msg] for each of n calls, in place of what out held. */
void mpb__worker_fail_outcomes(mpb__buf_t *out, uint32_t n, const char *msg) {
    mpb__buf_reset(out);
    mpb__w_array(out, n);
    for (uint32_t k = 0; k < n; k++) {
        mpb__w_array(out, 2);
        mpb__w_bool(out, false);
        mpb__w_cstr(out, msg);
    }
}

/* The kind goes in err after the message's NUL, behind a record separator: the function may
 * come from a library with its own copy of libmpb, so only the buffer is shared.
 *   err: "3 is odd\0" "\x1e" "ValueError\0" */
int mpb_task_fail(char *err, size_t errlen, const char *kind, const char *fmt, ...) {
    if (!err || !errlen) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    size_t ml = strlen(err);
    if (kind && kind[0] && ml + 3 < errlen) {
        err[ml + 1] = 0x1e;
        snprintf(err + ml + 2, errlen - ml - 2 < 64 ? errlen - ml - 2 : 64, "%s", kind);
    }
    return -1;
}

/* The kind mpb_task_fail() left in err, or NULL. */
static const char *err_kind(const char *err, size_t errlen) {
    size_t ml = strnlen(err, errlen);
    return ml + 3 < errlen && err[ml + 1] == 0x1e && err[ml + 2] ? err + ml + 2 : NULL;
}

static void run_job(job_t *j, size_t max_value) {
    mpb__rd_t r = {j->calls, j->calls + j->len};
    uint32_t n = 0;
    mpb__rd_array(&r, &n);
    mpb__w_array(&j->out, n);
    /* Zeroed once, and again only after a call that wrote in it (err_kind looks past the
     * message's end): 1 KiB to clear per call was most of a tiny task's cost. */
    char err[1024];
    memset(err, 0, sizeof err);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *args;
        size_t alen;
        void *res = NULL;
        size_t rlen = 0;
        mpb__rd_span(&r, &args, &alen);
        if (err[0] || err[1]) memset(err, 0, sizeof err);
        int rc = j->fn->fn(j->fn->ctx, args, alen, &res, &rlen, err, sizeof err);
        err[sizeof err - 1] = 0;
        const char *kind = rc ? err_kind(err, sizeof err) : NULL;
        bool kinded = kind != NULL; /* [false, message, kind] */
        mpb__w_array(&j->out, kinded ? 3 : 2);
        if (rc == 0 && res && rlen > max_value) { /* the broker would not hold it */
            mpb__w_bool(&j->out, false);
            snprintf(err, sizeof err, "result of %zu bytes > max_value %zu", rlen, max_value);
            mpb__w_cstr(&j->out, err);
        } else if (rc == 0 && res && mpb__mp_check1(res, rlen, MPB__MAX_DEPTH) == (long)rlen) {
            mpb__w_bool(&j->out, true);
            mpb__w_raw(&j->out, res, rlen);
        } else {
            mpb__w_bool(&j->out, false);
            if (rc == 0)
                snprintf(err, sizeof err, "%s returned no well-formed msgpack value", j->fn->name);
            else if (!err[0])
                snprintf(err, sizeof err, "%s failed (error %d)", j->fn->name, rc);
            mpb__w_cstr(&j->out, err);
            if (kinded) mpb__w_cstr(&j->out, kind);
        }
        free(res);
    }
}

/* ---- process mode ---- */

static int write_all(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        ssize_t k = write(fd, b, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n) {
    uint8_t *b = p;
    while (n) {
        ssize_t k = read(fd, b, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* A child's life: [fn index, length, calls] in, [length, outcomes] out, until EOF. */
static void child_main(mpb_worker_t *w, int in, int out) {
    for (;;) {
        uint32_t hdr[2];
        if (read_all(in, hdr, sizeof hdr) || hdr[0] >= w->nfns) _exit(0);
        job_t j = {0};
        j.fn = &w->fns[hdr[0]];
        j.len = hdr[1];
        if (!(j.calls = malloc(j.len ? j.len : 1)) || read_all(in, j.calls, j.len)) _exit(1);
        run_job(&j, w->max_value);
        fflush(stdout); /* its output reaches the worker before its result */
        fflush(stderr);
        uint32_t len = (uint32_t)j.out.len;
        if (j.out.oom || write_all(out, &len, sizeof len) || write_all(out, j.out.p, len)) _exit(1);
        free(j.calls);
        mpb__buf_free(&j.out);
    }
}

/* Forks the slot's child. It inherits the worker's memory (the functions and their state) but
 * touches nothing of the connection; it dies with the worker. */
int mpb__worker_slot_spawn(slot_t *sl) {
    int a[2], b[2], o[2] = {-1, -1}, e[2] = {-1, -1};
    if (sl->w->forward_output && (pipe(o) || pipe(e))) {
        for (int i = 0; i < 2; i++) {
            if (o[i] >= 0) close(o[i]);
            if (e[i] >= 0) close(e[i]);
        }
        return -1;
    }
    sl->out_fd[0] = o[0];
    sl->out_fd[1] = e[0];
    if (pipe(a)) return -1;
    if (pipe(b)) {
        close(a[0]);
        close(a[1]);
        return -1;
    }
    fflush(stdout); /* what the worker wrote is not the child's to write again */
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(a[0]);
        close(a[1]);
        close(b[0]);
        close(b[1]);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_IGN); /* a terminal's ^C is for the worker, which stops cleanly */
        close(a[1]);
        close(b[0]);
        if (o[1] >= 0) { /* its stdout and stderr: pipes the worker reads, per task */
            close(o[0]);
            close(e[0]);
            dup2(o[1], 1);
            dup2(e[1], 2);
            close(o[1]);
            close(e[1]);
            setvbuf(stdout, NULL, _IOLBF, 0); /* a line reaches the caller as it is written */
        }
        child_main(sl->w, a[0], b[1]);
        _exit(0);
    }
    close(a[0]);
    close(b[1]);
    for (int i = 0; i < 2 && o[1] >= 0; i++) {
        close(i ? e[1] : o[1]);
        fcntl(sl->out_fd[i], F_SETFD, FD_CLOEXEC);
        fcntl(sl->out_fd[i], F_SETFL, O_NONBLOCK);
    }
    fcntl(a[1], F_SETFD, FD_CLOEXEC);
    fcntl(b[0], F_SETFD, FD_CLOEXEC);
    sl->pid = pid;
    sl->to_child = a[1];
    sl->from_child = b[0];
    return 0;
}

void mpb__worker_slot_reap(slot_t *sl) {
    if (!sl->pid) return;
    close(sl->to_child);
    close(sl->from_child);
    for (int i = 0; i < 2; i++)
        if (sl->out_fd[i] >= 0) close(sl->out_fd[i]);
    kill(sl->pid, SIGKILL);
    while (waitpid(sl->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    sl->pid = 0;
}

/* --forward-output keeps this much of one task's output; the rest is cut, saying so. */
#define OUTPUT_MAX 65536
/* What a task wrote goes to the talking thread this long after its first unsent byte, or as
 * soon as this much gathers: a few messages a second for a chatty task, at once for a burst. */
#define STREAM_MS    50
#define STREAM_BYTES 16384

static void output_chunk(job_t *j, int stream, const void *p, size_t n) {
    mpb__w_array(&j->output, 2);
    mpb__w_int(&j->output, stream);
    mpb__w_bin(&j->output, p, n);
    j->noutput++;
    j->output_bytes += n;
}

/* Reads what the child wrote to its stdout and stderr, without waiting, into j->output. */
static void drain_output(slot_t *sl, job_t *j) {
    static const char note[] = "\n[output cut at 65536 bytes]\n";
    char buf[4096];
    for (int i = 0; i < 2; i++) {
        ssize_t k;
        while ((k = read(sl->out_fd[i], buf, sizeof buf)) > 0) {
            /* Cut already: read on, drop. Exactly at the bound is not cut yet (a read may end
             * there): the note goes when a byte more comes. */
            if (j->output_bytes > OUTPUT_MAX) continue;
            size_t take = (size_t)k;
            bool cut = j->output_bytes + take > OUTPUT_MAX;
            if (cut) take = OUTPUT_MAX - j->output_bytes;
            if (take) output_chunk(j, i + 1, buf, take);
            if (cut) output_chunk(j, i + 1, note, sizeof note - 1); /* over the bound now */
        }
    }
}

/* Hands what j wrote so far to the talking thread, for its next pool.output, unless that
 * would pass a request's room (it then goes later, or with the result). */
static void stream_output(mpb_worker_t *w, job_t *j) {
    pthread_mutex_lock(&w->mu);
    if (w->stream.len + j->output.len + 64 <= w->room) {
        mpb__w_array(&w->stream, 3); /* [task_id, attempt, [[stream, bytes], ...]] */
        mpb__w_uint(&w->stream, j->id);
        mpb__w_uint(&w->stream, j->gen);
        mpb__w_array(&w->stream, j->noutput);
        mpb__w_raw(&w->stream, j->output.p, j->output.len);
        w->nstream++;
        mpb__buf_reset(&j->output);
        j->noutput = 0;
        ssize_t r = write(w->pipefd[1], "o", 1);
        (void)r;
    }
    pthread_mutex_unlock(&w->mu);
}

/* Until the child's result starts to come (or it dies), reads its output as it comes and
 * hands it on: a child blocked on a full output pipe never gets to its result otherwise, and
 * a caller watching a long task sees its lines while it runs. */
static int wait_result(slot_t *sl, job_t *j) {
    int64_t due = 0; /* when what was read and not handed on goes */
    for (;;) {
        struct pollfd pf[3] = {
            {sl->from_child, POLLIN, 0},
            {sl->out_fd[0],  POLLIN, 0},
            {sl->out_fd[1],  POLLIN, 0}
        };
        int wait = -1;
        if (j->noutput) {
            int64_t left = due - mpb__now_ms();
            wait = left > 0 ? (int)left : 0;
        }
        if (poll(pf, 3, wait) < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (pf[1].revents | pf[2].revents) {
            bool had = j->noutput > 0;
            drain_output(sl, j);
            if (!had) due = mpb__now_ms() + STREAM_MS;
        }
        if (pf[0].revents) return 0; /* the rest goes with the result */
        if (j->noutput && (j->output.len >= STREAM_BYTES || mpb__now_ms() >= due)) {
            stream_output(sl->w, j);
            due = mpb__now_ms() + STREAM_MS; /* if it did not fit: the next try */
        }
    }
}

/* Runs j in the slot's child. A child that dies (the task killed it, or the worker stopped the
 * task) is reaped and replaced; j's fate says which. */
static void run_isolated(slot_t *sl, job_t *j) {
    mpb_worker_t *w = sl->w;
    if (!sl->pid && mpb__worker_slot_spawn(sl)) {
        mpb__rd_t r = {j->calls, j->calls + j->len};
        uint32_t nc = 0;
        mpb__rd_array(&r, &nc);
        mpb__worker_fail_outcomes(&j->out, nc, "cannot start a process for the task");
        return;
    }
    uint32_t hdr[2] = {(uint32_t)(j->fn - w->fns), (uint32_t)j->len}, len;
    bool ok =
        !write_all(sl->to_child, hdr, sizeof hdr) && !write_all(sl->to_child, j->calls, j->len);
    if (ok && w->forward_output) ok = !wait_result(sl, j);
    if (ok) ok = !read_all(sl->from_child, &len, sizeof len);
    if (w->forward_output) drain_output(sl, j); /* what came after the wait */
    if (ok) {
        mpb__buf_reset(&j->out);
        uint8_t *p = malloc(len ? len : 1);
        ok = p && !read_all(sl->from_child, p, len);
        if (ok) mpb__w_raw(&j->out, p, len);
        free(p);
    }
    if (ok) return;
    pthread_mutex_lock(&w->mu);
    if (j->fate != J_KILLED) j->fate = J_DIED;
    pthread_mutex_unlock(&w->mu);
    mpb__worker_slot_reap(sl);
    mpb__worker_slot_spawn(sl); /* ready for the next task */
}

bool mpb__worker_lease_ok(mpb_worker_t *w) {
    return mpb__now_ms() < __atomic_load_n(&w->lease_until, __ATOMIC_ACQUIRE);
}

/* Takes the next job a thread may start: only while the lease holds, so a worker that was
 * paused or cut off past its session's end starts nothing the broker gave to another. When
 * the lease has run out, the talking thread is told (once) to ask the broker again. */
void *mpb__worker_thread_main(void *arg) {
    slot_t *sl = arg;
    mpb_worker_t *w = sl->w;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->quit && !(!TAILQ_EMPTY(&w->todo) && mpb__worker_lease_ok(w))) {
            if (!TAILQ_EMPTY(&w->todo) && !w->lease_note) {
                w->lease_note = true;
                ssize_t r = write(w->pipefd[1], "l", 1);
                (void)r;
            }
            pthread_cond_wait(&w->cv, &w->mu);
        }
        if (w->quit) break; /* what is left was not started: the broker has it back */
        job_t *j = TAILQ_FIRST(&w->todo);
        TAILQ_REMOVE(&w->todo, j, link);
        w->ntodo--;
        w->nrunning++;
        sl->job = j;
        pthread_mutex_unlock(&w->mu);
        if (w->isolate == MPB_ISOLATE_PROCESS) {
            run_isolated(sl, j);
        } else {
            cur_cancel = &j->cancelled;
            run_job(j, w->max_value);
            cur_cancel = NULL;
        }
        pthread_mutex_lock(&w->mu);
        sl->job = NULL;
        w->nrunning--;
        TAILQ_INSERT_TAIL(&w->finished, j, link);
        ssize_t r = write(w->pipefd[1], "d", 1);
        (void)r;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

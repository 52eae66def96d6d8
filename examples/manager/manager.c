/* manager.c - Python's classic multiprocessing.Manager example, in C with libmpb:
 *
 *     def work(k, n, squares, pids):
 *         for i in range(k, 20, n): squares[i] = i * i
 *         pids.append(os.getpid())
 *
 *     with Manager() as m:
 *         squares, pids = m.dict(), m.list()
 *         ps = [Process(target=work, args=(k, 4, squares, pids)) for k in range(4)]
 *         for p in ps: p.start()
 *         for p in ps: p.join()
 *         print(dict(sorted(squares.items())), pids)
 *
 * Here the Manager is a broker, mpbrokerd, which holds the dict "squares" and the list "pids".
 * The parent clears them and forks N workers. Each worker connects to the broker by itself,
 * sets squares[i] = i*i for its share of 0..19 and appends its pid to "pids". The parent waits
 * for them and prints both.
 *
 * usage: manager [ENDPOINT [N]]
 *   ENDPOINT  the broker: argv[1], else $MPB_ENDPOINT, else tcp://127.0.0.1:5555
 *   N         how many workers to fork (default 4)
 * The authkey is read from the file named by $MPB_AUTHKEY_FILE, or from $MPB_AUTHKEY.
 * See examples/README.md for how to start a broker and run this.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mpb/mpb.h>

#define NUMBERS     20 /* squares of 0..NUMBERS-1 */
#define MAX_WORKERS NUMBERS

/* Everything a process needs to reach the broker. Every process uses the same two. */
static const char *endpoint;
static void *authkey;
static size_t authkey_len;

/* Connects to the broker, or prints why not and returns NULL. */
static mpb_client_t *connect_to_broker(void) {
    mpb_client_t *c = NULL;
    int rc = mpb_connect(endpoint, authkey, authkey_len, NULL, &c);
    if (rc != 0) {
        /* c is set even on failure (except out of memory), so it can tell us why. */
        fprintf(stderr, "cannot connect to %s: %s\n", endpoint,
                c ? mpb_errmsg(c) : mpb_strerror(rc));
        mpb_close(&c);
    }
    return c;
}

/* Worker k of n: sets squares[i] = i*i for i = k, k+n, k+2n, ... < NUMBERS, then appends its
 * pid to "pids". Returns the process's exit status (0: all done).
 *
 * Here the workers are forked children, but a worker needs nothing from the parent except the
 * endpoint and the authkey: it could just as well be a program running on another host. */
static int worker(int k, int n) {
    mpb_client_t *c = connect_to_broker(); /* a session of its own */
    if (!c) return 1;

    /* Opening a name gives a handle to the shared object (created if it is new). */
    mpb_dict_t *squares = NULL;
    mpb_list_t *pids = NULL;
    int rc = mpb_dict_open(c, "squares", &squares);
    if (rc == 0) rc = mpb_list_open(c, "pids", &pids);

    for (int i = k; rc == 0 && i < NUMBERS; i += n) {
        /* Keys and values are msgpack values: mpb_pack_i64() encodes an integer. */
        uint8_t key[MPB_PACK_MAX_SCALAR], val[MPB_PACK_MAX_SCALAR];
        size_t klen = mpb_pack_i64(key, i);
        size_t vlen = mpb_pack_i64(val, (int64_t)i * i);
        rc = mpb_dict_set(squares, key, klen, val, vlen);
    }
    if (rc == 0) {
        uint8_t pid[MPB_PACK_MAX_SCALAR];
        rc = mpb_list_append(pids, pid, mpb_pack_i64(pid, getpid()));
    }
    if (rc != 0) fprintf(stderr, "worker %d: %s\n", k, mpb_errmsg(c));

    /* Closing a handle frees it, not the shared object; closing the client ends the session. */
    mpb_dict_close(&squares);
    mpb_list_close(&pids);
    mpb_close(&c);
    return rc == 0 ? 0 : 1;
}

/* Prints squares as Python prints a dict, and pids as a list. The keys are known to be
 * 0..NUMBERS-1, so getting each in turn prints the dict sorted by key. */
static int print_results(mpb_client_t *c, mpb_dict_t *squares, mpb_list_t *pids) {
    printf("squares = {");
    for (int i = 0; i < NUMBERS; i++) {
        uint8_t key[MPB_PACK_MAX_SCALAR];
        void *val = NULL; /* a new buffer from the library: mpb_free() it */
        size_t vlen;
        int64_t square;
        int rc = mpb_dict_get(squares, key, mpb_pack_i64(key, i), &val, &vlen);
        if (rc == 0) rc = mpb_unpack_i64(val, vlen, &square);
        mpb_free(val);
        if (rc != 0) {
            printf("...}\n");
            fprintf(stderr, "squares[%d]: %s\n", i, mpb_errmsg(c));
            return -1;
        }
        printf("%s%d: %lld", i ? ", " : "", i, (long long)square);
    }
    printf("}\n");

    uint64_t len = 0;
    if (mpb_list_len(pids, &len) != 0) {
        fprintf(stderr, "len(pids): %s\n", mpb_errmsg(c));
        return -1;
    }
    printf("pids = [");
    for (uint64_t i = 0; i < len; i++) {
        void *val = NULL;
        size_t vlen;
        int64_t pid;
        int rc = mpb_list_get(pids, (int64_t)i, &val, &vlen);
        if (rc == 0) rc = mpb_unpack_i64(val, vlen, &pid);
        mpb_free(val);
        if (rc != 0) {
            printf("...]\n");
            fprintf(stderr, "pids[%llu]: %s\n", (unsigned long long)i, mpb_errmsg(c));
            return -1;
        }
        printf("%s%lld", i ? ", " : "", (long long)pid);
    }
    printf("]\n");
    return (int)len;
}

int main(int argc, char **argv) {
    endpoint = argc > 1 ? argv[1] : getenv("MPB_ENDPOINT");
    if (!endpoint || !*endpoint) endpoint = "tcp://127.0.0.1:5555";
    int n = argc > 2 ? atoi(argv[2]) : 4;
    if (n < 1 || n > MAX_WORKERS) {
        fprintf(stderr, "usage: %s [ENDPOINT [N]]  (N: 1..%d workers)\n", argv[0], MAX_WORKERS);
        return 2;
    }

    /* The same key the broker has: NULL means $MPB_AUTHKEY_FILE, else $MPB_AUTHKEY. */
    char err[256];
    if (mpb_authkey_load(NULL, &authkey, &authkey_len, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }

    /* The parent's own session: the `with Manager() as m` of the Python version. */
    int status = 1;
    mpb_client_t *c = connect_to_broker();
    mpb_dict_t *squares = NULL;
    mpb_list_t *pids = NULL;
    if (!c) goto out;
    if (mpb_dict_open(c, "squares", &squares) != 0 || mpb_list_open(c, "pids", &pids) != 0 ||
        mpb_dict_clear(squares) != 0 || mpb_list_clear(pids) != 0) {
        fprintf(stderr, "%s\n", mpb_errmsg(c));
        goto out;
    }

    pid_t children[MAX_WORKERS];
    int started = 0;
    fflush(stdout); /* else each child would inherit, and print again, what is buffered */
    for (int k = 0; k < n; k++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            break;
        }
        if (pid == 0) {
            /* In the child. A client must not cross fork (see mpb.h): c belongs to the
             * parent, and every call on it here would fail with MPB_EFORK. Closing our copies
             * only frees memory (the parent's session is untouched); the worker then connects
             * on its own. */
            mpb_dict_close(&squares);
            mpb_list_close(&pids);
            mpb_close(&c);
            int code = worker(k, n);
            mpb_free(authkey);
            _exit(code); /* not exit(): leave the parent's atexit handlers and buffers alone */
        }
        children[started++] = pid;
    }

    /* Like p.join() for each Process. */
    int failed = started < n;
    for (int k = 0; k < started; k++) {
        int st;
        if (waitpid(children[k], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "worker %d (pid %d) failed\n", k, (int)children[k]);
            failed = 1;
        }
    }

    int npids = print_results(c, squares, pids);
    if (!failed && npids == n) status = 0;

out:
    mpb_dict_close(&squares);
    mpb_list_close(&pids);
    mpb_close(&c);
    mpb_free(authkey);
    return status;
}

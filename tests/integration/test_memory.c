/* test_memory.c - a memory limit that protects the data: past --max-memory, writes that would
 * grow memory get ENOMEM naming the limit while reads, deletes and pops go on and every earlier
 * write stays readable; --max-objects bounds the objects; and under an address-space limit
 * (ulimit -v) the broker refuses growth instead of dying, with clients pushing past it. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "th.h"

#define VALUE_BYTES (64 * 1024)
#define MAX_VALUES  20000 /* bounds every fill loop: 1.25 GiB */

static uint8_t value[VALUE_BYTES + 8];
static size_t value_len;

/* A bin of VALUE_BYTES whose first 8 bytes say i. */
static const uint8_t *value_for(int i) {
    value[0] = 0xc6; /* bin 32 */
    value[1] = (uint8_t)(VALUE_BYTES >> 24);
    value[2] = (uint8_t)(VALUE_BYTES >> 16);
    value[3] = (uint8_t)(VALUE_BYTES >> 8);
    value[4] = (uint8_t)VALUE_BYTES;
    memset(value + 5, 0x5a, VALUE_BYTES);
    memcpy(value + 5, &i, sizeof i);
    value_len = 5 + VALUE_BYTES;
    return value;
}

static const char *key_for(int i) {
    static char k[32];
    snprintf(k, sizeof k, "k%d", i);
    return k;
}

/* dict.set of 64 KiB values until one is refused; returns how many went in, and the refusal's
 * code and message. */
static int fill(mpb_client_t *c, mpb_dict_t *d, int *code, char *msg, size_t msglen) {
    for (int i = 0; i < MAX_VALUES; i++) {
        size_t kl;
        const uint8_t *k = th_str(key_for(i), &kl);
        const uint8_t *v = value_for(i);
        int rc = mpb_dict_set(d, k, kl, v, value_len);
        if (rc) {
            *code = rc;
            snprintf(msg, msglen, "%s", mpb_errmsg(c));
            return i;
        }
    }
    *code = 0;
    return MAX_VALUES;
}

/* Every one of the first n values reads back as written. */
static void all_readable(mpb_client_t *c, mpb_dict_t *d, int n) {
    for (int i = 0; i < n; i++) {
        size_t kl;
        const uint8_t *k = th_str(key_for(i), &kl);
        void *v;
        size_t vn;
        th_assert_ok(mpb_dict_get(d, k, kl, &v, &vn), c);
        value_for(i);
        th_assert_bytes(v, vn, value, value_len);
        mpb_free(v);
    }
    uint64_t len = 0;
    th_assert_ok(mpb_dict_len(d, &len), c);
    assert_int_equal(len, n);
}

static void test_past_max_memory_writes_get_enomem_and_the_data_stays(void **state) {
    (void)state;
    static th_broker_t B;
    th_broker_start(&B, "--max-memory", "48m", "--persist", "off", NULL);
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d;
    th_assert_ok(mpb_dict_open(c, "big", &d), c);
    int code;
    char msg[512];
    int n = fill(c, d, &code, msg, sizeof msg);
    print_message("max-memory 48m: %d values of 64 KiB stored, then: %s\n", n, msg);
    assert_int_equal(code, MPB_ENOMEM);
    assert_non_null(strstr(msg, "max-memory 50331648"));
    assert_true(n > 100 && n < 48 * 16);
    /* small writes fit in what is left, until that is gone too */
    int small = 0, rc = 0;
    for (; small < 1000000 && rc == 0; small++) {
        char k[32];
        snprintf(k, sizeof k, "s%d", small);
        rc = mpb_dict_set_i64(d, k, small);
    }
    th_assert_err(rc, MPB_ENOMEM, c, "max-memory 50331648", NULL);
    print_message("then %d small ones\n", small - 1);
    /* other growth is refused too, whatever the kind: nothing is made. The broker reads its
     * heap every 10 ms and sits right at the limit now, so a buffer it frees meanwhile (a
     * reply sent) can take it just under: then the open works, and is undone, and the small
     * writes bring it back over before the next try. */
    bool list_refused = false, queue_refused = false;
    for (int t = 0; t < 50 && !(list_refused && queue_refused); t++) {
        for (int i = 0; i < 100000; i++) {
            char k[32];
            snprintf(k, sizeof k, "t%d-%d", t, i);
            if (mpb_dict_set_i64(d, k, i)) break;
        }
        mpb_list_t *l;
        int lrc = mpb_list_open(c, "newlist", &l);
        if (lrc == 0) {
            mpb_list_close(&l);
            th_assert_ok(mpb_obj_delete(c, "list/newlist"), c);
        } else if (!list_refused) {
            th_assert_err(lrc, MPB_ENOMEM, c, "max-memory", NULL);
            list_refused = true;
        }
        mpb_queue_t *q;
        int qrc = mpb_queue_open(c, "newq", 0, 0, &q);
        if (qrc == 0) {
            mpb_queue_close(&q);
            th_assert_ok(mpb_obj_delete(c, "queue/newq"), c);
        } else if (!queue_refused) {
            th_assert_err(qrc, MPB_ENOMEM, c, "max-memory", NULL);
            queue_refused = true;
        }
    }
    assert_true(list_refused && queue_refused);
    assert_int_equal(th_info_int(c, "objects"), 1);
    /* reads work, and every earlier write is there */
    for (int i = 0; i < small - 1; i += 97) {
        char k[32];
        snprintf(k, sizeof k, "s%d", i);
        int64_t v = -1;
        th_assert_ok(mpb_dict_get_i64(d, k, &v), c);
        assert_int_equal(v, i);
    }
    th_assert_ok(mpb_dict_clear(d), c); /* clear is not a write that grows */
    n = fill(c, d, &code, msg, sizeof msg);
    assert_int_equal(code, MPB_ENOMEM);
    all_readable(c, d, n);
    /* deletes and pops work, and free room for writes again */
    for (int i = n / 2; i < n; i++) {
        size_t kl;
        const uint8_t *k = th_str(key_for(i), &kl);
        void *v;
        size_t vn;
        if (i % 2)
            th_assert_ok(mpb_dict_del(d, k, kl), c);
        else {
            th_assert_ok(mpb_dict_pop(d, k, kl, NULL, 0, &v, &vn), c);
            mpb_free(v);
        }
    }
    rc = MPB_ENOMEM;
    for (int t = 0; t < 100 && rc == MPB_ENOMEM; t++) { /* the broker reads its usage every 10 ms */
        size_t kl;
        const uint8_t *k = th_str(key_for(n / 2), &kl);
        const uint8_t *v = value_for(n / 2);
        rc = mpb_dict_set(d, k, kl, v, value_len);
        if (rc == MPB_ENOMEM) usleep(20000);
    }
    th_assert_ok(rc, c);
    all_readable(c, d, n / 2 + 1);
    mpb_dict_close(&d);
    th_assert_dict_roundtrip(c, "big", 5); /* a small write fits again */
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

static void test_max_objects_bounds_the_objects(void **state) {
    (void)state;
    static th_broker_t B;
    th_broker_start(&B, "--max-objects", "10", NULL);
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d[11];
    for (int i = 0; i < 10; i++) {
        char name[16];
        snprintf(name, sizeof name, "d%d", i);
        th_assert_ok(mpb_dict_open(c, name, &d[i]), c);
    }
    th_assert_err(mpb_dict_open(c, "d10", &d[10]), MPB_ELIMIT, c, "max-objects 10", NULL);
    mpb_lock_t *lk;
    th_assert_err(mpb_lock_open(c, "one-more", &lk), MPB_ELIMIT, c, "max-objects 10", NULL);
    assert_int_equal(th_info_int(c, "objects"), 10);
    /* those there work; a deleted one makes room */
    th_assert_dict_roundtrip(c, "d3", 3);
    th_assert_ok(mpb_obj_delete(c, "dict/d9"), c);
    th_assert_ok(mpb_dict_open(c, "d10", &d[10]), c);
    for (int i = 0; i < 11; i++)
        mpb_dict_close(&d[i]);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

#if !defined(__SANITIZE_ADDRESS__)
/* Clients that push 64 KiB values into the broker until refused, from several processes. */
static th_broker_t V;
static int pusher(int idx, void *arg) {
    (void)arg;
    mpb_client_t *c = th_connect(&V);
    mpb_dict_t *d;
    char name[16];
    snprintf(name, sizeof name, "push%d", idx);
    if (mpb_dict_open(c, name, &d)) return 1;
    int code;
    char msg[512];
    int n = fill(c, d, &code, msg, sizeof msg);
    if (code != MPB_ENOMEM) {
        fprintf(stderr, "pusher %d: %d values, then %s: %s\n", idx, n, mpb_strerror(code), msg);
        return 1;
    }
    mpb_close(&c);
    return 0;
}

/* ---- large replies and appends ---- */

#define APPENDERS 2
#define READERS   2
static struct shared {
    int acked[APPENDERS]; /* appends acknowledged, in order: item i is value_for(i) */
    int refused[APPENDERS], pages[READERS], page_refused[READERS];
    int done; /* appenders finished */
} * sh;

/* Appends 64 KiB items to list app<idx> until refused, then keeps pushing (100 more tries):
 * each answer is success or ENOMEM. */
static int appender(int idx, void *arg) {
    (void)arg;
    mpb_client_t *c = th_connect(&V);
    mpb_list_t *l;
    char name[16];
    snprintf(name, sizeof name, "app%d", idx);
    int bad = mpb_list_open(c, name, &l);
    int64_t end = th_now_ms() + 60000;
    for (int i = 0; !bad && i < MAX_VALUES && sh->refused[idx] < 100 && th_now_ms() < end;) {
        const uint8_t *v = value_for(i);
        int rc = mpb_list_append(l, v, value_len);
        if (rc == 0) {
            sh->acked[idx] = ++i;
        } else if (rc == MPB_ENOMEM) {
            sh->refused[idx]++;
            usleep(5000);
        } else {
            fprintf(stderr, "appender %d: item %d: %s: %s\n", idx, i, mpb_strerror(rc),
                    mpb_errmsg(c));
            bad = 1;
        }
    }
    __atomic_add_fetch(&sh->done, 1, __ATOMIC_SEQ_CST);
    mpb_close(&c);
    return bad;
}

/* Reads the appenders' lists in the largest pages the broker gives (half a frame) until they
 * are done: each answer is a page or ENOMEM. */
static int reader(int idx, void *arg) {
    (void)arg;
    mpb_client_t *c = th_connect(&V);
    mpb_list_t *l[APPENDERS];
    for (int i = 0; i < APPENDERS; i++) {
        char name[16];
        snprintf(name, sizeof name, "app%d", i);
        if (mpb_list_open(c, name, &l[i])) return 1;
    }
    int64_t end = th_now_ms() + 60000;
    for (int k = 0; __atomic_load_n(&sh->done, __ATOMIC_SEQ_CST) < APPENDERS && th_now_ms() < end;
         k++) {
        void *items;
        size_t len, n;
        int rc = mpb_list_slice(l[k % APPENDERS], 0, INT64_MAX, 0, &items, &len, &n);
        if (rc == 0) {
            sh->pages[idx]++;
            mpb_free(items);
        } else if (rc == MPB_ENOMEM) {
            sh->page_refused[idx]++;
            usleep(20000); /* as a client would, before it asks again */
        } else {
            fprintf(stderr, "reader %d: %s: %s\n", idx, mpb_strerror(rc), mpb_errmsg(c));
            return 1;
        }
    }
    mpb_close(&c);
    return 0;
}

static int large_child(int idx, void *arg) {
    return idx < APPENDERS ? appender(idx, arg) : reader(idx - APPENDERS, arg);
}

/* Every acknowledged append is in its list, in order, and nothing else. */
static void appends_all_there(void) {
    mpb_client_t *c = th_connect(&V);
    for (int i = 0; i < APPENDERS; i++) {
        char name[16];
        snprintf(name, sizeof name, "app%d", i);
        mpb_list_t *l;
        th_assert_ok(mpb_list_open(c, name, &l), c);
        uint64_t len = 0;
        th_assert_ok(mpb_list_len(l, &len), c);
        assert_int_equal(len, sh->acked[i]);
        for (int k = 0; k < sh->acked[i]; k++) {
            void *v;
            size_t vn;
            th_assert_ok(mpb_list_get(l, k, &v, &vn), c);
            value_for(k);
            th_assert_bytes(v, vn, value, value_len);
            mpb_free(v);
        }
        mpb_list_close(&l);
    }
    mpb_close(&c);
}

#endif

/* Under ulimit -v, with a --max-memory the allocator cannot honour and the log on, clients
 * append 64 KiB items past the point where memory runs out while others read the lists back in
 * 32 MiB pages: replies, log records and held frames that cannot be built are refused ENOMEM
 * and the broker stays up; every acknowledged append is there, also after a restart from
 * the log. */
static void test_large_replies_and_appends_under_ulimit_v(void **state) {
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* as above */
#else
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(sh != MAP_FAILED);
    memset(sh, 0, sizeof *sh);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_AS, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)400 << 20;
    assert_int_equal(setrlimit(RLIMIT_AS, &lim), 0); /* inherited by the broker only */
    th_broker_start(&V, "--max-memory", "4g", "--max-frame", "64m", "--fsync", "everysec", NULL);
    assert_int_equal(setrlimit(RLIMIT_AS, &old), 0);
    int failed = th_spawn(APPENDERS + READERS, large_child, NULL, 180);
    if (failed || !th_broker_alive(&V)) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "tail -n 20 '%s' >&2", V.log);
        if (system(cmd)) print_message("(no broker log)\n");
    }
    assert_int_equal(failed, 0);
    assert_true(th_broker_alive(&V));
    print_message("ulimit -v 400m: appends %d + %d acknowledged, %d + %d refused; pages %d + %d "
                  "read, %d + %d refused\n",
                  sh->acked[0], sh->acked[1], sh->refused[0], sh->refused[1], sh->pages[0],
                  sh->pages[1], sh->page_refused[0], sh->page_refused[1]);
    for (int i = 0; i < APPENDERS; i++)
        assert_true(sh->acked[i] > 10 && sh->refused[i] > 0);
    appends_all_there();
    th_broker_restart(&V, SIGKILL, "--fsync", "everysec", NULL);
    appends_all_there();
    th_broker_stop_checked(&V);
    munmap(sh, sizeof *sh);
#endif
}

/* The broker under ulimit -v: without --max-memory it takes its limit from the address space
 * it has left, and with a --max-memory the allocator cannot honour, the first failed
 * allocation gives back its reserve and growth is refused. Either way, clients pushing past
 * get ENOMEM and the broker stays up with every write it acknowledged. */
static void test_the_broker_survives_ulimit_v_with_clients_pushing_past(void **state) {
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* ASan maps terabytes of shadow: no address-space limit fits it */
#else
    for (int round = 0; round < 2; round++) {
        struct rlimit old, lim;
        assert_int_equal(getrlimit(RLIMIT_AS, &old), 0);
        lim = old;
        lim.rlim_cur = (rlim_t)400 << 20;
        assert_int_equal(setrlimit(RLIMIT_AS, &lim), 0); /* inherited by the broker only */
        if (round == 0)
            th_broker_start(&V, "--persist", "off", NULL);
        else
            th_broker_start(&V, "--persist", "off", "--max-memory", "4g", NULL);
        assert_int_equal(setrlimit(RLIMIT_AS, &old), 0);
        assert_int_equal(th_spawn(3, pusher, NULL, 120), 0);
        assert_true(th_broker_alive(&V));
        mpb_client_t *c = th_connect(&V);
        int64_t total = 0;
        for (int i = 0; i < 3; i++) {
            char name[16];
            snprintf(name, sizeof name, "push%d", i);
            mpb_dict_t *d;
            th_assert_ok(mpb_dict_open(c, name, &d), c);
            uint64_t len = 0;
            th_assert_ok(mpb_dict_len(d, &len), c);
            int n = (int)len;
            all_readable(c, d, n);
            total += n;
            mpb_dict_close(&d);
        }
        print_message("ulimit -v 400m%s: %lld values of 64 KiB stored, then ENOMEM\n",
                      round ? ", --max-memory 4g" : "", (long long)total);
        assert_true(total > 100);
        mpb_close(&c);
        th_broker_stop_checked(&V);
    }
#endif
}

int main(void) {
    if (getenv("TH_ONLY")) cmocka_set_test_filter(getenv("TH_ONLY"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_past_max_memory_writes_get_enomem_and_the_data_stays),
        cmocka_unit_test(test_max_objects_bounds_the_objects),
        cmocka_unit_test(test_the_broker_survives_ulimit_v_with_clients_pushing_past),
        cmocka_unit_test(test_large_replies_and_appends_under_ulimit_v),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#!/usr/bin/python3
"""pymanager.py - Python's own multiprocessing SyncManager under mpb-bench's load, for
bench/compare: a manager server process on loopback TCP, and N client processes (each its own
connection, as a program's worker processes have) doing dict set/get and Queue put+get as fast
as they can for --time seconds. Prints redis-benchmark's --csv columns (or one line per test).

    /usr/bin/python3 bench/pymanager.py --clients 4 --time 2 --csv
"""
import argparse
import multiprocessing as mp
import os
import sys
import time
from array import array
from multiprocessing.managers import SyncManager

TESTS = ("dict.set", "dict.get", "queue.put+get")
HEADER = ('"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",'
          '"p95_latency_ms","p99_latency_ms","max_latency_ms"')


def keys_for(keyspace, rnd):
    """The key of the next operation, as mpb-bench and redis-benchmark make them."""
    if not keyspace:
        return lambda: "key:__rand_int__"
    return lambda: "key:%012d" % rnd.randrange(keyspace)


def client(test, d, q, secs, keyspace, dsize, barrier, out, seed, cpus):
    import random
    if cpus:
        os.sched_setaffinity(0, cpus)
    rnd = random.Random(seed)
    key = keys_for(keyspace, rnd)
    val = b"x" * dsize
    clock = time.perf_counter_ns
    lat = array("q")
    # One operation first: it opens this process's connection to the manager, untimed.
    d.get("warmup")
    barrier.wait()
    n = 0
    t_start = clock()
    t_end = t_start + int(secs * 1e9)
    if test == "dict.set":
        while True:
            k = key()
            t0 = clock()
            d[k] = val
            t1 = clock()
            lat.append(t1 - t0)
            n += 1
            if t1 >= t_end:
                break
    elif test == "dict.get":
        while True:
            k = key()
            t0 = clock()
            d.get(k)
            t1 = clock()
            lat.append(t1 - t0)
            n += 1
            if t1 >= t_end:
                break
    else:  # one operation is a put and a get
        while True:
            t0 = clock()
            q.put(val)
            q.get()
            t1 = clock()
            lat.append(t1 - t0)
            n += 1
            if t1 >= t_end:
                break
    out.send((n, (clock() - t_start) / 1e9, lat.tobytes()))
    out.close()


def cpu_list(text):
    """'0', '1-3' or '0,2' as a set of CPU numbers."""
    cpus = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def quantile(sorted_ns, q):
    if not sorted_ns:
        return 0
    i = min(len(sorted_ns) - 1, max(0, int(q * len(sorted_ns) + 0.999999) - 1))
    return sorted_ns[i]


def run(test, mgr_d, mgr_q, args, ctx):
    barrier = ctx.Barrier(args.clients + 1)
    procs, pipes = [], []
    for i in range(args.clients):
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=client, args=(test, mgr_d, mgr_q, args.time, args.keyspace,
                                             args.d, barrier, w, 1000 + i, args.client_cpus))
        p.start()
        w.close()
        procs.append(p)
        pipes.append(r)
    barrier.wait()
    total, secs, lat = 0, 0.0, array("q")
    for r in pipes:
        n, s, raw = r.recv()
        total += n
        secs = max(secs, s)
        a = array("q")
        a.frombytes(raw)
        lat.extend(a)
    for p in procs:
        p.join()
    lat = sorted(lat)
    ms = lambda ns: ns / 1e6
    return {
        "test": test,
        "rps": total / secs if secs else 0.0,
        "avg": ms(sum(lat) / len(lat)) if lat else 0.0,
        "min": ms(lat[0]) if lat else 0.0,
        "p50": ms(quantile(lat, 0.50)),
        "p95": ms(quantile(lat, 0.95)),
        "p99": ms(quantile(lat, 0.99)),
        "max": ms(lat[-1]) if lat else 0.0,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", "-c", type=int, default=1, help="client processes (default 1)")
    ap.add_argument("--time", type=float, default=2.0, help="seconds per test (default 2)")
    ap.add_argument("-d", type=int, default=16, help="value size in bytes (default 16)")
    ap.add_argument("-r", dest="keyspace", type=int, default=0,
                    help="random keys in [0, N) (default: one key, as redis-benchmark)")
    ap.add_argument("-t", dest="tests", default=",".join(TESTS),
                    help="comma list of: " + ", ".join(TESTS))
    ap.add_argument("--csv", action="store_true", help="redis-benchmark's CSV columns")
    ap.add_argument("--server-cpus", type=cpu_list, default=None,
                    help="CPUs for the manager's server process (e.g. 0)")
    ap.add_argument("--client-cpus", type=cpu_list, default=None,
                    help="CPUs for the client processes (e.g. 1)")
    args = ap.parse_args()
    tests = [t for t in args.tests.split(",") if t]
    for t in tests:
        if t not in TESTS:
            ap.error("unknown test %r" % t)

    ctx = mp.get_context("fork")
    mgr = SyncManager(address=("127.0.0.1", 0), authkey=os.urandom(32), ctx=ctx)
    # the server pins itself before it starts any thread, so all of them stay there
    mgr.start(os.sched_setaffinity if args.server_cpus else None,
              (0, args.server_cpus) if args.server_cpus else ())
    try:
        d = mgr.dict()
        q = mgr.Queue()
        if "dict.get" in tests:  # as after redis-benchmark's SET: reads find values
            val = b"x" * args.d
            if args.keyspace:
                d.update({"key:%012d" % i: val for i in range(args.keyspace)})
            else:
                d["key:__rand_int__"] = val
        if args.csv:
            print(HEADER, flush=True)
        for t in tests:
            r = run(t, d, q, args, ctx)
            if args.csv:
                print('"%s","%.2f","%.3f","%.3f","%.3f","%.3f","%.3f","%.3f"' % (
                    r["test"], r["rps"], r["avg"], r["min"], r["p50"], r["p95"], r["p99"],
                    r["max"]), flush=True)
            else:
                print("%s: %.2f requests per second, p50=%.3f msec p99=%.3f msec max=%.3f msec"
                      % (r["test"], r["rps"], r["p50"], r["p99"], r["max"]), flush=True)
    finally:
        mgr.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

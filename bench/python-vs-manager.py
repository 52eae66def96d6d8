#!/usr/bin/env python3
"""python-vs-manager.py - mpbroker's Python client beside multiprocessing's own, in one run.

    PYTHONPATH=build/python python3 bench/python-vs-manager.py [--csv] [--ops N] [--seconds S]

On the same machine and the same way for both: dict get/set and Queue put+get rates with 1 and 8
client processes (each process does --ops operations or stops at --seconds, whichever first;
the rate is all operations over the wall time from the common start to the last finish),
Pool(2).map tasks/s at chunksize 1 and 100 beside multiprocessing.Pool(2), and the time from
Manager() to the first operation done (the median of 5). mpbroker's Manager() is its private
broker on an ipc:// endpoint, as a program that only changed its import gets.
"""
import argparse
import csv
import multiprocessing
import os
import statistics
import sys
import time

import mpbroker


def square(x):
    return x * x


# ---- client processes ----------------------------------------------------------------------

def _dict_client(d, key, ops, seconds, go, out):
    go.wait()
    end = time.monotonic() + seconds
    n = 0
    while n < ops and (n & 63 or time.monotonic() < end):
        d[key] = n
        d[key]
        n += 2
    out.put(n)


def _queue_client(q, ops, seconds, go, out):
    go.wait()
    end = time.monotonic() + seconds
    n = 0
    while n < ops and (n & 63 or time.monotonic() < end):
        q.put(n)
        q.get()
        n += 2
    out.put(n)


def _rate(target, args, procs, ctx):
    """Operations per second of procs processes running target(*args, go, out)."""
    go = ctx.Event()
    out = ctx.Queue()
    ps = [ctx.Process(target=target, args=args(i) + (go, out)) for i in range(procs)]
    for p in ps:
        p.start()
    time.sleep(0.2)  # every child is up and waiting
    t0 = time.perf_counter()
    go.set()
    total = sum(out.get() for _ in ps)
    elapsed = time.perf_counter() - t0
    for p in ps:
        p.join()
    return total / elapsed


def _start_to_first_op(make):
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        m = make()
        d = m.dict()
        d["k"] = 1
        times.append((time.perf_counter() - t0) * 1000)
        m.shutdown()
    return statistics.median(times)


def _pool_rate(make_pool, n, chunksize):
    with make_pool(2) as pool:
        pool.map(square, range(200), 10)  # the workers are up
        t0 = time.perf_counter()
        r = pool.map(square, range(n), chunksize)
        elapsed = time.perf_counter() - t0
    assert r[-1] == (n - 1) ** 2
    return n / elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", action="store_true", help="CSV instead of a table")
    ap.add_argument("--ops", type=int, default=20000, help="operations per client process")
    ap.add_argument("--seconds", type=float, default=3.0, help="bound per client process")
    ap.add_argument("--procs", type=int, default=8, help="processes of the many-client rows")
    ap.add_argument("--map-items", type=int, default=200000,
                    help="items of the chunksize 100 map (chunksize 1: a twentieth)")
    ap.add_argument("--only", default="dict,queue,pool,start",
                    help="comma-separated subset of dict, queue, pool, start (default all)")
    a = ap.parse_args()
    only = set(a.only.split(","))
    ctx = multiprocessing.get_context("fork")
    rows = []  # (what, unit, multiprocessing, mpbroker)

    def both(what, unit, fn):
        mine = fn("mpbroker")
        theirs = fn("multiprocessing")
        rows.append((what, unit, theirs, mine))
        if not a.csv:
            print("  %-34s done" % what, file=sys.stderr, flush=True)

    makers = {"mpbroker": mpbroker.Manager, "multiprocessing": multiprocessing.Manager}
    managers = {k: make() for k, make in makers.items()}
    try:
        for procs in (1, a.procs) if only & {"dict", "queue"} else ():
            if "dict" in only:
                both("dict get/set, %d process%s" % (procs, "es" if procs > 1 else ""), "ops/s",
                     lambda k: _rate(_dict_client, lambda i, d=managers[k].dict(): (
                         d, "k%d" % i, a.ops, a.seconds), procs, ctx))
            if "queue" in only:
                both("Queue put+get, %d process%s" % (procs, "es" if procs > 1 else ""), "ops/s",
                     lambda k: _rate(_queue_client, lambda i, q=managers[k].Queue(): (
                         q, a.ops, a.seconds), procs, ctx))
        pools = {"mpbroker": managers["mpbroker"].Pool, "multiprocessing": multiprocessing.Pool}
        if "pool" in only:
            both("Pool(2).map, chunksize 1", "tasks/s",
                 lambda k: _pool_rate(pools[k], max(1, a.map_items // 20), 1))
            both("Pool(2).map, chunksize 100", "tasks/s",
                 lambda k: _pool_rate(pools[k], a.map_items, 100))
    finally:
        for m in managers.values():
            m.shutdown()
    if "start" in only:
        both("Manager() to first op (median of 5)", "ms",
             lambda k: _start_to_first_op(makers[k]))

    if a.csv:
        w = csv.writer(sys.stdout)
        w.writerow(["measure", "unit", "multiprocessing", "mpbroker", "ratio"])
        for what, unit, theirs, mine in rows:
            w.writerow([what, unit, "%.1f" % theirs, "%.1f" % mine, "%.2f" % (mine / theirs)])
        return 0
    print("%-36s %-8s %16s %12s %7s" % ("measure", "unit", "multiprocessing", "mpbroker",
                                        "ratio"))
    for what, unit, theirs, mine in rows:
        print("%-36s %-8s %16.1f %12.1f %6.2fx" % (what, unit, theirs, mine, mine / theirs))
    print("(ratio: mpbroker / multiprocessing; for ms lower is better; %d CPUs, load %.1f)"
          % (os.cpu_count() or 0, os.getloadavg()[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

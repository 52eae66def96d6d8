"""Worker processes take jobs from a JoinableQueue and call task_done() for each; the main
process waits in join() until every job is done, then reads the results.

    python3 joinable_queue.py
"""
from multiprocessing import Process

import mpbroker


def worker(jobs, results):
    while True:
        n = jobs.get()
        results.append((n, n * n))
        jobs.task_done()


if __name__ == '__main__':
    with mpbroker.Manager() as manager:  # was: multiprocessing.Manager()
        jobs = manager.JoinableQueue()
        results = manager.list()
        workers = [Process(target=worker, args=(jobs, results), daemon=True) for _ in range(3)]
        for w in workers:
            w.start()
        for n in range(20):
            jobs.put(n)
        jobs.join()  # returns once task_done() was called for all 20
        print('all %d jobs done' % len(results))
        print(sorted(results)[:5])
        for w in workers:
            w.terminate()

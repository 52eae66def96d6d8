"""Four processes each add 1 to a shared counter 1000 times, under a shared Lock: the total is
exactly 4000 (without the lock, increments would be lost).

    python3 lock_counter.py
"""
from multiprocessing import Process

import mpbroker


def work(lock, counter, n):
    for _ in range(n):
        with lock:
            counter['n'] += 1


if __name__ == '__main__':
    with mpbroker.Manager() as manager:  # was: multiprocessing.Manager()
        lock = manager.Lock()
        counter = manager.dict(n=0)
        procs = [Process(target=work, args=(lock, counter, 1000)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        print('counter =', counter['n'])

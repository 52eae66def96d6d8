"""Three processes wait on an Event; the main process sets it once they are all waiting, and
each of them reports that it went on.

    python3 event.py
"""
from multiprocessing import Process

import mpbroker


def waiter(i, ready, go, out):
    ready.put(i)
    if go.wait(30):
        out.put('waiter %d saw the event' % i)


if __name__ == '__main__':
    with mpbroker.Manager() as manager:  # was: multiprocessing.Manager()
        go = manager.Event()
        ready = manager.Queue()
        out = manager.Queue()
        procs = [Process(target=waiter, args=(i, ready, go, out)) for i in range(3)]
        for p in procs:
            p.start()
        for _ in procs:
            ready.get()
        print('event set:', go.is_set())
        go.set()
        for p in procs:
            p.join()
        print('event set:', go.is_set())
        for line in sorted(out.get() for _ in procs):
            print(line)

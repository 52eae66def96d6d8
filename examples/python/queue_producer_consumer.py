"""A producer and a consumer process joined by a Manager's Queue; None ends the stream.

    python3 queue_producer_consumer.py
"""
from multiprocessing import Process

import mpbroker


def producer(q, n):
    for i in range(1, n + 1):
        q.put(i)
    q.put(None)


def consumer(q, results):
    total = count = 0
    while True:
        item = q.get()
        if item is None:
            break
        total += item
        count += 1
    results['count'] = count
    results['total'] = total


if __name__ == '__main__':
    with mpbroker.Manager() as manager:  # was: multiprocessing.Manager()
        q = manager.Queue()
        results = manager.dict()
        c = Process(target=consumer, args=(q, results))
        p = Process(target=producer, args=(q, 1000))
        c.start()
        p.start()
        p.join()
        c.join()
        print('consumed %d items, total %d' % (results['count'], results['total']))

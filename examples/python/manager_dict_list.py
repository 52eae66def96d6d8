"""The Manager example of Python's multiprocessing documentation, with mpbroker's Manager:
a child process changes a shared dict and list, the parent prints them.

    python3 manager_dict_list.py
"""
from multiprocessing import Process

import mpbroker


def f(d, l):
    d[1] = '1'
    d['2'] = 2
    d[0.25] = None
    l.reverse()


if __name__ == '__main__':
    with mpbroker.Manager() as manager:  # was: multiprocessing.Manager()
        d = manager.dict()
        l = manager.list(range(10))

        p = Process(target=f, args=(d, l))
        p.start()
        p.join()

        print(d)
        print(l)

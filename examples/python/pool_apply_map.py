"""A Pool: apply_async with a callback, map, and a task that raises.

    python3 pool_apply_map.py
"""
import mpbroker


def square(x):
    return x * x


def check(x):
    if x < 0:
        raise ValueError('negative: %d' % x)
    return x


if __name__ == '__main__':
    with mpbroker.Manager() as manager:  # was: multiprocessing.Manager()
        with manager.Pool(processes=4) as pool:
            collected = []
            results = [pool.apply_async(square, (i,), callback=collected.append)
                       for i in range(10)]
            print('apply_async:', [r.get(timeout=30) for r in results])
            print('callbacks saw:', sorted(collected))
            print('map:', pool.map(square, range(10)))
            print('map chunksize 4:', sum(pool.map(square, range(1000), chunksize=4)))
            try:
                pool.apply(check, (-1,))
            except ValueError as e:
                print('raised:', type(e).__name__, e)

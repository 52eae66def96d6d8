"""Host A: puts jobs on the named queue "jobs" of a shared broker, then None to end them, and
waits for the consumer's answer on the named queue "answers".

    MPB_AUTHKEY_FILE=key python3 producer.py tcp://broker-host:5555 [N]
"""
import sys

import mpbroker

if __name__ == '__main__':
    address = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    # was: BaseManager(address=..., authkey=...).connect(); the key comes from MPB_AUTHKEY_FILE
    with mpbroker.Manager(address) as manager:
        jobs = manager.Queue(name='jobs')
        answers = manager.Queue(name='answers')
        for i in range(1, n + 1):
            jobs.put(i)
        jobs.put(None)
        print('producer: sent %d jobs' % n)
        print('producer: the consumer says', answers.get(timeout=60))

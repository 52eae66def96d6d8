"""Host B: takes jobs from the named queue "jobs" until None, and answers with their count and
the sum of their squares on the named queue "answers". It may start before or after the
producer: whichever opens a named queue first creates it.

    MPB_AUTHKEY_FILE=key python3 consumer.py tcp://broker-host:5555
"""
import sys

import mpbroker

if __name__ == '__main__':
    with mpbroker.Manager(sys.argv[1]) as manager:
        jobs = manager.Queue(name='jobs')
        answers = manager.Queue(name='answers')
        count = total = 0
        while True:
            item = jobs.get(timeout=60)
            if item is None:
                break
            count += 1
            total += item * item
        print('consumer: %d jobs, sum of squares %d' % (count, total))
        answers.put((count, total))

"""bench/python-vs-manager.py runs end to end on a small load: the CSV header and one row per
measure, in order, each with positive figures for both sides. No figure is judged here: the
targets are the benchmark's business."""
import csv
import io
import os
import subprocess
import sys
import unittest

import th

ROWS = ["dict get/set, 1 process", "Queue put+get, 1 process", "dict get/set, 2 processes",
        "Queue put+get, 2 processes", "Pool(2).map, chunksize 1", "Pool(2).map, chunksize 100",
        "Manager() to first op (median of 5)"]


class TestBench(unittest.TestCase):
    def run_bench(self, *args):
        out = subprocess.run([sys.executable, os.path.join(th.SOURCE, "bench",
                                                           "python-vs-manager.py"), *args],
                             capture_output=True, text=True, timeout=240)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout

    def test_csv(self):
        out = self.run_bench("--csv", "--ops", "200", "--seconds", "1", "--procs", "2",
                             "--map-items", "2000")
        rows = list(csv.reader(io.StringIO(out)))
        self.assertEqual(rows[0], ["measure", "unit", "multiprocessing", "mpbroker", "ratio"])
        self.assertEqual([r[0] for r in rows[1:]], ROWS)
        for r in rows[1:]:
            self.assertEqual(r[1], "ms" if r[0].startswith("Manager") else
                             "tasks/s" if r[0].startswith("Pool") else "ops/s")
            self.assertGreater(float(r[2]), 0)
            self.assertGreater(float(r[3]), 0)
            ratio = float(r[3]) / float(r[2])
            self.assertAlmostEqual(float(r[4]), ratio, delta=max(0.01, ratio * 0.02))

    def test_table_only_pool(self):
        out = self.run_bench("--only", "pool", "--map-items", "2000")
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["measure", "unit", "multiprocessing", "mpbroker",
                                            "ratio"])
        self.assertEqual([ln[:36].strip() for ln in lines[1:3]], ROWS[4:6])
        self.assertTrue(lines[3].startswith("(ratio: mpbroker / multiprocessing"))


if __name__ == "__main__":
    unittest.main()

"""Helpers of the Python tests: a real mpbrokerd from the build tree on a private ipc endpoint.

MPB_BUILD_DIR (set by ctest) names the build; the broker, `mpb` and test programs come from it.
"""
import os
import shutil
import subprocess
import tempfile
import time

BUILD = os.environ.get("MPB_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..",
                                                     "build"))
SOURCE = os.environ.get("MPB_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))


def program(name):
    for d in ("broker", "client/cli", "tests/python"):
        p = os.path.join(BUILD, d, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError("%s not built in %s" % (name, BUILD))


class Broker:
    """mpbrokerd on ipc://TMP/b.sock with a random authkey; extra: more flags."""

    def __init__(self, *extra, listen=None):
        self.dir = tempfile.mkdtemp(prefix="mpbpy-")
        self.authkey = os.urandom(16).hex().encode()
        self.keyfile = os.path.join(self.dir, "authkey")
        with open(os.open(self.keyfile, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(self.authkey)
        self.endpoint = listen or "ipc://%s/b.sock" % self.dir
        epfile = os.path.join(self.dir, "endpoint")
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen(
            [program("mpbrokerd"), "-l", self.endpoint, "-k", self.keyfile, "-d",
             os.path.join(self.dir, "data"), "--endpoint-file", epfile, "--log-level", "warn",
             *extra], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not os.path.exists(epfile):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mpbrokerd did not start: " + self.logtext())
            time.sleep(0.005)
        with open(epfile) as f:
            self.endpoint = f.read().strip() or self.endpoint  # the port chosen for :0

    def logtext(self):
        with open(os.path.join(self.dir, "log"), "rb") as f:
            return f.read().decode(errors="replace")

    def env(self):
        """Environment for a program that should reach this broker."""
        e = dict(os.environ)
        e.update(MPB_ENDPOINT=self.endpoint, MPB_AUTHKEY_FILE=self.keyfile)
        e.pop("MPB_AUTHKEY", None)
        return e

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

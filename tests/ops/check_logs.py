#!/usr/bin/python3
"""check_logs.py - mpbrokerd's log, in both formats: one line per event, each with a time, a
level, a message and the event's fields as keys of their own (logfmt `key=value` pairs after
msg, or JSON members beside ts, level and msg, every value a string), well-formed; levels
filter; and the authkey never appears in it.

A broker is started with MPB_AUTHKEY=<secret> (and once with a generated key), the mpb CLI
runs a few clients against it (good ones, a missing key, clients with wrong keys that contain
the secret), /metrics is scraped, and then the log, the metrics, --check-config's output and
the broker's /proc/PID/environ are searched for the secret: it must be in none of them.

Events carry what varies as fields, under a fixed msg: a failed authentication its peer,
a session that opens or ends its session, host and pid, a worker that registers its functions.
mpb-worker (with the demo library) writes the same lines, chosen by the same flags and
variables: logfmt or JSON, with a level and a millisecond time.

Also: libmicrohttpd's own messages (an HTTP port in use) come out as log lines with the right
port, not as raw text; an MPB_* variable that is no setting and an MPB_AUTHKEY that a key file
overrides are warned about at start, as fields a tool can select on.

usage: check_logs.py --mpbrokerd PATH --mpb PATH --worker PATH --demo-lib PATH
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--mpbrokerd", required=True)
ap.add_argument("--mpb", required=True)
ap.add_argument("--worker", required=True)
ap.add_argument("--demo-lib", required=True)
opts = ap.parse_args()

from opscheck import check, finish, terminate  # noqa: E402

SECRET = "Zq7-ops-log-secret-9f4e2b"
LOGFMT = re.compile(r'^ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z '
                    r'level=(debug|info|warn|error) msg="((?:[^"\\]|\\.)*)"((?: \S.*)?)$')
# a field after msg: a bare value (no blank, '=', quote or backslash) or a quoted one
FIELD = re.compile(r' ([A-Za-z0-9_.-]+)=([^ ="\\]+|"(?:[^"\\]|\\.)*")')
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def unquote(v):
    if not v.startswith('"'):
        return v
    return json.loads(v) if "\\x" not in v else v[1:-1]


def wait_for(p, ready, seconds):
    """Until ready() is true, process p has exited or seconds have passed."""
    deadline = time.time() + seconds
    while p.poll() is None and time.time() < deadline and not ready():
        time.sleep(0.02)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPB_")}
    env.update(extra)
    return env


class Broker:
    def __init__(self, fmt, level="debug", key=SECRET):
        self.dir = tempfile.mkdtemp(prefix="mpb-ops-logs.")
        self.epf = os.path.join(self.dir, "endpoint")
        self.logpath = os.path.join(self.dir, "broker.log")
        env = clean_env(MPB_AUTHKEY=key) if key else clean_env()
        self.log = open(self.logpath, "w")
        self.p = subprocess.Popen(
            [opts.mpbrokerd, "--listen", "tcp://127.0.0.1:0", "--endpoint-file", self.epf,
             "--data-dir", os.path.join(self.dir, "data"), "--http", "127.0.0.1:0",
             "--log-format", fmt, "--log-level", level],
            env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        self.endpoint = None
        self.http_port = None
        for _ in range(500):
            # the HTTP port is in DATA_DIR/http.addr, whatever the log level
            if os.path.exists(self.epf) and os.path.getsize(self.epf) > 0 and self.port_ok():
                self.endpoint = open(self.epf).read().strip()
                break
            if self.p.poll() is not None:
                break
            time.sleep(0.01)
        if not self.endpoint:
            self.stop()
            log = open(self.logpath).read()
            self.cleanup()
            raise SystemExit("FAIL: mpbrokerd did not start (exit %s): %s" %
                             (self.p.returncode, log))

    def port_ok(self):
        try:
            m = re.match(r"^127\.0\.0\.1:(\d+)\n$",
                         open(os.path.join(self.dir, "data", "http.addr")).read())
        except OSError:
            return False
        if m:
            self.http_port = int(m.group(1))
        return self.http_port is not None

    def mpb(self, args, key=SECRET, keyfile=None):
        env = clean_env(MPB_ENDPOINT=self.endpoint)
        if keyfile:
            env["MPB_AUTHKEY_FILE"] = keyfile
        elif key is not None:
            env["MPB_AUTHKEY"] = key
        p = subprocess.run([opts.mpb, "--connect-timeout", "3"] + args, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=30)
        return p.returncode, p.stdout, p.stderr

    def worker(self, args, key=SECRET, env=None, run=None):
        """Runs mpb-worker against this broker with args (and env), calls run() once it
        serves, then stops it with SIGTERM; (exit status, its log, its pid)."""
        logpath = os.path.join(self.dir, "worker.log")
        e = clean_env(MPB_ENDPOINT=self.endpoint, MPB_AUTHKEY=key, **(env or {}))
        with open(logpath, "w") as log:
            w = subprocess.Popen([opts.worker, "--lib", opts.demo_lib, "--fn", "square,fail"] +
                                 args, env=e, stdout=subprocess.DEVNULL, stderr=log)
        wait_for(w, lambda: workers(self) > 0, 10)
        if w.poll() is None and run:
            run()
        return terminate(w), open(logpath).read(), w.pid

    def get(self, path):
        url = "http://127.0.0.1:%d%s" % (self.http_port, path)
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()

    def environ(self):
        try:
            with open("/proc/%d/environ" % self.p.pid, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError as e:
            return "(unreadable: %s)" % e

    def stop(self):
        terminate(self.p)
        self.log.close()
        return self.p.returncode

    def text(self):
        return open(self.logpath).read()

    def cleanup(self):
        subprocess.run(["rm", "-rf", self.dir])


def parse_records(fmt, text):
    """[(level, msg, {field: value})] of every line; a malformed line fails the check."""
    out = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line == "" and i == len(lines) - 1:
            continue  # after the last newline
        if fmt == "logfmt":
            m = LOGFMT.match(line)
            if not check(m is not None, "logfmt line %d is well-formed: %r" % (i + 1, line)):
                continue
            rest, fields = m.group(3), {}
            pos = 0
            while pos < len(rest):
                f = FIELD.match(rest, pos)
                if not check(f is not None, "logfmt line %d: a well-formed field at %r" %
                             (i + 1, rest[pos:pos + 40])):
                    break
                check(f.group(1) not in fields and f.group(1) not in ("ts", "level", "msg"),
                      "logfmt line %d: field %s once, not a key of the line's own" %
                      (i + 1, f.group(1)))
                fields[f.group(1)] = unquote(f.group(2))
                pos = f.end()
            out.append((m.group(1), json.loads('"%s"' % m.group(2)) if "\\x" not in m.group(2)
                        else m.group(2), fields))
        else:
            try:
                o = json.loads(line)
            except ValueError:
                check(False, "JSON line %d parses: %r" % (i + 1, line))
                continue
            if not check(isinstance(o, dict) and list(o)[:3] == ["ts", "level", "msg"],
                         "JSON line %d starts with ts, level, msg: %r" % (i + 1, line)):
                continue
            check(all(isinstance(v, str) for v in o.values()),
                  "JSON line %d: every value is a string: %r" % (i + 1, line))
            check(TS.match(str(o.get("ts", ""))) is not None, "JSON ts: %r" % line)
            check(o.get("level") in ("debug", "info", "warn", "error"), "JSON level: %r" % line)
            out.append((o.get("level"), o.get("msg", ""),
                        {k: v for k, v in o.items() if k not in ("ts", "level", "msg")}))
    return out


def workers(b):
    """How many workers are registered, from /metrics (0 if it cannot say)."""
    try:
        _, m = b.get("/metrics")
    except OSError:
        return 0
    for line in m.split("\n"):
        if line.startswith("mpb_pool_workers "):
            return int(float(line.split()[-1]))
    return 0


def parse_lines(fmt, text):
    """[(level, msg)] of every line, the fields dropped."""
    return [(lv, m) for lv, m, _ in parse_records(fmt, text)]


for fmt in ("logfmt", "json"):
    b = Broker(fmt)
    try:
        check(b.http_port is not None, "%s: HTTP port in DATA_DIR/http.addr" % fmt)
        rc, out, err = b.mpb(["ping"])
        check(rc == 0, "%s: mpb ping with the key (%s)" % (fmt, err))
        rc, out, err = b.mpb(["set", "dict/logs", "greeting", '"hello"'])
        check(rc == 0, "%s: mpb set (%s)" % (fmt, err))
        rc, out, err = b.mpb(["get", "dict/logs", "greeting"])
        check(rc == 0 and out.strip() == '"hello"', "%s: mpb get: %r %s" % (fmt, out, err))
        rc, out, err = b.mpb(["get", "dict/logs", "missing"])
        check(rc == 3, "%s: mpb get of a missing key exits 3 (%d)" % (fmt, rc))
        # wrong keys, two of them containing the real one
        for wrong in ("wrong-key", SECRET + "x", "x" + SECRET):
            rc, out, err = b.mpb(["ping"], key=wrong)
            check(rc != 0, "%s: a wrong key is refused" % fmt)
            check(SECRET not in out + err or wrong not in (out + err),
                  "%s: the CLI does not echo a key" % fmt)
        rc, out, err = b.mpb(["ping"], key=None)
        check(rc != 0, "%s: no key at all is refused" % fmt)
        status, metrics = b.get("/metrics")
        check(status == 200 and SECRET not in metrics, "%s: /metrics has no authkey" % fmt)
        # each wrong key fails its CURVE handshake, which libzmq retries until the timeout
        nfail = re.search(r"^mpb_auth_failures_total (\d+)$", metrics, re.M)
        check(nfail and int(nfail.group(1)) >= 3,
              "%s: the tries of 3 wrong keys counted: %s" % (fmt, nfail and nfail.group(0)))
        env = b.environ()
        check(SECRET not in env, "%s: MPB_AUTHKEY wiped from /proc/PID/environ" % fmt)
        # a worker, its format chosen by the flag (logfmt) or by the variable (json)
        applied = []
        wrc, wtext, wpid = b.worker(
            ["--log-format", "logfmt"] if fmt == "logfmt" else [],
            env=None if fmt == "logfmt" else {"MPB_LOG_FORMAT": "json"},
            run=lambda: applied.append(b.mpb(["pool", "apply", "square", "7"])))
        check(applied and applied[0][0] == 0 and applied[0][1].strip() == "49",
              "%s: a task through mpb-worker: %r" % (fmt, applied))
        check(wrc == 0, "%s: mpb-worker exits 0 on SIGTERM (%s): %s" % (fmt, wrc, wtext))
    finally:
        code = b.stop()
    check(code == 0, "%s: the broker exits 0 on SIGTERM (%s)" % (fmt, code))
    text = b.text()
    b.cleanup()
    lines = parse_lines(fmt, text)
    check(len(lines) >= 6, "%s: several lines logged (%d)" % (fmt, len(lines)))
    check(SECRET not in text, "%s: the authkey is not in the log" % fmt)
    levels = {lv for lv, _ in lines}
    check({"debug", "info", "warn"} <= levels, "%s: debug, info and warn lines: %s" %
          (fmt, levels))
    msgs = [m for _, m in lines]
    check(any("ready" in m for lv, m in lines if lv == "info"), "%s: 'ready' at info" % fmt)
    # a line per address a second at most (the rest are counted in the next line); each
    # wrong key retries its encrypted handshake until its connect timeout (5 s)
    nwarn = sum(1 for lv, m in lines if lv == "warn" and "authentication failed" in m)
    check(1 <= nwarn <= 20, "%s: failed handshakes logged, rate-limited: %r" % (fmt, msgs))
    check(any("shutting down" in m for m in msgs), "%s: shutdown logged" % fmt)
    recs = parse_records(fmt, text)
    conf = [f for lv, m, f in recs if m == "configuration"]
    check(conf and conf[0].get("key_source") == "environment" and
          conf[0].get("key_from") == "env MPB_AUTHKEY" and conf[0].get("config_file") == "none",
          "%s: where the key came from is logged, as fields: %r" % (fmt, conf))
    check(all("\n" not in m for m in msgs), "%s: one line per event" % fmt)

    # What varies is in fields, under a fixed msg.
    check(not [m for m in msgs if re.search(r"\w=\S|session \d|peer \w", m)],
          "%s: no msg embeds its data: %r" % (fmt, [m for m in msgs if "=" in m]))
    peer = re.compile(r"^[0-9a-f]+$")
    # over tcp:// a wrong key fails the CURVE handshake: the line names the peer's address
    addr = re.compile(r"^([0-9.]+|[0-9a-f:]+|unknown)$")
    fails = [(lv, f) for lv, m, f in recs if m == "authentication failed"]
    check(1 <= len(fails) <= 20 and all(lv == "warn" and addr.match(f.get("addr", "")) and
                                       "reason" in f for lv, f in fails),
          "%s: a failed authentication has its peer's address as a field: %r" % (fmt, fails))
    host = socket.gethostname()
    opened = {f.get("session"): f for lv, m, f in recs if lv == "debug" and m == "session opened"}
    ended = {f.get("session"): f for lv, m, f in recs if m == "session ended"}
    check(len(opened) >= 6 and set(opened) == set(ended),
          "%s: every session that opened ended: %r %r" % (fmt, opened, ended))
    check(all(sid.isdigit() and peer.match(f.get("peer", "")) and f.get("host") == host and
              f.get("pid", "").isdigit() and f.get("name") in ("mpb", "mpb-worker")
              for sid, f in opened.items()),
          "%s: session opened: session, peer, host, pid, name fields: %r" % (fmt, opened))
    check(all(f.get("reason") == "bye" and f.get("host") == host and
              f.get("pid") == opened.get(sid, {}).get("pid") for sid, f in ended.items()),
          "%s: session ended: session, reason, host, pid fields: %r" % (fmt, ended))
    reg = [f for lv, m, f in recs if lv == "info" and m == "worker registered"]
    check(len(reg) == 1 and reg[0].get("pid") == str(wpid) and reg[0].get("host") == host and
          reg[0].get("functions") == "square,fail" and reg[0].get("concurrency") == "1" and
          opened.get(reg[0].get("session"), {}).get("name") == "mpb-worker",
          "%s: worker registered: session, host, pid, functions: %r" % (fmt, reg))
    one = {m: f for lv, m, f in recs if m in ("ready", "listening", "serving HTTP",
                                               "shutting down")}
    check(one.get("ready", {}).get("pid") == str(b.p.pid) and
          one.get("listening", {}).get("endpoint") == b.endpoint and
          one.get("serving HTTP", {}).get("port") == str(b.http_port) and
          one.get("shutting down", {}).get("objects", "").isdigit() and
          one.get("shutting down", {}).get("sessions") == "0",
          "%s: ready, listening, serving HTTP and shutting down with their fields: %r" %
          (fmt, one))
    check(any(f.get("op") == "dict.get" and f.get("object") == "logs" and
              "missing" in f.get("error", "") for lv, m, f in recs if m == "error reply"),
          "%s: an error reply has op, object and error fields" % fmt)

    # mpb-worker's own lines: the same format (parse_records checks ts to the millisecond).
    wrecs = parse_records(fmt, wtext)
    check(SECRET not in wtext, "%s: the authkey is not in mpb-worker's log" % fmt)
    check([(lv, m) for lv, m, f in wrecs] == [("info", "serving"), ("info", "stopped")],
          "%s: mpb-worker logs serving and stopped, at info: %r" % (fmt, wtext))
    wf = {m: f for lv, m, f in wrecs}
    check(wf.get("serving", {}) == {"functions": "square,fail", "lib": opts.demo_lib,
                                    "endpoint": b.endpoint, "concurrency": "1",
                                    "pid": str(wpid)},
          "%s: mpb-worker's serving line has its fields: %r" % (fmt, wf))
    check(wf.get("stopped", {}) == {"tasks": "1", "pid": str(wpid)},
          "%s: mpb-worker's stopped line has its fields: %r" % (fmt, wf))

# --check-config with the key in the environment: its source, never the key.
p = subprocess.run([opts.mpbrokerd, "--check-config"], env=clean_env(MPB_AUTHKEY=SECRET),
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
check(p.returncode == 0 and SECRET not in p.stdout + p.stderr,
      "--check-config does not print MPB_AUTHKEY")

# Levels filter: at warn, no info or debug lines, but the failed handshake is there.
b = Broker("logfmt", level="warn")
try:
    b.mpb(["ping"])
    b.mpb(["ping"], key="wrong")
    # mpb-worker filters too: at warn, a worker that serves and stops says nothing; one with a
    # wrong key says so, at error, with where it tried.
    wrc, wtext, _ = b.worker(["--log-level", "warn"],
                             run=lambda: b.mpb(["pool", "apply", "square", "3"]))
    check(wrc == 0 and wtext == "", "mpb-worker --log-level warn: no info lines: %r" % wtext)
    wrc, wtext, _ = b.worker([], key="the-wrong-authkey-x", env={"MPB_LOG_LEVEL": "warn"})
    wrecs = parse_records("logfmt", wtext)
    check(wrc == 1 and [(lv, m) for lv, m, f in wrecs] == [("error", "authentication failed")] and
          wrecs[0][2].get("endpoint") == b.endpoint,
          "mpb-worker with a wrong key: one error line (%s): %r" % (wrc, wtext))
finally:
    b.stop()
lines = parse_lines("logfmt", b.text())
b.cleanup()
check({lv for lv, _ in lines} == {"warn"}, "--log-level warn keeps only warn and up: %r" % lines)

# mpb-worker refuses a bad format or level, naming where it came from.
for args, env, want in ((["--log-format", "xml"], {}, "--log-format: 'xml' is not logfmt or json"),
                        ([], {"MPB_LOG_LEVEL": "loud"},
                         "MPB_LOG_LEVEL: 'loud' is not debug, info, warn or error")):
    p = subprocess.run([opts.worker, "--lib", opts.demo_lib, "--fn", "square"] + args,
                       env=clean_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=30)
    check(p.returncode == 2 and want in p.stderr, "mpb-worker: %s (%s): %r" %
          (want, p.returncode, p.stderr))

# A generated key: the log says where it is, and never what it is.
b = Broker("json", level="debug", key=None)
try:
    keyfile = os.path.join(b.dir, "data", "authkey")
    key = open(keyfile).read().strip()
    check(len(key) == 64 and os.stat(keyfile).st_mode & 0o777 == 0o600,
          "a generated key: 64 hex digits, mode 0600")
    rc, out, err = b.mpb(["ping"], keyfile=keyfile)
    check(rc == 0, "a client with the generated key file (%s)" % err)
finally:
    b.stop()
text = b.text()
b.cleanup()
parse_lines("json", text)
check(key not in text, "the generated key is not in the log")
made = [f for lv, m, f in parse_records("json", text) if m.startswith("no authkey configured")]
check(made and made[0].get("path", "").endswith("/data/authkey"),
      "the log says where the key was made, in the field path: %r" % made)


def run_broker(args, env, wait_s=5):
    """Starts mpbrokerd, gives it wait_s to start or fail, stops it; (exit status, its log)."""
    d = tempfile.mkdtemp(prefix="mpb-ops-logs.")
    try:
        logpath = os.path.join(d, "log")
        with open(logpath, "w") as log:
            p = subprocess.Popen([opts.mpbrokerd, "--data-dir", os.path.join(d, "data")] + args,
                                 env=env, stdout=subprocess.DEVNULL, stderr=log)
            wait_for(p, lambda: "ready" in open(logpath).read(), wait_s)
            terminate(p)
        return p.returncode, open(logpath).read()
    finally:
        subprocess.run(["rm", "-rf", d])


# libmicrohttpd's messages are log lines (an HTTP port in use), and say the port, not "port 0".
busy = socket.socket()
busy.bind(("127.0.0.1", 0))
busy.listen(1)
bport = busy.getsockname()[1]
for fmt in ("logfmt", "json"):
    rc, text = run_broker(["--listen", "tcp://127.0.0.1:0", "--http", "127.0.0.1:%d" % bport,
                           "--log-format", fmt], clean_env(MPB_AUTHKEY=SECRET))
    recs = parse_records(fmt, text)  # every line well-formed: no raw libmicrohttpd text
    check(rc == 1, "%s: an HTTP port in use stops the broker with 1 (%s)" % (fmt, rc))
    errs = [(m, f) for lv, m, f in recs if lv == "error"]
    check(any(m == "cannot serve HTTP" and f.get("addr") == "127.0.0.1:%d" % bport and
              "port %d" % bport in f.get("error", "") and "in use" in f.get("error", "")
              for m, f in errs),
          "%s: the error names port %d and says it is in use: %r" % (fmt, bport, errs))
    check("port 0" not in text, "%s: no 'port 0' in: %r" % (fmt, text))
busy.close()

# Warnings at start, as fields: an MPB_* variable that is no setting; MPB_AUTHKEY overridden.
kf = tempfile.NamedTemporaryFile("w", prefix="mpb-ops-logs-key.", delete=False)
kf.write(SECRET + "\n")
kf.close()
try:
    rc, text = run_broker(["--listen", "tcp://127.0.0.1:0"],
                          clean_env(MPB_MAXFRAME="1m", MPB_FOO="x", MPB_ENDPOINT="tcp://x:1",
                                    MPB_AUTHKEY="other-" + SECRET, MPB_AUTHKEY_FILE=kf.name))
finally:
    os.unlink(kf.name)
recs = parse_records("logfmt", text)
check(rc == 0, "a broker with unknown MPB_* variables starts and stops (%s): %s" % (rc, text))
unk = {f.get("name"): f.get("did_you_mean") for lv, m, f in recs if lv == "warn" and
       m == "environment variable is not a setting: ignored"}
check(unk == {"MPB_MAXFRAME": "MPB_MAX_FRAME", "MPB_FOO": None},
      "unknown MPB_* variables warned about, with a hint where one is near: %r" % unk)
check(any(lv == "warn" and "MPB_AUTHKEY is set too, and ignored" in m for lv, m, f in recs),
      "MPB_AUTHKEY overridden by MPB_AUTHKEY_FILE is warned about: %r" % recs)
check(SECRET not in text, "neither key is in the log")

finish()

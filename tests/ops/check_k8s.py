#!/usr/bin/python3
"""check_k8s.py - the Kubernetes base in deploy/k8s, validated offline.

The base is rendered twice when kubectl is there: by `kubectl kustomize` and by this script
(plain YAML files listed in kustomization.yaml, the secretGenerator, labels and images, which
is all the base uses); without kubectl only by this script (and that is said). Each rendering
is then checked:

- every document parses; yamllint passes on every file of the base;
- every field is known to the Kubernetes API and of the right type (the model classes of
  Debian's python3-kubernetes: openapi_types, attribute_map), and required fields are set;
- every object, of each file and of each rendering, passes the API's OpenAPI schema as the npm
  package kubernetes-models checks it (enums such as imagePullPolicy and protocol, formats
  such as quantities, required fields); it is installed by this test from the npm registry
  into $MPB_TEST_CACHE/npm-k8s (default /var/cache/mpb-test) the first time, and the test
  fails, saying why, when it cannot be had;
- what neither checks: no negative number (periods, thresholds, replicas, quantities), ports
  in 1..65535, file modes in 0..0777, names as the API wants them (DNS-1123 subdomains and
  labels, DNS-1035 for Services, IANA service names for ports), label keys and values;
- and each of those checks bites: mutated copies of the base (an enum, a quantity, a negative
  period, bad names, a port out of range, a missing or unknown field...) must each be rejected;
- names, labels and selectors match: a workload's selector selects its own pod template; each
  Service selects pods that have every port it targets, and only the broker's; the
  StatefulSet's serviceName is a headless Service that selects it;
- the probes: liveness on /healthz, readiness on /readyz, at the container's HTTP port (by
  name or number), which is the port MPB_HTTP listens on; MPB_LISTEN's port is a container
  port the Service exposes;
- the authkey: MPB_AUTHKEY_FILE in the broker and in the workers is a file of a volume made
  from the Secret the base generates, and the Secret holds that key; nothing else carries it;
- /data is a volumeClaimTemplate mounted where MPB_DATA_DIR points;
- hardening: non-root, read-only root filesystem, no privilege escalation, ALL capabilities
  dropped, requests and limits for every container; 1 broker replica, 2+ workers that reach
  the broker through its Service.

A missing tool (python3-yaml, python3-kubernetes, yamllint, nodejs and npm) fails the test
with the package to install: never a silent pass.

usage: check_k8s.py --source DIR
"""
import argparse
import base64
import copy
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ap = argparse.ArgumentParser()
ap.add_argument("--source", required=True)
opts = ap.parse_args()
BASE = os.path.join(opts.source, "deploy", "k8s")

missing = []
try:
    import yaml
except ImportError:
    missing.append("python3-yaml (import yaml)")
try:
    import kubernetes.client as kc
except ImportError:
    missing.append("python3-kubernetes (import kubernetes)")
if not shutil.which("yamllint"):
    missing.append("yamllint (the yamllint command)")
for tool in ("node", "npm"):
    if not shutil.which(tool):
        missing.append("%s (the %s command, for the npm package kubernetes-models)" %
                       ("nodejs" if tool == "node" else "npm", tool))
if missing:
    print("FAIL: missing tools for the manifest checks; install: apt-get install -y "
          "python3-yaml python3-kubernetes yamllint nodejs npm\n  missing: " +
          "; ".join(missing), file=sys.stderr)
    sys.exit(1)

failures = []
checks = 0
collect = None  # a list while errors_of() gathers what fails instead of failing the test


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        if collect is not None:
            collect.append(what)
        else:
            failures.append(what)
            print("FAIL:", what, file=sys.stderr)
    return cond


def errors_of(fn, *args):
    """What fn's checks would fail, as a list, without failing the test."""
    global collect
    saved, collect = collect, []
    try:
        try:
            fn(*args)
        except (KeyError, TypeError, IndexError, AttributeError, ValueError) as e:
            collect.append("%s: %s" % (type(e).__name__, e))
        return collect
    finally:
        collect = saved


# ---- kubernetes-models, from the npm registry into the test cache ----------------------------

KM_VERSION = "4.5.1"
HERE = os.path.dirname(os.path.abspath(__file__))
NPM_DIR = os.path.join(os.environ.get("MPB_TEST_CACHE") or "/var/cache/mpb-test", "npm-k8s")


def npm_models():
    """NODE_PATH holding kubernetes-models KM_VERSION, installed into NPM_DIR once."""
    mods = os.path.join(NPM_DIR, "node_modules")
    pj = os.path.join(mods, "kubernetes-models", "package.json")

    def have():
        try:
            return json.load(open(pj)).get("version") == KM_VERSION
        except (OSError, ValueError):
            return False
    try:
        os.makedirs(NPM_DIR, exist_ok=True)
        lock = open(os.path.join(NPM_DIR, ".lock"), "w")
    except OSError as e:
        print("FAIL: cannot write the npm cache %s (%s): set MPB_TEST_CACHE to a writable "
              "folder" % (NPM_DIR, e), file=sys.stderr)
        sys.exit(1)
    fcntl.flock(lock, fcntl.LOCK_EX)  # one install at a time; the others wait and reuse it
    try:
        if not have():
            cmd = ["npm", "install", "--prefix", NPM_DIR, "--no-audit", "--no-fund",
                   "--no-package-lock", "--loglevel=error", "kubernetes-models@" + KM_VERSION]
            try:
                p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, timeout=300)
                out, rc = p.stdout, p.returncode
            except subprocess.TimeoutExpired:
                out, rc = "(no answer in 300 s)", -1
            if rc != 0 or not have():
                print("FAIL: the validator cannot be had: `%s` failed (exit %s); the npm "
                      "registry must be reachable:\n%s" % (" ".join(cmd), rc, out[-2000:]),
                      file=sys.stderr)
                sys.exit(1)
            print("NOTE: installed kubernetes-models %s into %s" % (KM_VERSION, NPM_DIR))
    finally:
        lock.close()
    return mods


NODE_PATH = npm_models()


def npm_validate(cases):
    """{case: [objects]} -> {case: [(what, [errors])]}, by kubernetes-models in one node run."""
    env = dict(os.environ, NODE_PATH=NODE_PATH)
    p = subprocess.run(["node", os.path.join(HERE, "k8s_validate.js")], env=env,
                       input=json.dumps({"cases": cases}), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=120)
    if not check(p.returncode == 0, "node k8s_validate.js runs: %s" % p.stderr[-1000:]):
        return {c: [("?", ["validator did not run"])] for c in cases}
    res = json.loads(p.stdout)
    return {c: [("%s/%s" % (r["kind"], r["name"]), r["errors"]) for r in rs]
            for c, rs in res.items()}


# ---- what the schemas do not say: numbers, names --------------------------------------------

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
IANA_SVC = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
PORT_KEYS = {"containerPort", "hostPort", "port", "targetPort", "nodePort"}
AT_LEAST_1 = {"periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold"}
MODE_KEYS = {"defaultMode", "mode"}


def name_errors(kind, name, path, max_len=63):
    pat, what = {"label": (DNS1123_LABEL, "a DNS-1123 label"),
                 "subdomain": (DNS1123_SUB, "a DNS-1123 subdomain"),
                 "1035": (DNS1035_LABEL, "a DNS-1035 label"),
                 "port": (IANA_SVC, "an IANA service name")}[kind]
    if not isinstance(name, str):
        return ["%s: name %r is not a string" % (path, name)]
    max_len = 253 if kind == "subdomain" else 15 if kind == "port" else max_len
    ok = bool(pat.match(name)) and len(name) <= max_len
    if kind == "port":
        ok = ok and "--" not in name and re.search("[a-z]", name) is not None
    return [] if ok else ["%s: %r is not %s (at most %d characters)" % (path, name, what,
                                                                         max_len)]


def label_errors(labels, path):
    errs = []
    if not isinstance(labels, dict):
        return errs
    for k, v in labels.items():
        prefix, _, nm = str(k).rpartition("/")
        if (prefix and not (DNS1123_SUB.match(prefix) and len(prefix) <= 253)) or \
                not (LABEL_NAME.match(nm) and len(nm) <= 63):
            errs.append("%s: label key %r is not a valid label name" % (path, k))
        if not (isinstance(v, str) and LABEL_VALUE.match(v) and len(v) <= 63):
            errs.append("%s: label %s's value %r is not a valid label value" % (path, k, v))
    return errs


def hand_errors(doc):
    """Numbers and names of one object that the schemas let through."""
    errs = []
    kind = doc.get("kind")
    meta = doc.get("metadata", {})
    errs += name_errors("1035" if kind == "Service" else "subdomain", meta.get("name"),
                        "%s metadata.name" % kind)
    errs += label_errors(meta.get("labels"), "%s metadata.labels" % kind)

    def walk(v, path, parent_key):
        if isinstance(v, bool):
            return
        if isinstance(v, int):
            if v < 0:
                errs.append("%s: %d is negative" % (path, v))
            if parent_key in PORT_KEYS and not 1 <= v <= 65535:
                errs.append("%s: port %d is not 1..65535" % (path, v))
            if parent_key in AT_LEAST_1 and v < 1:
                errs.append("%s: %d is less than 1" % (path, v))
            if parent_key in MODE_KEYS and v > 0o777:
                errs.append("%s: mode %d (%o) is more than 0777" % (path, v, v))
            return
        if isinstance(v, str) and path.split(".")[-2:-1] in (["requests"], ["limits"]) and \
                v.strip().startswith("-"):
            errs.append("%s: quantity %r is negative" % (path, v))
        if isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, "%s[%d]" % (path, i), parent_key)
            return
        if not isinstance(v, dict):
            return
        for k, x in v.items():
            p = "%s.%s" % (path, k)
            if k in ("containers", "initContainers", "volumes") and isinstance(x, list):
                for i, c in enumerate(x):
                    if isinstance(c, dict):
                        errs.extend(name_errors("label", c.get("name"), "%s[%d].name" % (p, i)))
            if k == "volumeMounts" and isinstance(x, list):
                for i, m in enumerate(x):
                    if isinstance(m, dict):
                        errs.extend(name_errors("label", m.get("name"), "%s[%d].name" % (p, i)))
            if k == "ports" and isinstance(x, list):
                for i, pt in enumerate(x):
                    if isinstance(pt, dict) and "name" in pt:
                        errs.extend(name_errors("port", pt["name"], "%s[%d].name" % (p, i)))
                    if isinstance(pt, dict) and isinstance(pt.get("targetPort"), str):
                        errs.extend(name_errors("port", pt["targetPort"],
                                                "%s[%d].targetPort" % (p, i)))
            if k in ("labels", "matchLabels") or (k == "selector" and kind == "Service"):
                errs.extend(label_errors(x, p))
            if k == "volumeClaimTemplates" and isinstance(x, list):
                for i, t in enumerate(x):
                    errs.extend(name_errors("label", t.get("metadata", {}).get("name"),
                                            "%s[%d].metadata.name" % (p, i)))
            if k == "serviceName":
                errs.extend(name_errors("1035", x, p))
            walk(x, p, k)
    walk(doc.get("spec", {}), "%s spec" % kind, "spec")
    return errs


def check_schemas(docs_by_case):
    """kubernetes-models and the hand checks on each case's objects: every one passes."""
    res = npm_validate(docs_by_case)
    for case, docs in docs_by_case.items():
        for (what, errs), d in zip(res.get(case, []), docs):
            check(not errs, "%s: %s passes kubernetes-models: %s" % (case, what,
                                                                    "; ".join(errs)))
            he = hand_errors(d)
            check(not he, "%s: %s: %s" % (case, what, "; ".join(he)))


# ---- yamllint --------------------------------------------------------------------------------

YAMLLINT_CONF = ("{extends: default, rules: {line-length: {max: 100}, "
                 "document-start: disable, truthy: {check-keys: false}}}")
files = sorted(os.path.join(BASE, f) for f in os.listdir(BASE) if f.endswith((".yaml", ".yml")))
p = subprocess.run(["yamllint", "-f", "parsable", "-d", YAMLLINT_CONF] + files,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
check(p.returncode == 0, "yamllint deploy/k8s:\n" + p.stdout)

# ---- rendering -----------------------------------------------------------------------------

DUMMY_KEY = "dummy-authkey-for-rendering-only\n"


def render_python(base):
    """The base as kustomize renders it, for what it uses: resources, secretGenerator (files,
    literals), labels (metadata only), images. Secret names keep no hash suffix."""
    k = yaml.safe_load(open(os.path.join(base, "kustomization.yaml")))
    known = {"apiVersion", "kind", "resources", "secretGenerator", "labels", "images"}
    check(set(k) <= known, "kustomization.yaml uses only %s (this renderer knows them): %s" %
          (sorted(known), sorted(set(k) - known)))
    check(k.get("kind") == "Kustomization", "kustomization.yaml is a Kustomization")
    docs = []
    for r in k.get("resources", []):
        path = os.path.join(base, r)
        check(os.path.isfile(path), "resource %s exists" % r)
        for d in yaml.safe_load_all(open(path)):
            if d is not None:
                docs.append(d)
    for g in k.get("secretGenerator", []):
        data = {}
        for f in g.get("files", []):
            key, _, fn = f.partition("=") if "=" in f else (os.path.basename(f), "", f)
            data[key] = base64.b64encode(open(os.path.join(base, fn), "rb").read()).decode()
        for lit in g.get("literals", []):
            key, _, v = lit.partition("=")
            data[key] = base64.b64encode(v.encode()).decode()
        docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": g["name"]},
                     "type": g.get("type", "Opaque"), "data": data})
    for lab in k.get("labels", []):
        check(not lab.get("includeSelectors"), "labels do not change selectors")
        for d in docs:
            d.setdefault("metadata", {}).setdefault("labels", {}).update(lab["pairs"])
            if lab.get("includeTemplates") and "template" in d.get("spec", {}):
                d["spec"]["template"].setdefault("metadata", {}).setdefault(
                    "labels", {}).update(lab["pairs"])
    images = {i["name"]: i for i in k.get("images", [])}
    for d in docs:
        for c in pod_containers(d):
            name, _, tag = c.get("image", "").partition(":")
            if name in images:
                i = images[name]
                c["image"] = i.get("newName", name) + ":" + str(i.get("newTag", tag or "latest"))
    return docs


def render_kubectl(base):
    p = subprocess.run(["kubectl", "kustomize", base], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    if not check(p.returncode == 0, "kubectl kustomize renders: " + p.stderr):
        return []
    return [d for d in yaml.safe_load_all(p.stdout) if d is not None]


def pod_spec(d):
    return d.get("spec", {}).get("template", {}).get("spec", {}) if d.get("kind") in (
        "StatefulSet", "Deployment", "DaemonSet", "Job") else None


def pod_containers(d):
    ps = pod_spec(d)
    return (ps.get("initContainers", []) + ps.get("containers", [])) if ps else []


# ---- the API's types ---------------------------------------------------------------------------

PRIMITIVE = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float),
             "object": (str, int, dict, list, bool), "datetime": (str,), "date": (str,)}


def check_type(value, typ, path):
    if typ in PRIMITIVE:
        ok = isinstance(value, PRIMITIVE[typ]) and not (typ == "int" and isinstance(value, bool))
        return check(ok, "%s: %r is not %s" % (path, value, typ))
    m = re.match(r"list\[(.+)\]$", typ)
    if m:
        if check(isinstance(value, list), "%s: not a list" % path):
            for i, v in enumerate(value):
                check_type(v, m.group(1), "%s[%d]" % (path, i))
        return
    m = re.match(r"dict\(str, (.+)\)$", typ)
    if m:
        if check(isinstance(value, dict), "%s: not a map" % path):
            quantity = path.endswith((".limits", ".requests", ".capacity"))
            for k, v in value.items():
                if quantity and isinstance(v, (int, float)) and not isinstance(v, bool):
                    continue  # a Quantity may be a number
                check_type(v, m.group(1), "%s.%s" % (path, k))
        return
    cls = getattr(kc, typ, None)
    if not check(cls is not None, "%s: unknown model %s" % (path, typ)):
        return
    if not check(isinstance(value, dict), "%s: %r is not an object (%s)" % (path, value, typ)):
        return
    by_json = {v: k for k, v in cls.attribute_map.items()}
    for k, v in value.items():
        if check(k in by_json, "%s: unknown field '%s' in %s" % (path, k, typ)):
            if v is not None:
                check_type(v, cls.openapi_types[by_json[k]], "%s.%s" % (path, k))


MODELS = {("v1", "Service"): "V1Service", ("v1", "Secret"): "V1Secret",
          ("apps/v1", "StatefulSet"): "V1StatefulSet", ("apps/v1", "Deployment"): "V1Deployment",
          ("v1", "ConfigMap"): "V1ConfigMap",
          ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
          ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget"}


def check_api(docs, label):
    api = kc.ApiClient()
    for d in docs:
        what = "%s %s/%s" % (label, d.get("kind"), d.get("metadata", {}).get("name"))
        model = MODELS.get((d.get("apiVersion"), d.get("kind")))
        if not check(model is not None, "%s: an apiVersion/kind this check knows" % what):
            continue
        check_type(d, model, what)
        try:  # required fields: the models refuse None where the API requires a value
            api._ApiClient__deserialize(d, model)
        except (ValueError, TypeError) as e:
            check(False, "%s: %s" % (what, e))


# ---- the checks on one rendering ------------------------------------------------------------


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def env_of(c):
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def policy_admits(policy, from_labels, port, ports):
    """Whether an Ingress NetworkPolicy admits a pod of this namespace with from_labels to the
    container port (its name, and number in ports) of the pods it selects."""
    for rule in policy["spec"].get("ingress", []):
        rports = rule.get("ports")
        if rports and not any(p.get("port") in (port, ports.get(port)) and
                              p.get("protocol", "TCP") == "TCP" for p in rports):
            continue
        peers = rule.get("from")
        if not peers:
            return True
        for peer in peers:
            if "namespaceSelector" in peer or "ipBlock" in peer:
                continue  # not a pod of this namespace by its labels
            if matches(peer.get("podSelector", {}).get("matchLabels", {}), from_labels):
                return True
    return False


def check_network_policy(policy, sts, dep, ports, label):
    """The NetworkPolicy: it selects the broker's pods (and no worker's), restricts Ingress,
    admits the workers and pods labelled mpbroker.io/client=true to the client port and
    nobody else, and leaves the HTTP port open (probes, Prometheus)."""
    spec = policy["spec"]
    bl = sts["spec"]["template"]["metadata"].get("labels", {})
    wl = dep["spec"]["template"]["metadata"].get("labels", {})
    sel = spec.get("podSelector", {}).get("matchLabels", {})
    check(matches(sel, bl), "%s: the NetworkPolicy selects the broker's pods: %s" % (label, sel))
    check(not matches(sel, wl), "%s: the NetworkPolicy does not select the workers" % label)
    check("Ingress" in spec.get("policyTypes", []), "%s: the NetworkPolicy restricts Ingress" %
          label)
    check(policy_admits(policy, wl, "mpb", ports),
          "%s: the NetworkPolicy admits the workers to the client port" % label)
    check(policy_admits(policy, {"mpbroker.io/client": "true", "app": "anything"}, "mpb", ports),
          "%s: the NetworkPolicy admits pods labelled mpbroker.io/client=true" % label)
    check(not policy_admits(policy, {"app": "anything"}, "mpb", ports),
          "%s: the NetworkPolicy refuses unlabelled pods on the client port" % label)
    check(not policy_admits(policy, {"mpbroker.io/client": "false"}, "mpb", ports),
          "%s: the NetworkPolicy refuses mpbroker.io/client=false" % label)
    check(policy_admits(policy, {"app": "prometheus"}, "http", ports),
          "%s: the NetworkPolicy leaves the HTTP port open (probes, /metrics)" % label)


def check_rendered(docs, label, hashed):
    by_kind = {}
    for d in docs:
        check(isinstance(d, dict) and d.get("apiVersion") and d.get("kind") and
              d.get("metadata", {}).get("name"), "%s: every document has apiVersion, kind, "
              "metadata.name: %r" % (label, d)[:200])
        by_kind.setdefault(d.get("kind"), []).append(d)
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    check(len(names) == len(set(names)), "%s: no two objects share kind and name" % label)
    counts_ok = True
    for kind, n in (("StatefulSet", 1), ("Deployment", 1), ("Secret", 1), ("Service", 2),
                    ("NetworkPolicy", 1)):
        counts_ok &= check(len(by_kind.get(kind, [])) == n, "%s: %d %s (got %d)" %
                           (label, n, kind, len(by_kind.get(kind, []))))
    if not counts_ok:
        return
    check_api(docs, label)
    sts = by_kind["StatefulSet"][0]
    dep = by_kind["Deployment"][0]
    secret = by_kind["Secret"][0]
    services = by_kind["Service"]
    workloads = [sts, dep]
    sname = secret["metadata"]["name"]
    check(re.match(r"^mpbroker-authkey" + (r"-[a-z0-9]{10}$" if hashed else "$"), sname),
          "%s: the Secret is mpbroker-authkey%s: %s" % (label, "-<hash>" if hashed else "", sname))

    # Workloads select their own pods, and only their own.
    for w in workloads:
        sel = w["spec"]["selector"].get("matchLabels", {})
        tl = w["spec"]["template"]["metadata"].get("labels", {})
        check(matches(sel, tl), "%s: %s's selector %s selects its template %s" %
              (label, w["metadata"]["name"], sel, tl))
        for o in workloads:
            if o is not w:
                check(not matches(sel, o["spec"]["template"]["metadata"].get("labels", {})),
                      "%s: %s's selector does not select %s's pods" %
                      (label, w["metadata"]["name"], o["metadata"]["name"]))

    # A drain evicts workers one at a time, and never the broker through their budget.
    pdbs = by_kind.get("PodDisruptionBudget", [])
    if check(len(pdbs) == 1, "%s: one PodDisruptionBudget (got %d)" % (label, len(pdbs))):
        ps = pdbs[0]["spec"]
        psel = ps.get("selector", {}).get("matchLabels", {})
        check(matches(psel, dep["spec"]["template"]["metadata"].get("labels", {})) and
              not matches(psel, sts["spec"]["template"]["metadata"].get("labels", {})),
              "%s: the budget selects the worker pods and not the broker's: %s" % (label, psel))
        check(ps.get("maxUnavailable") == 1 and "minAvailable" not in ps,
              "%s: the budget lets one worker go at a time: %s" % (label, ps))

    # The broker container and its ports.
    bc = [c for c in sts["spec"]["template"]["spec"]["containers"]]
    check(len(bc) == 1, "%s: one broker container" % label)
    bc = bc[0]
    benv = env_of(bc)
    ports = {p.get("name"): p["containerPort"] for p in bc.get("ports", [])}
    check(set(ports) >= {"mpb", "http"}, "%s: broker ports named mpb and http: %s" %
          (label, ports))
    check_network_policy(by_kind["NetworkPolicy"][0], sts, dep, ports, label)
    m = re.match(r"^tcp://[^:]+:(\d+)$", benv.get("MPB_LISTEN") or "")
    check(m and int(m.group(1)) == ports.get("mpb"), "%s: MPB_LISTEN %s on the mpb port %s" %
          (label, benv.get("MPB_LISTEN"), ports.get("mpb")))
    m = re.match(r"^[0-9.]+:(\d+)$", benv.get("MPB_HTTP") or "")
    check(m and int(m.group(1)) == ports.get("http"), "%s: MPB_HTTP %s on the http port %s" %
          (label, benv.get("MPB_HTTP"), ports.get("http")))
    check(not (benv.get("MPB_LISTEN") or "").startswith("tcp://127."),
          "%s: the broker listens beyond loopback" % label)

    # Probes: at the http port (by name or number), on /healthz and /readyz.
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                        ("startupProbe", None)):
        pr = bc.get(probe)
        if probe == "startupProbe" and pr is None:
            continue
        if not check(pr and "httpGet" in pr, "%s: %s is an httpGet" % (label, probe)):
            continue
        hg = pr["httpGet"]
        port = hg.get("port")
        check(port == "http" or port == ports.get("http"), "%s: %s at the http port (%r)" %
              (label, probe, port))
        if path:
            check(hg.get("path") == path, "%s: %s on %s (%r)" % (label, probe, path,
                                                                hg.get("path")))
        else:
            check(hg.get("path") in ("/healthz", "/readyz"), "%s: %s path" % (label, probe))

    # The workers' readiness is their own (mpb-worker --check), not the broker's HTTP probes.
    for wc in dep["spec"]["template"]["spec"]["containers"]:
        rp = wc.get("readinessProbe") or {}
        check(rp.get("exec", {}).get("command") == ["mpb-worker", "--check"],
              "%s: worker container %s is ready by mpb-worker --check: %s" %
              (label, wc.get("name"), rp))
        check("livenessProbe" not in wc, "%s: no liveness probe restarts workers in a broker "
              "outage" % label)

    # Services: each selects the broker (not the workers), and every port it targets exists.
    headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
    check(len(headless) == 1, "%s: one headless Service" % label)
    check(sts["spec"].get("serviceName") in [s["metadata"]["name"] for s in headless],
          "%s: StatefulSet serviceName %r is the headless Service" %
          (label, sts["spec"].get("serviceName")))
    client_svc = None
    for s in services:
        sel = s["spec"].get("selector", {})
        sn = s["metadata"]["name"]
        picked = [w for w in workloads
                  if matches(sel, w["spec"]["template"]["metadata"].get("labels", {}))]
        check(picked == [sts], "%s: Service %s selects the broker pods only (%s)" %
              (label, sn, [w["metadata"]["name"] for w in picked]))
        pnames = [p.get("name") for p in s["spec"]["ports"]]
        check(len(pnames) == len(set(pnames)), "%s: Service %s port names unique" % (label, sn))
        for p in s["spec"]["ports"]:
            t = p.get("targetPort", p["port"])
            check(t in ports or t in ports.values(), "%s: Service %s targets %r, a container "
                  "port of the broker (%s)" % (label, sn, t, ports))
        svc_ports = {p.get("name"): p["port"] for p in s["spec"]["ports"]}
        check(svc_ports.get("mpb") == 5555 and svc_ports.get("http") == 8080,
              "%s: Service %s has client port 5555 and http 8080: %s" % (label, sn, svc_ports))
        if s["spec"].get("clusterIP") != "None":
            client_svc = s

    # /data is a claim template, mounted where MPB_DATA_DIR says.
    vct = [t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])]
    mounts = {m["mountPath"]: m["name"] for m in bc.get("volumeMounts", [])}
    dd = benv.get("MPB_DATA_DIR")
    check(dd in mounts and mounts[dd] in vct, "%s: MPB_DATA_DIR %s is a volumeClaimTemplate "
          "mount (%s, %s)" % (label, dd, mounts, vct))
    check(sts["spec"].get("replicas") == 1, "%s: one broker replica" % label)
    for t in sts["spec"].get("volumeClaimTemplates", []):
        check(t["spec"].get("resources", {}).get("requests", {}).get("storage"),
              "%s: the claim asks for storage" % label)

    # The authkey: every container reading it reads a file of the generated Secret.
    keys = set(secret.get("data", {})) | set(secret.get("stringData", {}))
    readers = 0
    for w in workloads:
        ps = w["spec"]["template"]["spec"]
        vols = {v["name"]: v for v in ps.get("volumes", [])}
        for c in ps["containers"]:
            wn = "%s/%s" % (w["metadata"]["name"], c["name"])
            env = env_of(c)
            check("MPB_AUTHKEY" not in env, "%s: %s has no authkey in plain env" % (label, wn))
            kf = env.get("MPB_AUTHKEY_FILE")
            if not check(kf, "%s: %s sets MPB_AUTHKEY_FILE" % (label, wn)):
                continue
            readers += 1
            found = False
            for m in c.get("volumeMounts", []):
                mp = m["mountPath"].rstrip("/") + "/"
                if not kf.startswith(mp):
                    continue
                v = vols.get(m["name"], {})
                sec = v.get("secret")
                if not check(sec, "%s: %s's authkey mount %s is a Secret volume" %
                             (label, wn, m["mountPath"])):
                    continue
                check(sec.get("secretName") == sname, "%s: %s mounts Secret %s, the generated "
                      "one is %s" % (label, wn, sec.get("secretName"), sname))
                rel = kf[len(mp):]
                items = {i["path"]: i["key"] for i in sec.get("items", [])}
                key = items.get(rel, rel if not items else None)
                check(key in keys, "%s: %s reads key %r of the Secret, which holds %s" %
                      (label, wn, key, sorted(keys)))
                check(m.get("readOnly") is True, "%s: %s mounts the key read-only" % (label, wn))
                mode = sec.get("defaultMode", 0o644)
                check(mode & 0o007 == 0, "%s: %s's key is not world-readable (mode %o)" %
                      (label, wn, mode))
                found = True
            check(found, "%s: %s's MPB_AUTHKEY_FILE %s is in a mounted volume" % (label, wn, kf))
    check(readers == 2, "%s: the broker and the workers read the authkey (%d)" % (label, readers))

    # Workers: scalable, reach the broker through its Service.
    check(dep["spec"].get("replicas", 1) >= 2, "%s: at least 2 workers" % label)
    wc = dep["spec"]["template"]["spec"]["containers"][0]
    wenv = env_of(wc)
    want_ep = "tcp://%s:5555" % (client_svc["metadata"]["name"] if client_svc else "?")
    check(wenv.get("MPB_ENDPOINT") == want_ep, "%s: workers' MPB_ENDPOINT %r is %s" %
          (label, wenv.get("MPB_ENDPOINT"), want_ep))
    check((wc.get("command") or [None])[0] == "mpb-worker", "%s: workers run mpb-worker" % label)

    # Hardening and resources, every container.
    for w in workloads:
        ps = w["spec"]["template"]["spec"]
        psc = ps.get("securityContext", {})
        check(ps.get("automountServiceAccountToken") is False,
              "%s: %s does not mount a service account token" % (label, w["metadata"]["name"]))
        for c in ps["containers"]:
            wn = "%s/%s" % (w["metadata"]["name"], c["name"])
            sc = c.get("securityContext", {})
            check(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True,
                  "%s: %s runAsNonRoot" % (label, wn))
            check(sc.get("runAsUser", psc.get("runAsUser", 1)) != 0, "%s: %s uid != 0" %
                  (label, wn))
            check(sc.get("readOnlyRootFilesystem") is True, "%s: %s read-only root" % (label, wn))
            check(sc.get("allowPrivilegeEscalation") is False,
                  "%s: %s no privilege escalation" % (label, wn))
            check("ALL" in sc.get("capabilities", {}).get("drop", []),
                  "%s: %s drops ALL capabilities" % (label, wn))
            check(not sc.get("capabilities", {}).get("add"), "%s: %s adds none" % (label, wn))
            check(not sc.get("privileged"), "%s: %s not privileged" % (label, wn))
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                check(res.get(kind, {}).get("cpu") is not None and
                      res.get(kind, {}).get("memory") is not None,
                      "%s: %s has cpu and memory %s" % (label, wn, kind))
            check(c.get("image", "").startswith("localhost/mpbroker:"),
                  "%s: %s image set by kustomize images: %r" % (label, wn, c.get("image")))


_check_rendered = check_rendered


def check_rendered(docs, label, hashed):  # noqa: F811 - a malformed base fails, not crashes
    try:
        _check_rendered(docs, label, hashed)
    except (KeyError, TypeError, IndexError, AttributeError) as e:
        check(False, "%s: the manifests lack something the checks need: %s: %s" %
              (label, type(e).__name__, e))


# ---- each check bites: mutated copies of the base must be rejected ----------------------------


def obj(docs, kind, name=None):
    return [d for d in docs if d.get("kind") == kind and
            (name is None or d["metadata"]["name"] == name)][0]


def broker_c(docs):
    return obj(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]


def worker_c(docs):
    return obj(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def setk(d, key, value):
    d[key] = value


# (what, how, a text one of the errors must contain)
MUTATIONS = [
    ("imagePullPolicy: Sometimes", lambda ds: setk(broker_c(ds), "imagePullPolicy", "Sometimes"),
     "imagePullPolicy must be equal to one of the allowed values"),
    ("protocol: TCPX", lambda ds: setk(obj(ds, "Service", "mpbroker")["spec"]["ports"][0],
                                       "protocol", "TCPX"),
     "protocol must be equal to one of the allowed values"),
    ("memory: 128Mx", lambda ds: setk(broker_c(ds)["resources"]["requests"], "memory", "128Mx"),
     'memory must match format "quantity"'),
    ("storage: lots", lambda ds: setk(obj(ds, "StatefulSet")["spec"]["volumeClaimTemplates"][0]
                                      ["spec"]["resources"]["requests"], "storage", "lots"),
     'storage must match format "quantity"'),
    ("periodSeconds: -10", lambda ds: setk(broker_c(ds)["livenessProbe"], "periodSeconds", -10),
     "livenessProbe.periodSeconds: -10 is negative"),
    ("failureThreshold: 0", lambda ds: setk(broker_c(ds)["readinessProbe"], "failureThreshold",
                                            0), "failureThreshold: 0 is less than 1"),
    ("replicas: -1", lambda ds: setk(obj(ds, "Deployment")["spec"], "replicas", -1),
     "replicas: -1 is negative"),
    ("cpu: -1", lambda ds: setk(worker_c(ds)["resources"]["limits"], "cpu", "-1"),
     "quantity '-1' is negative"),
    ("containerPort: 70000", lambda ds: setk(broker_c(ds)["ports"][0], "containerPort", 70000),
     "port 70000 is not 1..65535"),
    ("defaultMode: 1000", lambda ds: setk(obj(ds, "Deployment")["spec"]["template"]["spec"]
                                          ["volumes"][0]["secret"], "defaultMode", 1000),
     "mode 1000 (1750) is more than 0777"),
    ("container name MPB_Brokerd", lambda ds: setk(broker_c(ds), "name", "MPB_Brokerd"),
     "'MPB_Brokerd' is not a DNS-1123 label"),
    ("StatefulSet name MPBroker", lambda ds: setk(obj(ds, "StatefulSet")["metadata"], "name",
                                                  "MPBroker"),
     "'MPBroker' is not a DNS-1123 subdomain"),
    ("Service name mpb.broker", lambda ds: setk(obj(ds, "Service", "mpbroker")["metadata"],
                                                "name", "mpb.broker"),
     "'mpb.broker' is not a DNS-1035 label"),
    ("port name http_port", lambda ds: setk(broker_c(ds)["ports"][1], "name", "http_port"),
     "'http_port' is not an IANA service name"),
    ("port name too long", lambda ds: setk(obj(ds, "Service", "mpbroker")["spec"]["ports"][1],
                                           "name", "http-metrics-port"),
     "'http-metrics-port' is not an IANA service name"),
    ("volume name authkey.vol", lambda ds: setk(obj(ds, "Deployment")["spec"]["template"]
                                                ["spec"]["volumes"][0], "name", "authkey.vol"),
     "'authkey.vol' is not a DNS-1123 label"),
    ("label value 'bad value!'", lambda ds: setk(obj(ds, "Service", "mpbroker")["metadata"]
                                                 ["labels"], "app.kubernetes.io/name",
                                                 "bad value!"),
     "is not a valid label value"),
    ("no container name", lambda ds: worker_c(ds).pop("name"),
     "containers/0 must have required property name"),
    ("unknown field imagePullPolicyy", lambda ds: setk(broker_c(ds), "imagePullPolicyy", "Always"),
     "unknown field 'imagePullPolicyy'"),
    ("replicas: \"2\"", lambda ds: setk(obj(ds, "Deployment")["spec"], "replicas", "2"),
     "replicas must be integer"),
]


def check_mutations(docs):
    cases = {}
    for what, how, _ in MUTATIONS:
        ds = copy.deepcopy(docs)
        how(ds)
        cases[what] = ds
    res = npm_validate(cases)
    for what, _, want in MUTATIONS:
        errs = [e for _, es in res.get(what, []) for e in es]
        for d in cases[what]:
            errs += hand_errors(d)
        errs += errors_of(check_api, cases[what], what)
        check(any(want in e for e in errs), "the mutation %s is rejected with %r; the errors "
              "were: %s" % (what, want, errs or "none"))


def check_components(tmp, base):
    """An overlay with every component of deploy/k8s/components: each does what it says, the
    result passes the schemas, and what they leave alone still passes the base's checks."""
    comps = sorted(os.listdir(os.path.join(base, "components")))
    check(comps == ["ephemeral", "metrics", "workers"], "components: %s" % comps)
    for c in comps:
        for f in os.listdir(os.path.join(base, "components", c)):
            p = subprocess.run(["yamllint", "-d", "{extends: default, rules: {line-length: "
                                "{max: 100}, document-start: disable}}",
                                os.path.join(base, "components", c, f)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            check(p.returncode == 0, "yamllint components/%s/%s: %s" % (c, f, p.stdout))
    ov = os.path.join(tmp, "overlay")
    os.makedirs(ov, exist_ok=True)
    with open(os.path.join(ov, "kustomization.yaml"), "w") as f:
        f.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                "resources: [../k8s]\ncomponents: [%s]\n" %
                ", ".join("../k8s/components/" + c for c in comps))
    docs = render_kubectl(ov)
    if not check(docs, "kubectl kustomize renders an overlay with every component"):
        return
    sms = [d for d in docs if d.get("kind") == "ServiceMonitor"]
    if check(len(sms) == 1 and sms[0].get("apiVersion") == "monitoring.coreos.com/v1",
             "components/metrics adds one ServiceMonitor"):
        sm = sms[0]["spec"]
        sel = sm.get("selector", {}).get("matchLabels", {})
        picked = sorted(d["metadata"]["name"] for d in docs if d.get("kind") == "Service" and
                        matches(sel, d["metadata"].get("labels", {})))
        check(picked == ["mpbroker"], "the ServiceMonitor selects the mpbroker Service only "
              "(not the headless one): %s" % picked)
        check(sm.get("endpoints") == [{"port": "http", "path": "/metrics", "interval": "30s"}],
              "the ServiceMonitor scrapes port http, /metrics: %s" % sm.get("endpoints"))
    dep = [d for d in docs if d.get("kind") == "Deployment"]
    check(dep and dep[0]["spec"].get("replicas") == 4, "components/workers: 4 workers")
    sts = [d for d in docs if d.get("kind") == "StatefulSet"]
    if check(len(sts) == 1, "one StatefulSet in the overlay"):
        vols = {v["name"]: v for v in sts[0]["spec"]["template"]["spec"].get("volumes", [])}
        check("volumeClaimTemplates" not in sts[0]["spec"] and
              vols.get("data", {}).get("emptyDir") == {},
              "components/ephemeral: /data is an emptyDir, no claim: %s" % list(vols))
    rest = [d for d in docs if d.get("kind") != "ServiceMonitor"]
    check_schemas({"overlay with every component": rest})
    # and without ephemeral (the base's checks want the claim), everything else still holds
    with open(os.path.join(ov, "kustomization.yaml"), "w") as f:
        f.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                "resources: [../k8s]\ncomponents: [../k8s/components/metrics, "
                "../k8s/components/workers]\n")
    docs = render_kubectl(ov)
    check_rendered([d for d in docs if d.get("kind") != "ServiceMonitor"],
                   "overlay with metrics and workers", hashed=True)


# Mutations the schemas accept but check_rendered must refuse: (what, how, a text of the error)
SEMANTIC_MUTATIONS = [
    ("the budget selects the broker", lambda ds: setk(
        obj(ds, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        "app.kubernetes.io/component", "broker"), "the budget selects the worker pods"),
    ("the budget blocks drains", lambda ds: setk(obj(ds, "PodDisruptionBudget")["spec"],
                                                 "maxUnavailable", 0),
     "the budget lets one worker go at a time"),
    ("workers ready by /readyz", lambda ds: setk(worker_c(ds), "readinessProbe",
                                                 {"httpGet": {"path": "/readyz", "port": 8080}}),
     "is ready by mpb-worker --check"),
    ("workers with a liveness probe", lambda ds: setk(worker_c(ds), "livenessProbe",
                                                      {"exec": {"command": ["true"]}}),
     "no liveness probe restarts workers"),
]


def check_semantic_mutations(docs):
    for what, how, want in SEMANTIC_MUTATIONS:
        ds = copy.deepcopy(docs)
        how(ds)
        errs = errors_of(_check_rendered, ds, what, False)
        check(any(want in e for e in errs), "the mutation %s is rejected with %r; the errors "
              "were: %s" % (what, want, errs or "none"))


tmp = tempfile.mkdtemp(prefix="mpb-ops-k8s.")
try:
    base = os.path.join(tmp, "k8s")
    shutil.copytree(BASE, base)
    with open(os.path.join(base, "authkey"), "w") as f:  # the operator's key, here a dummy
        f.write(DUMMY_KEY)
    py_docs = render_python(base)
    check_rendered(py_docs, "python rendering", hashed=False)
    schema_cases = {"python rendering": py_docs}
    for f in files:  # each manifest as written, before kustomize
        if os.path.basename(f) != "kustomization.yaml":
            schema_cases["deploy/k8s/" + os.path.basename(f)] = [
                d for d in yaml.safe_load_all(open(f)) if d is not None]
    secret = [d for d in py_docs if d.get("kind") == "Secret"]
    if secret:
        check(base64.b64decode(secret[0]["data"]["authkey"]).decode() == DUMMY_KEY,
              "the Secret is made from the authkey file")
    if shutil.which("kubectl"):
        k_docs = render_kubectl(base)
        if k_docs:
            check_rendered(k_docs, "kubectl kustomize", hashed=True)
            schema_cases["kubectl kustomize"] = k_docs

            def shape(docs):
                return sorted((d["kind"], re.sub(r"-[a-z0-9]{10}$", "", d["metadata"]["name"]))
                              for d in docs)
            check(shape(k_docs) == shape(py_docs), "both renderings have the same objects: "
                  "%s vs %s" % (shape(k_docs), shape(py_docs)))
            check_components(tmp, base)
        # without the key file the base refuses to render (no default key ships)
        os.unlink(os.path.join(base, "authkey"))
        p = subprocess.run(["kubectl", "kustomize", base], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        check(p.returncode != 0 and "authkey" in p.stderr,
              "without deploy/k8s/authkey, kustomize refuses to render")
    else:
        print("NOTE: kubectl not found: the base was rendered by this script only "
              "(kubectl kustomize is used too where it is installed)")
    check_schemas(schema_cases)
    check_mutations(py_docs)
    check_semantic_mutations(py_docs)
finally:
    shutil.rmtree(tmp)

if failures:
    print("%d of %d checks failed" % (len(failures), checks), file=sys.stderr)
    sys.exit(1)
print("ok: %d checks" % checks)

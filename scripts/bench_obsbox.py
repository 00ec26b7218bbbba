#!/usr/bin/env python3
"""obsbox beside the peer supervisors, through the shared harness.

Fills in the harness's `obsbox` adapter (children come from `obsbox settings
set children ...`, captured output lands in logs/<child>/current), runs the
peers and obsbox in one invocation, then measures what only obsbox has: idle
memory with the real monitoring stack running, and kill -9 to ready again for
a child with a readiness probe (node_exporter). `power` in `--only` adds the
power benchmark (bench_power.py); `--only power` runs it alone. `syslog` adds
the syslog receiver beside syslog-ng (bench_syslog.py; `--syslog-seconds N`
per phase, `--syslog-receivers obsbox` for obsbox alone).

Usage: bench_obsbox.py PEERS_DIR OUT_JSON [harness options...]
"""
import importlib.util, json, os, signal, statistics, subprocess, sys, tempfile, time, urllib.request

peers_dir, out_json, harness_args = sys.argv[1], sys.argv[2], sys.argv[3:]
spec = importlib.util.spec_from_file_location("bench", os.path.join(peers_dir, "bench.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

# Disabled children must still have distinct ports.
NO_BUILTINS = {n: {"enabled": False, "port": 40000 + i} for i, n in
               enumerate(("prometheus", "alertmanager", "node_exporter", "loki", "grafana", "blackbox"))}


def settings_set(d, section, value):
    subprocess.run(["obsbox", "settings", "set", section, json.dumps(value), "--data-dir", d],
                   check=True, stdout=subprocess.DEVNULL)


# The harness kills a child every 1.5 s (`--pause`), which obsbox's default
# policy (5 exits within 60 s are a crash loop: back off 1 s, 2 s, 4 s ... 60 s)
# rightly treats as a crash loop. The harness children turn the detection off
# through their own setting; the peers keep their defaults (see the table's
# restart config column: s6, runit, daemontools and supervisord each keep
# launches about 1 s apart, which the 1.5 s pause is chosen to stay above).
HARNESS_RESTART = {"crash_loop_exits": 0}


class Obsbox(bench.Obsbox):
    restart_config = ("children's own setting restart.crash_loop_exits = 0 (crash-loop detection off; "
                      "the default, 5 exits in 60 s, backs off 1 s doubling to 60 s); a run that lasted "
                      ">= 1 s restarts at once, quicker deaths still back off from 1 s; "
                      "logs: 256 MiB segments (as the s6 config here)")

    def setup(self, d, services, log):
        settings_set(d, "services", NO_BUILTINS)
        settings_set(d, "logs", {"segment_bytes": 256 << 20})
        settings_set(d, "children", [{"name": n, "command": argv, "restart": HARNESS_RESTART}
                                     for n, argv in services.items()])

    def log_files(self, d, svc):
        return [os.path.join(d, "logs", svc, "current")]


bench.ADAPTERS["obsbox"] = Obsbox()


# ---------------------------------------------------------------- obsbox only
session = {}


def call(port, path, body=None):
    """A JSON request as the UI's scripts make it: the session cookie and its
    CSRF token once signed in, a pre-session token before."""
    token = session.get("csrf", "bench")
    cookie = f"obsbox_session={session['token']}" if "token" in session else f"obsbox_csrf={token}"
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Cookie": cookie, "X-CSRF-Token": token,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        cookies = [c for c in r.headers.get_all("Set-Cookie") or [] if c.startswith("obsbox_session=")]
        return json.load(r), cookies


def get(port, path):
    return call(port, path)[0]


def sign_in(port):
    """First-boot setup, then a login, as a user does in the browser (any
    session held for another obsbox is forgotten first)."""
    session.clear()
    password = "bench password 1"
    def up():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200
        except OSError:
            return False

    if not bench.wait_for(up, 60, 0.1):
        raise RuntimeError("obsbox did not answer /healthz")
    call(port, "/api/setup", {"password": password, "confirm": password, "hostname": "obsbox"})
    answer, cookies = call(port, "/api/login", {"password": password})
    session["token"] = cookies[0].split(";")[0].split("=", 1)[1]
    session["csrf"] = answer["csrf"]


def full_stack(samples):
    d = tempfile.mkdtemp(prefix="obsbox-bench-stack-")
    os.chmod(d, 0o755)
    data = os.path.join(d, "data")
    base = 41000
    services = {n: {"port": base + i} for i, n in enumerate(NO_BUILTINS)}
    target = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "debug")
    for n in ("loki", "grafana"):
        stand_in = os.path.join(target, n)
        if os.path.exists(stand_in):
            services[n]["binary"] = os.path.abspath(stand_in)
        else:
            services[n]["enabled"] = False
    settings_set(data, "services", services)
    home = os.path.join(d, "grafana-home")
    os.makedirs(os.path.join(home, "conf"))
    open(os.path.join(home, "conf", "defaults.ini"), "w").close()
    settings_set(data, "grafana", {"homepath": home})
    port = 41900
    proc = subprocess.Popen(["obsbox", "run", "--data-dir", data, "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "obsbox.log"), "w"),
                            start_new_session=True)
    res = {}
    try:
        sign_in(port)
        ready = bench.wait_for(lambda: (lambda s: all(x["ready"] for x in s) and s)(get(port, "/api/services")), 60, 0.1)
        if not ready:
            raise RuntimeError("the stack did not become ready")
        res["stack"] = [s["name"] for s in ready]
        time.sleep(10)
        res["stack_idle_rss_kb"] = bench.status_kb(proc.pid, "VmRSS")
        res["stack_idle_pss_kb"] = bench.pss_kb(proc.pid)
        to_pid, to_ready = [], []
        # node_exporter is a built-in child with the default restart policy:
        # a fifth exit within 60 s is a crash loop and backs off, so at most
        # four kills per minute measure the restart itself.
        for _ in range(min(samples, 4)):
            old = next(s for s in get(port, "/api/services") if s["name"] == "node_exporter")["pid"]
            t0 = time.monotonic()
            os.kill(old, signal.SIGKILL)
            new_pid = bench.wait_for(lambda: (lambda s: s["pid"] not in (None, old) and s)(
                next(s for s in get(port, "/api/services") if s["name"] == "node_exporter")), 15, 0.0005)
            t1 = time.monotonic()
            bench.wait_for(lambda: next(s for s in get(port, "/api/services") if s["name"] == "node_exporter")["ready"], 15, 0.002)
            t2 = time.monotonic()
            to_pid.append((t1 - t0) * 1000)
            to_ready.append((t2 - t0) * 1000)
            time.sleep(1.2)
        res["node_exporter_kill_to_new_pid_ms"] = bench.summary(to_pid)
        res["node_exporter_kill_to_ready_ms"] = bench.summary(to_ready)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    return res


def split_only(args):
    """The names of the last `--only` (None without one), and the other arguments."""
    only, rest, i = None, [], 0
    while i < len(args):
        if args[i] == "--only" and i + 1 < len(args):
            only, i = args[i + 1].split(","), i + 2
        else:
            rest.append(args[i])
            i += 1
    return only, rest


def main():
    only, rest = split_only(harness_args)
    syslog_seconds = 60
    if "--syslog-seconds" in rest:
        i = rest.index("--syslog-seconds")
        syslog_seconds = int(rest[i + 1])
        del rest[i:i + 2]
    syslog_receivers = ("obsbox", "syslog-ng")
    if "--syslog-receivers" in rest:
        i = rest.index("--syslog-receivers")
        syslog_receivers = tuple(rest[i + 1].split(","))
        del rest[i:i + 2]
    samples = 20
    for i, a in enumerate(rest):
        if a == "--samples":
            samples = min(20, int(rest[i + 1]))
    peers = None if only is None else [n for n in only if n not in ("power", "install", "syslog")]
    if peers != []:
        print(f"obsbox's harness children: restart {json.dumps(HARNESS_RESTART)} "
              "(crash-loop detection off; obsbox's default backs off after 5 exits in 60 s)")
        for name in peers or ["supervisord", "runit", "s6", "daemontools", "obsbox"]:
            if name in bench.ADAPTERS and name != "obsbox":
                print(f"  {name}: {bench.ADAPTERS[name].restart_config}")
        sys.argv = ["bench.py", "--out", out_json] + (["--only", ",".join(peers)] if peers else []) + rest
        bench.main()
        stack = full_stack(samples)
        print("\n== obsbox with the monitoring stack (real Prometheus, Alertmanager, node_exporter, blackbox exporter; Loki and Grafana stand-ins)")
        print(f"children: {', '.join(stack['stack'])}")
        print(f"obsbox idle RSS / PSS: {stack['stack_idle_rss_kb']} / {stack['stack_idle_pss_kb']} KB")
        for k in ("node_exporter_kill_to_new_pid_ms", "node_exporter_kill_to_ready_ms"):
            s = stack[k]
            print(f"{k}: min {s['min']:.1f} / median {s['median']:.1f} / p99 {s['p99']:.1f} / max {s['max']:.1f} (n={s['n']})")
        all_results = json.load(open(out_json))
        all_results.setdefault("obsbox", {}).update(stack)
        json.dump(all_results, open(out_json, "w"), indent=1)
    if only is not None and "power" in only:
        import bench_power
        power = bench_power.run(sys.modules[__name__], samples)
        all_results = json.load(open(out_json)) if os.path.exists(out_json) else {}
        all_results.setdefault("obsbox", {})["power"] = power
        json.dump(all_results, open(out_json, "w"), indent=1)
    if only is not None and "install" in only:
        import bench_install
        install = bench_install.run(min(samples, 5))
        all_results = json.load(open(out_json)) if os.path.exists(out_json) else {}
        all_results.setdefault("obsbox", {})["install"] = install
        json.dump(all_results, open(out_json, "w"), indent=1)
    if only is not None and "syslog" in only:
        import bench_syslog
        syslog = bench_syslog.run(syslog_seconds, syslog_receivers)
        all_results = json.load(open(out_json)) if os.path.exists(out_json) else {}
        all_results.setdefault("obsbox", {})["syslog"] = syslog
        json.dump(all_results, open(out_json, "w"), indent=1)
    if peers != []:
        print()
        bench.table(json.load(open(out_json)))


if __name__ == "__main__":
    main()

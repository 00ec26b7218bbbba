#!/usr/bin/env python3
"""Where a restart's time goes, step by step.

Usage: scripts/restart_breakdown.py OBSBOX SAMPLES [PAUSE]
Runs OBSBOX with the harness's 5 `stamp` children and
OBSBOX_LOG=info,obsbox::supervisor=debug, kills child c0 with SIGKILL
SAMPLES times, PAUSE seconds apart (1.2: more than the 1 s a run must last
to be restarted at once), and lines up on CLOCK_MONOTONIC the kill, obsbox's
debug events (`exit reaped`, `launched`) and the new child's own first
timestamp. Prints each step's distribution and the 5 slowest restarts.
"""
import json, os, re, subprocess, sys, tempfile, time, signal, statistics
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from perf_common import stamp_binary
ob = os.path.abspath(sys.argv[1]); n = int(sys.argv[2]); pause = float(sys.argv[3]) if len(sys.argv) > 3 else 1.2
STAMP = stamp_binary()
d = tempfile.mkdtemp(prefix="perf-restart-")
NO = {k: {"enabled": False, "port": 42000 + i} for i, k in enumerate(("prometheus","alertmanager","node_exporter","loki","grafana","blackbox"))}
def sset(s, v): subprocess.run([ob, "settings", "set", s, json.dumps(v), "--data-dir", d], check=True, stdout=subprocess.DEVNULL)
sset("services", NO); sset("logs", {"segment_bytes": 256 << 20})
os.makedirs(f"{d}/stamps")
sset("children", [{"name": f"c{i}", "command": [STAMP, f"{d}/stamps/c{i}"], "restart": {"crash_loop_exits": 0}} for i in range(5)])
env = dict(os.environ, OBSBOX_LOG="info,obsbox::supervisor=debug")
p = subprocess.Popen([ob, "run", "--data-dir", d, "--listen", "127.0.0.1:18282"], cwd=d, stdout=open(f"{d}/sup.out", "w"), stderr=subprocess.STDOUT, start_new_session=True, env=env)
def stamp(c="c0"):
    try:
        a, b = open(f"{d}/stamps/{c}").read().split(); return int(a), int(b)
    except (OSError, ValueError): return None
t = time.time()
while not all(stamp(f"c{i}") for i in range(5)):
    time.sleep(0.05); assert time.time() - t < 30, "no start"
time.sleep(2)
rows = []
for _ in range(n):
    old = stamp()
    t0 = time.monotonic_ns(); os.kill(old[0], signal.SIGKILL)
    end = time.time() + 15
    while True:
        s = stamp()
        if s and s[0] != old[0]: break
        assert time.time() < end, "not restarted"
        time.sleep(0.002)
    rows.append((t0, old[0], s[0], s[1]))
    time.sleep(pause)
os.killpg(p.pid, signal.SIGTERM); p.wait(timeout=30)
log = open(f"{d}/sup.out").read()
reaped = {}; launched = {}
for line in log.splitlines():
    if "exit reaped" in line and "child=c0" in line:
        m = dict(re.findall(r"(\w+_ns)=(\d+)", line)); reaped.setdefault("list", []).append({k: int(v) for k, v in m.items()})
    if "launched" in line:
        pid = int(re.search(r"pid=(\d+)", line).group(1)); launched[pid] = {k: int(v) for k, v in re.findall(r"(\w+_ns)=(\d+)", line)}
phases = {k: [] for k in ("kill>reaped", "reaped>handled", "handled>fork", "fork>forked", "forked>exec", "exec>stamp", "total")}
rl = reaped.get("list", [])
for t0, oldpid, newpid, sns in rows:
    L = launched.get(newpid)
    R = next((r for r in rl if t0 <= r["reaped_ns"] <= sns), None)
    phases["total"].append((sns - t0) / 1e6)
    if not (L and R): continue
    for k, a, b in (("kill>reaped", t0, R["reaped_ns"]), ("reaped>handled", R["reaped_ns"], R["handled_ns"]), ("handled>fork", R["handled_ns"], L["fork_ns"]),
                    ("fork>forked", L["fork_ns"], L["forked_ns"]), ("forked>exec", L["forked_ns"], L["exec_ns"]), ("exec>stamp", L["exec_ns"], sns)):
        phases[k].append((b - a) / 1e6)
def pct(xs, q):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]
print(f"samples {n}, pause {pause}s, load {open('/proc/loadavg').read().split()[:3]}")
for k, xs in phases.items():
    if xs: print(f"{k:15s} n={len(xs):3d} min {min(xs):7.3f} median {statistics.median(xs):7.3f} p90 {pct(xs,90):7.3f} p99 {pct(xs,99):7.3f} max {max(xs):7.3f} ms")
tot = phases["total"]
print("worst 5 totals with phases:")
idx = sorted(range(len(tot)), key=lambda i: -tot[i])[:5]
for i in idx:
    print("  ", round(tot[i], 3), {k: round(v[i], 3) for k, v in phases.items() if len(v) == len(tot)})
if os.environ.get("OUT"):
    json.dump({"rows": rows, "phases": phases}, open(os.environ["OUT"], "w"))

#!/usr/bin/env python3
"""What obsbox keeps resident at rest, mapping by mapping.

Usage: scripts/rss_breakdown.py OBSBOX [SECONDS]
Runs OBSBOX with the benchmark harness's 5 `stamp` children (as
scripts/bench_obsbox.py sets them up), waits until they started and SECONDS
more (10), then prints RSS, PSS and anonymous memory of obsbox and of each
process of its that is not a child (the cgroup guardian), from
/proc/<pid>/smaps_rollup, and the resident KB of each mapping name and
permission set from /proc/<pid>/smaps. KEEP=1 leaves obsbox running.
"""
import json, os, subprocess, sys, tempfile, time, signal, collections
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from perf_common import stamp_binary
ob = os.path.abspath(sys.argv[1]); wait = float(sys.argv[2]) if len(sys.argv) > 2 else 10
STAMP = stamp_binary()
d = tempfile.mkdtemp(prefix="perf-idle-")
NO = {n: {"enabled": False, "port": 41000 + i} for i, n in enumerate(("prometheus","alertmanager","node_exporter","loki","grafana","blackbox"))}
def sset(s, v): subprocess.run([ob, "settings", "set", s, json.dumps(v), "--data-dir", d], check=True, stdout=subprocess.DEVNULL)
sset("services", NO); sset("logs", {"segment_bytes": 256 << 20})
os.makedirs(f"{d}/stamps")
sset("children", [{"name": f"c{i}", "command": [STAMP, f"{d}/stamps/c{i}"], "restart": {"crash_loop_exits": 0}} for i in range(5)])
env = dict(os.environ)
p = subprocess.Popen([ob, "run", "--data-dir", d, "--listen", "127.0.0.1:18181"], cwd=d, stdout=open(f"{d}/sup.out", "w"), stderr=subprocess.STDOUT, start_new_session=True, env=env)
t = time.time()
while not all(os.path.exists(f"{d}/stamps/c{i}") for i in range(5)):
    time.sleep(0.05)
    if time.time() - t > 20: print("no start"); break
time.sleep(wait)
def kids(pid):
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                st = open(f"/proc/{e}/stat").read()
                pp = int(st[st.rfind(")")+2:].split()[1]); comm = st[st.find("(")+1:st.rfind(")")]
                if pp == pid: out.append((int(e), comm))
            except OSError: pass
    return out
procs = [(p.pid, "obsbox")] + [k for k in kids(p.pid) if k[1] != "stamp"]
tot_rss = tot_pss = 0
for pid, comm in procs:
    roll = {l.split(":")[0]: int(l.split()[1]) for l in open(f"/proc/{pid}/smaps_rollup") if l.split()[-1] == "kB"}
    tot_rss += roll["Rss"]; tot_pss += roll["Pss"]
    print(f"pid {pid} {comm} {open(f'/proc/{pid}/cmdline').read().replace(chr(0),' ')[:80]}: Rss {roll['Rss']} Pss {roll['Pss']} Anon {roll['Anonymous']} ")
    # per mapping
    agg = collections.OrderedDict(); cur = None
    for l in open(f"/proc/{pid}/smaps"):
        f = l.split()
        if not f[0].endswith(":") or len(f) > 3 and "-" in f[0]:
            name = f[5] if len(f) > 5 else "[anon]"
            cur = f"{name} {f[1]}"
            agg.setdefault(cur, [0, 0]); continue
        if f[0] == "Rss:": agg[cur][0] += int(f[1])
        if f[0] == "Anonymous:": agg[cur][1] += int(f[1])
    for k, (r, a) in agg.items():
        if r: print(f"   {r:7d} kB rss {a:7d} anon  {k}")
print(f"TOTAL supervisor side RSS {tot_rss} PSS {tot_pss}")
if os.environ.get("KEEP"): print(d, p.pid); sys.exit(0)
os.killpg(p.pid, signal.SIGTERM); p.wait(timeout=20)
print("log tail:"); print(open(f"{d}/sup.out").read()[-600:])

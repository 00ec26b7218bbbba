"""The syslog benchmark: one sender writing RFC 5424 messages (octet
counting, about 200 bytes each) over one TCP connection, first paced at
2,000 lines/s, then as fast as the receiver takes them, into obsbox's
syslog receiver (its spool on disk, shipped on to the Loki stand-in) and,
in the same run, into syslog-ng (Debian) writing to a file with flow
control, as the peer.

obsbox is measured end to end, into Loki: lines sent, lines obsbox took
(`obsbox_log_sender_lines_total`), lines in Loki (the syslog spool's lines
Loki acknowledged, `obsbox_log_lines_shipped_total{source="spool/syslog"}`;
the stand-in's own `loki_distributor_lines_received_total`, which also has
obsbox's own log and its children's output, is kept beside it as a check),
lost = sent - in Loki once the shipper has drained (must be 0 over TCP),
the rate into Loki, obsbox's CPU seconds per second and peak RSS (and the
Loki stand-in's CPU), the push latency p99 (from
`obsbox_log_push_duration_seconds`) and the delivery delay from a line sent
to Loki's acknowledgement of it (p50, p99, sampled every 0.2 s). In the
unpaced phase the sender keeps at most WINDOW lines ahead of Loki: the
spool would otherwise take the flood far faster than any Loki, and the
phase would measure the disk. syslog-ng is measured into its file: lines
written, lost = sent - written, rate, CPU, peak RSS.

Run from bench_obsbox.py: alone by `scripts/bench --only syslog` (with
`--syslog-seconds N` per phase, 60 by default; the issue's sustained run is
`--syslog-seconds 600`).
"""
import json, os, re, socket, subprocess, tempfile, threading, time, urllib.request

PACED = 2000
HZ = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def message(n):
    body = f"bench line {n:010d} " + "x" * 120
    msg = f"<134>1 2026-12-07T00:00:00.000000+00:00 benchhost benchapp 4242 - - {body}".encode()
    return str(len(msg)).encode() + b" " + msg


BLOCK = b"".join(message(n) for n in range(1000))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def peak_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def wait_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


WINDOW = 1_000_000


def send(port, seconds, rate, progress=None, behind=None):
    """Sends for `seconds`, `rate` lines/s (None: as fast as it goes); returns
    lines sent. `progress`, a list, gets (time, lines sent so far) as it goes.
    `behind`, a function, gives the lines sent and not yet delivered: the
    unpaced sender waits while they are more than WINDOW."""
    conn = socket.create_connection(("127.0.0.1", port))
    sent = 0
    note = progress.append if progress is not None else (lambda _: None)
    start = time.monotonic()
    end = start + seconds
    if rate is None:
        while time.monotonic() < end:
            while behind is not None and behind(sent) > WINDOW and time.monotonic() < end:
                time.sleep(0.005)
            conn.sendall(BLOCK)
            sent += 1000
            note((time.monotonic(), sent))
    else:
        step = max(1, rate // 100)  # a batch every 10 ms
        batch = b"".join(message(n) for n in range(step))
        while time.monotonic() < end:
            conn.sendall(batch)
            sent += step
            note((time.monotonic(), sent))
            due = start + sent / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    conn.close()
    return sent


def count_lines(paths):
    total = 0
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                total += chunk.count(b"\n")
    return total


def settled(files, quiet=2.0, timeout=300):
    """Waits until the written files stop growing; returns when they last grew."""
    last, changed = None, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sizes = sum(os.path.getsize(p) for p in files())
        if sizes != last:
            last, changed = sizes, time.monotonic()
        elif time.monotonic() - changed >= quiet:
            return changed
        time.sleep(0.2)
    return changed


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def metric(text, name, labels=""):
    """The sum of the samples of `name` whose labels contain `labels`."""
    total = 0.0
    for m in re.finditer(rf'^{name}(\{{[^}}]*\}})? (\S+)$', text, re.M):
        if labels in (m.group(1) or ""):
            total += float(m.group(2))
    return total


def buckets(text, name):
    """A histogram's cumulative buckets: [(le, count)], ascending."""
    found = [(float(m.group(1)), float(m.group(2))) for m in
             re.finditer(rf'^{name}_bucket\{{le="([^"]+)"\}} (\S+)$', text, re.M)]
    return sorted(found)


def histogram_quantile(q, before, after):
    """The q-quantile of the observations between two scrapes, interpolated
    within its bucket as Prometheus's histogram_quantile does."""
    deltas = [(le, a - b) for (le, a), (_, b) in zip(after, before)]
    total = deltas[-1][1] if deltas else 0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for le, count in deltas:
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = le, count
    return lower


class Obsbox:
    """What the bench reads of obsbox and its Loki."""

    def __init__(self, metrics_port, loki_port, loki_pid):
        self.metrics_port, self.loki_port, self.loki_pid = metrics_port, loki_port, loki_pid

    def counts(self):
        obsbox, loki = scrape(self.metrics_port), scrape(self.loki_port)
        return {
            "taken": metric(obsbox, "obsbox_log_sender_lines_total", 'source="syslog"'),
            "in_loki": metric(obsbox, "obsbox_log_lines_shipped_total", 'source="spool/syslog"'),
            "loki_stored": metric(loki, "loki_distributor_lines_received_total"),
            "push": buckets(obsbox, "obsbox_log_push_duration_seconds"),
        }


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


def phase(pid, port, files, seconds, rate, box=None):
    """One phase; with `box` (obsbox), what reached Loki and how late."""
    if box:
        return loki_phase(pid, port, seconds, rate, box)
    before_lines = count_lines(files())
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    sent = send(port, seconds, rate)
    done = settled(files)
    cpu1 = cpu_seconds(pid)
    written = count_lines(files()) - before_lines
    wall = done - t0
    return {
        "sent": sent,
        "written": written,
        "lost": sent - written,
        "lines_per_s": round(written / wall),
        "cpu_s_per_s": round((cpu1 - cpu0) / wall, 3),
        "peak_rss_kb": peak_rss_kb(pid),
    }


def loki_phase(pid, port, seconds, rate, box):
    start = box.counts()
    cpu0, loki_cpu0, t0 = cpu_seconds(pid), cpu_seconds(box.loki_pid), time.monotonic()
    progress, polls, result, state = [], [], {}, {"in_loki": 0}
    behind = lambda sent: sent - state["in_loki"]
    sender = threading.Thread(target=lambda: result.update(
        sent=send(port, seconds, rate, progress, behind if rate is None else None)))
    sender.start()
    quiet_since, last = None, -1
    while True:
        now = box.counts()
        in_loki = int(now["in_loki"] - start["in_loki"])
        state["in_loki"] = in_loki
        polls.append((time.monotonic(), in_loki))
        if not sender.is_alive():
            if in_loki >= result["sent"]:
                break
            # Drained, or stuck: nothing more for 30 s after the sender stopped.
            if in_loki != last:
                quiet_since, last = time.monotonic(), in_loki
            elif time.monotonic() - quiet_since > 30:
                break
        time.sleep(0.2)
    sender.join()
    end = box.counts()
    sent = result["sent"]
    in_loki = int(end["in_loki"] - start["in_loki"])
    taken = int(end["taken"] - start["taken"])
    # Loki's own count of lines stored (duplicates not counted) takes in
    # obsbox's own log and its children's output too: at least in_loki.
    loki_stored = int(end["loki_stored"] - start["loki_stored"])
    # The rate: lines in Loki over the time until the last of them was in.
    shipped_at = next((t for t, n in polls if n >= in_loki), polls[-1][0])
    wall = max(shipped_at - t0, 1e-9)
    cpu1, loki_cpu1 = cpu_seconds(pid), cpu_seconds(box.loki_pid)
    # Each poll: how long ago the newest line Loki had was sent.
    delays, i = [], 0
    for t, n in polls:
        if n == 0:
            continue
        while i < len(progress) and progress[i][1] < n:
            i += 1
        if i < len(progress):
            delays.append(t - progress[i][0])
    push_p99 = histogram_quantile(0.99, start["push"], end["push"])
    return {
        "sent": sent,
        "taken": taken,
        "in_loki": in_loki,
        "loki_stored_all_sources": loki_stored,
        "lost": sent - in_loki,
        "lines_per_s": round(in_loki / wall),
        "cpu_s_per_s": round((cpu1 - cpu0) / wall, 3),
        "loki_cpu_s_per_s": round((loki_cpu1 - loki_cpu0) / wall, 3),
        "peak_rss_kb": peak_rss_kb(pid),
        "push_p99_s": round(push_p99, 4) if push_p99 is not None else None,
        "delay_p50_s": round(percentile(delays, 0.5) or 0, 3),
        "delay_p99_s": round(percentile(delays, 0.99) or 0, 3),
    }


def loki_stand_in():
    """The Loki stand-in (tests/stand-ins), built for speed: the push side of
    Loki that obsbox ships to here (Loki has no Debian package)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "obsbox-stand-ins", "--bin", "loki"],
                   cwd=repo, check=True)
    return os.path.join(repo, "target", "release", "loki")


def obsbox_receiver(d, port, web_port):
    """obsbox with its syslog receiver and its Loki (the stand-in, on ports of
    its own, keeping no lines in memory: a long flood would not fit)."""
    services = {n: {"enabled": False, "port": 40000 + i} for i, n in enumerate(
        ("prometheus", "alertmanager", "node_exporter", "loki", "grafana", "blackbox"))}
    loki_port = free_port()
    services["loki"] = {"enabled": True, "port": loki_port, "binary": loki_stand_in()}
    for section, value in (
        ("services", services),
        ("loki", {"grpc_port": free_port()}),
        ("syslog", {"enabled": True, "udp": "", "tls": "", "tcp": f"127.0.0.1:{port}",
                    "rate_limit": 1000000, "burst": 1000000, "spool_bytes": 64 << 30}),
    ):
        subprocess.run(["obsbox", "settings", "set", section, json.dumps(value), "--data-dir", d],
                       check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, LOKI_STANDIN_FORGET_LINES="1")
    child = subprocess.Popen(["obsbox", "run", "--data-dir", d, "--listen", f"127.0.0.1:{web_port}"],
                             stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "obsbox.log"), "w"),
                             env=env)
    return child, loki_port


def child_pid(parent, name):
    """The pid of `parent`'s child running `name`, once there is one."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == parent and comm == name:
                return int(entry)
        time.sleep(0.2)
    raise RuntimeError(f"no {name} under {parent}")


def wait_ready(port, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"Loki on {port} not ready")


def syslog_ng_receiver(d, port):
    out = os.path.join(d, "out.log")
    conf = os.path.join(d, "syslog-ng.conf")
    with open(conf, "w") as f:
        f.write(f"""@version: 3.35
options {{ stats-freq(0); log-fifo-size(100000); }};
source s_in {{ syslog(ip("127.0.0.1") port({port}) transport("tcp") max-connections(10) log-iw-size(100000)); }};
destination d_file {{ file("{out}"); }};
log {{ source(s_in); destination(d_file); flags(flow-control); }};
""")
    child = subprocess.Popen(["syslog-ng", "-F", "-f", conf, "-R", os.path.join(d, "persist"),
                              "-p", os.path.join(d, "pid"), "-c", os.path.join(d, "ctl"), "--no-caps"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return child, lambda: [out] if os.path.exists(out) else []


def run(seconds, receivers=("obsbox", "syslog-ng")):
    results = {}
    for name in receivers:
        with tempfile.TemporaryDirectory(prefix=f"bench-syslog-{name}-") as d:
            port = free_port()
            box, files = None, None
            if name == "obsbox":
                metrics_port = free_port()
                child, loki_port = obsbox_receiver(d, port, metrics_port)
            else:
                child, files = syslog_ng_receiver(d, port)
            try:
                wait_port(port)
                if name == "obsbox":
                    wait_port(metrics_port)
                    wait_ready(loki_port)
                    box = Obsbox(metrics_port, loki_port, child_pid(child.pid, "loki"))
                results[name] = {
                    "paced_2000": phase(child.pid, port, files, seconds, PACED, box),
                    "fastest": phase(child.pid, port, files, seconds, None, box),
                }
            finally:
                child.terminate()
                child.wait(timeout=30)
        print(f"syslog into {name}: {json.dumps(results[name])}", flush=True)
    print("\n== syslog over TCP (RFC 5424, octet counting, ~200 B lines, one connection, "
          f"{seconds} s per phase; obsbox into its spool and on to the Loki stand-in, syslog-ng into a file)")
    print(f"{'receiver':<10} {'phase':<11} {'sent':>10} {'in Loki/file':>12} {'lost':>6} {'lines/s':>9} "
          f"{'CPU s/s':>8} {'peak RSS KB':>12} {'push p99 s':>10} {'delay p50/p99 s':>16}")
    for name, phases in results.items():
        for p, r in phases.items():
            stored = r.get("in_loki", r.get("written"))
            delay = f"{r['delay_p50_s']}/{r['delay_p99_s']}" if "delay_p50_s" in r else ""
            print(f"{name:<10} {p:<11} {r['sent']:>10} {stored:>12} {r['lost']:>6} {r['lines_per_s']:>9} "
                  f"{r['cpu_s_per_s']:>8} {r['peak_rss_kb']:>12} {str(r.get('push_p99_s', '')):>10} {delay:>16}")
    return results

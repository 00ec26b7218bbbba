"""The syslog benchmark: one sender writing RFC 5424 messages (octet
counting, about 200 bytes each) over one TCP connection, first paced at
2,000 lines/s, then as fast as the receiver takes them, into obsbox's
syslog receiver (its spool on disk, shipped on to the Loki stand-in) and,
in the same run, into syslog-ng (Debian) writing to a file with flow
control, as the peer.

For each phase: lines sent, lines written, lines lost (sent - written, must
be 0 over TCP), the rate written, CPU seconds of the receiver per second of
the phase (utime + stime from /proc), and its peak RSS (VmHWM). The rate
limit is set high so the receiver's own speed is measured. For obsbox also:
lines Loki acknowledged (`obsbox_log_lines_shipped_total` of the syslog
spool), and the delivery delay from a line sent to Loki's acknowledgement
of it (p50, p99), sampled every 0.2 s from the sender's progress and the
shipped count.

Run from bench_obsbox.py: alone by `scripts/bench --only syslog` (with
`--syslog-seconds N` per phase, 60 by default).
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


def send(port, seconds, rate, progress=None):
    """Sends for `seconds`, `rate` lines/s (None: as fast as it goes); returns
    lines sent. `progress`, a list, gets (time, lines sent so far) as it goes."""
    conn = socket.create_connection(("127.0.0.1", port))
    sent = 0
    note = progress.append if progress is not None else (lambda _: None)
    start = time.monotonic()
    end = start + seconds
    if rate is None:
        while time.monotonic() < end:
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


def shipped_lines(metrics_port):
    """Lines of the syslog spool Loki acknowledged, from obsbox's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(r'^obsbox_log_lines_shipped_total\{source="spool/syslog"\} (\S+)$', text, re.M)
    return int(float(m.group(1))) if m else 0


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


def phase(pid, port, files, seconds, rate, metrics_port=None):
    """One phase; with `metrics_port` (obsbox), also what reached Loki and how late."""
    before_lines = count_lines(files())
    before_shipped = shipped_lines(metrics_port) if metrics_port else 0
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    progress, polls, result = [], [], {}
    sender = threading.Thread(target=lambda: result.update(sent=send(port, seconds, rate, progress)))
    sender.start()
    while metrics_port:
        shipped = shipped_lines(metrics_port) - before_shipped
        polls.append((time.monotonic(), shipped))
        if not sender.is_alive():
            caught_up = progress and shipped >= progress[-1][1]
            if caught_up or time.monotonic() - t0 > seconds + 300:
                break
        time.sleep(0.2)
    sender.join()
    sent = result["sent"]
    done = settled(files)
    cpu1 = cpu_seconds(pid)
    written = count_lines(files()) - before_lines
    wall = done - t0
    out = {
        "sent": sent,
        "written": written,
        "lost": sent - written,
        "lines_per_s": round(written / wall),
        "cpu_s_per_s": round((cpu1 - cpu0) / wall, 3),
        "peak_rss_kb": peak_rss_kb(pid),
    }
    if metrics_port:
        shipped = shipped_lines(metrics_port) - before_shipped
        # Each poll: how long ago the newest line Loki had acknowledged was sent.
        delays, i = [], 0
        for t, n in polls:
            if n == 0:
                continue
            while i < len(progress) and progress[i][1] < n:
                i += 1
            if i < len(progress):
                delays.append(t - progress[i][0])
        shipped_at = next((t for t, n in polls if n >= sent), polls[-1][0] if polls else done)
        out.update({
            "in_loki": shipped,
            "lost_to_loki": sent - shipped,
            "loki_lines_per_s": round(shipped / max(shipped_at - t0, 1e-9)),
            "delay_p50_s": round(percentile(delays, 0.5) or 0, 3),
            "delay_p99_s": round(percentile(delays, 0.99) or 0, 3),
        })
    return out


def loki_stand_in():
    """The Loki stand-in (tests/stand-ins), built for speed: the push side of
    Loki that obsbox ships to here (Loki has no Debian package)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "obsbox-stand-ins", "--bin", "loki"],
                   cwd=repo, check=True)
    return os.path.join(repo, "target", "release", "loki")


def obsbox_receiver(d, port, web_port):
    services = {n: {"enabled": False, "port": 40000 + i} for i, n in enumerate(
        ("prometheus", "alertmanager", "node_exporter", "loki", "grafana", "blackbox"))}
    services["loki"] = {"enabled": True, "port": free_port(), "binary": loki_stand_in()}
    for section, value in (
        ("services", services),
        ("syslog", {"enabled": True, "udp": "", "tls": "", "tcp": f"127.0.0.1:{port}",
                    "rate_limit": 1000000, "burst": 1000000, "spool_bytes": 64 << 30}),
    ):
        subprocess.run(["obsbox", "settings", "set", section, json.dumps(value), "--data-dir", d],
                       check=True, stdout=subprocess.DEVNULL)
    child = subprocess.Popen(["obsbox", "run", "--data-dir", d, "--listen", f"127.0.0.1:{web_port}"],
                             stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "obsbox.log"), "w"))
    spool = os.path.join(d, "spool", "syslog")
    files = lambda: [os.path.join(spool, n) for n in sorted(os.listdir(spool))] if os.path.isdir(spool) else []
    return child, files


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


def run(seconds):
    results = {}
    for name in ("obsbox", "syslog-ng"):
        with tempfile.TemporaryDirectory(prefix=f"bench-syslog-{name}-") as d:
            port = free_port()
            metrics_port = free_port() if name == "obsbox" else None
            if metrics_port:
                child, files = obsbox_receiver(d, port, metrics_port)
            else:
                child, files = syslog_ng_receiver(d, port)
            try:
                wait_port(port)
                results[name] = {
                    "paced_2000": phase(child.pid, port, files, seconds, PACED, metrics_port),
                    "fastest": phase(child.pid, port, files, seconds, None, metrics_port),
                }
            finally:
                child.terminate()
                child.wait(timeout=30)
        print(f"syslog into {name}: {json.dumps(results[name])}", flush=True)
    print("\n== syslog over TCP (RFC 5424, octet counting, ~200 B lines, one connection, "
          f"{seconds} s per phase; obsbox into its spool and on to the Loki stand-in, syslog-ng into a file)")
    print(f"{'receiver':<10} {'phase':<11} {'sent':>10} {'written':>10} {'lost':>6} {'lines/s':>9} {'CPU s/s':>8} {'peak RSS KB':>12}")
    for name, phases in results.items():
        for p, r in phases.items():
            print(f"{name:<10} {p:<11} {r['sent']:>10} {r['written']:>10} {r['lost']:>6} "
                  f"{r['lines_per_s']:>9} {r['cpu_s_per_s']:>8} {r['peak_rss_kb']:>12}")
    for p, r in results.get("obsbox", {}).items():
        print(f"obsbox {p}: {r['in_loki']} lines acknowledged by Loki ({r['lost_to_loki']} not), "
              f"{r['loki_lines_per_s']} lines/s into Loki, delivery delay p50 {r['delay_p50_s']} s, p99 {r['delay_p99_s']} s")
    return results

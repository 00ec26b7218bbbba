"""The syslog benchmark: one sender writing RFC 5424 messages (octet
counting, about 200 bytes each) over one TCP connection, first paced at
2,000 lines/s, then as fast as the receiver takes them, into obsbox's
syslog receiver (its spool on disk) and, in the same run, into syslog-ng
(Debian) writing to a file with flow control, as the peer.

For each phase: lines sent, lines written, lines lost (sent - written, must
be 0 over TCP), the rate written, CPU seconds of the receiver per second of
the phase (utime + stime from /proc), and its peak RSS (VmHWM). The rate
limit is set high so the receiver's own speed is measured.

Run from bench_obsbox.py: alone by `scripts/bench --only syslog` (with
`--syslog-seconds N` per phase, 60 by default).
"""
import json, os, socket, subprocess, tempfile, time

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


def send(port, seconds, rate):
    """Sends for `seconds`, `rate` lines/s (None: as fast as it goes); returns lines sent."""
    conn = socket.create_connection(("127.0.0.1", port))
    sent = 0
    start = time.monotonic()
    end = start + seconds
    if rate is None:
        while time.monotonic() < end:
            conn.sendall(BLOCK)
            sent += 1000
    else:
        step = max(1, rate // 100)  # a batch every 10 ms
        batch = b"".join(message(n) for n in range(step))
        while time.monotonic() < end:
            conn.sendall(batch)
            sent += step
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


def phase(pid, port, files, seconds, rate):
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


def obsbox_receiver(d, port):
    for section, value in (
        ("services", {n: {"enabled": False, "port": 40000 + i} for i, n in enumerate(
            ("prometheus", "alertmanager", "node_exporter", "loki", "grafana", "blackbox"))}),
        ("syslog", {"enabled": True, "udp": "", "tls": "", "tcp": f"127.0.0.1:{port}",
                    "rate_limit": 1000000, "burst": 1000000, "spool_bytes": 64 << 30}),
    ):
        subprocess.run(["obsbox", "settings", "set", section, json.dumps(value), "--data-dir", d],
                       check=True, stdout=subprocess.DEVNULL)
    child = subprocess.Popen(["obsbox", "run", "--data-dir", d, "--listen", f"127.0.0.1:{free_port()}"],
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
    for name, start in (("obsbox", obsbox_receiver), ("syslog-ng", syslog_ng_receiver)):
        with tempfile.TemporaryDirectory(prefix=f"bench-syslog-{name}-") as d:
            port = free_port()
            child, files = start(d, port)
            try:
                wait_port(port)
                results[name] = {
                    "paced_2000": phase(child.pid, port, files, seconds, PACED),
                    "fastest": phase(child.pid, port, files, seconds, None),
                }
            finally:
                child.terminate()
                child.wait(timeout=30)
        print(f"syslog into {name}: {json.dumps(results[name])}", flush=True)
    print("\n== syslog over TCP (RFC 5424, octet counting, ~200 B lines, one connection, "
          f"{seconds} s per phase; obsbox into its spool, syslog-ng into a file)")
    print(f"{'receiver':<10} {'phase':<11} {'sent':>10} {'written':>10} {'lost':>6} {'lines/s':>9} {'CPU s/s':>8} {'peak RSS KB':>12}")
    for name, phases in results.items():
        for p, r in phases.items():
            print(f"{name:<10} {p:<11} {r['sent']:>10} {r['written']:>10} {r['lost']:>6} "
                  f"{r['lines_per_s']:>9} {r['cpu_s_per_s']:>8} {r['peak_rss_kb']:>12}")
    return results

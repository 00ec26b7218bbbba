"""Cost per line of syslog into Loki: sends N lines (default 1,000,000) as
fast as one TCP connection takes them into obsbox's syslog receiver, waits
until Loki (the stand-in) acknowledged them all, and prints the rate end to
end and the CPU each process spent per line. With PERF=<file>, obsbox runs
under `perf record -g` meanwhile (for `perf report -i <file>`).

Uses the syslog bench's helpers (`bench_syslog.py`); `obsbox` is taken from
PATH, so put the build to measure first, e.g.
`PATH=target/x86_64-unknown-linux-gnu/release:$PATH python3 scripts/profile_syslog.py`.
"""
import json, os, socket, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_syslog as b

lines = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
perf_file = os.environ.get("PERF")
with tempfile.TemporaryDirectory(prefix="profile-syslog-") as d:
    port, metrics_port = b.free_port(), b.free_port()
    child, loki_port = b.obsbox_receiver(d, port, metrics_port)
    try:
        b.wait_port(port)
        b.wait_port(metrics_port)
        b.wait_ready(loki_port)
        loki_pid = b.child_pid(child.pid, "loki")
        box = b.Obsbox(metrics_port, loki_port, loki_pid)
        start = box.counts()
        cpu0, loki0, t0 = b.cpu_seconds(child.pid), b.cpu_seconds(loki_pid), time.monotonic()
        perf = None
        if perf_file:
            perf = subprocess.Popen(["perf", "record", "-F", "499", "-g", "--call-graph", "dwarf,16384",
                                     "-o", perf_file, "-p", str(child.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        conn = socket.create_connection(("127.0.0.1", port))
        sent = 0
        while sent < lines:
            conn.sendall(b.BLOCK)
            sent += 1000
        conn.close()
        while box.counts()["in_loki"] - start["in_loki"] < sent:
            time.sleep(0.05)
        wall = time.monotonic() - t0
        cpu1, loki1 = b.cpu_seconds(child.pid), b.cpu_seconds(loki_pid)
        if perf:
            perf.send_signal(2)
            perf.wait()
        print(json.dumps({
            "lines": sent,
            "seconds": round(wall, 2),
            "lines_per_s": round(sent / wall),
            "obsbox_cpu_us_per_line": round((cpu1 - cpu0) / sent * 1e6, 2),
            "loki_cpu_us_per_line": round((loki1 - loki0) / sent * 1e6, 2),
            "obsbox_peak_rss_kb": b.peak_rss_kb(child.pid),
        }))
    finally:
        child.terminate()
        child.wait(timeout=30)

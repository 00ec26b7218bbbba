"""Helpers shared by scripts/rss_breakdown.py and scripts/restart_breakdown.py."""
import os, subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def stamp_binary():
    """The benchmark harness's `stamp` child (../shared/bench-peers/stamp.c
    beside the repository, as scripts/bench finds it, or $BENCH_PEERS/stamp.c),
    compiled once into target/perf/."""
    peers = os.environ.get("BENCH_PEERS", os.path.join(HERE, "..", "..", "shared", "bench-peers"))
    src = os.path.join(peers, "stamp.c")
    out_dir = os.path.join(HERE, "..", "target", "perf")
    out = os.path.join(out_dir, "stamp")
    if not os.path.exists(out):
        os.makedirs(out_dir, exist_ok=True)
        subprocess.run(["cc", "-O2", "-o", out, src], check=True)
    return os.path.abspath(out)

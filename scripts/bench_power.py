"""The power benchmark: obsbox watching a Megatec Q1 UPS simulated on a pty.

(a) Halt latency: from the simulator switching to on battery until the
    running backup's client gets SIGINT, with poll 1 s and debounce 5 s (the
    defaults); goal: p99 within debounce + 1 s. The client is the PBS client
    stand-in, made slow; it logs each signal's CLOCK_MONOTONIC time
    (PBS_STANDIN_SIGNAL_LOG), the clock of time.monotonic_ns() here. Each
    sample switches at a random moment of the 1 s poll period; power comes
    back after the signal and the halted backup runs again for the next one.
(b) Flap storm: 1,000 on/off toggles. At the real scale (a toggle every
    second, poll 1 s, debounce 5 s, lost after 15 s) that takes 17 minutes,
    so every duration is divided by 10: a toggle every 100 ms, poll 100 ms,
    debounce 500 ms, lost after 1.5 s (100 s in all). Expected: no shutdown,
    obsbox alive; the halts and notices it made are counted.

Run from bench_obsbox.py: with the rest by `scripts/bench`, alone by
`scripts/bench --only power`. `api` is the bench_obsbox module: its
settings_set, sign_in, get and call, NO_BUILTINS and the harness (`bench`).
"""
import json, os, random, select, signal, sqlite3, subprocess, tempfile, threading, time, tty

STAND_IN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "debug",
                        "proxmox-backup-client")
PBS_PASSWORD = "bench pbs password"


class Q1Sim:
    """A Megatec Q1 UPS on a pseudo-terminal, as tests/common/ups_sim.rs
    simulates one for the tests: `Q1` and `F` answered, shutdown commands
    (`S..`) recorded and unanswered, anything else echoed."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.on_battery = False
        self.shutdowns = []
        self.stopped = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        pending = b""
        while not self.stopped:
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            pending += os.read(self.master, 256)
            while b"\r" in pending:
                command, pending = pending.split(b"\r", 1)
                reply = self.answer(command)
                if reply:
                    os.write(self.master, reply)

    def answer(self, command):
        if command == b"Q1":
            volts = 0.0 if self.on_battery else 230.0
            return f"({volts:05.1f} 140.0 230.0 020 50.0 13.6 25.0 {int(self.on_battery)}0001001\r".encode()
        if command == b"F":
            return b"#230.0 004 12.00 50.0\r"
        if command.startswith(b"S"):
            self.shutdowns.append(command.decode())
            return None
        return None if command == b"C" else command + b"\r"

    def close(self):
        self.stopped = True
        self.thread.join()
        os.close(self.master)
        os.close(self.slave)


class Box:
    """obsbox (the static release binary on PATH) on a fresh data directory
    with no built-in child, signed in."""

    def __init__(self, api, port, settings, env):
        self.api, self.port = api, port
        self.dir = tempfile.mkdtemp(prefix="obsbox-bench-power-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        api.settings_set(self.data, "services", api.NO_BUILTINS)
        for section, value in settings.items():
            api.settings_set(self.data, section, value)
        self.proc = subprocess.Popen(
            ["obsbox", "run", "--data-dir", self.data, "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "obsbox.log"), "w"),
            env={**os.environ, **env}, start_new_session=True)
        try:
            api.sign_in(port)
            if self.proc.poll() is not None:
                raise RuntimeError(f"power bench: obsbox exited; see {self.dir}/obsbox.log")
        except BaseException:
            self.stop()
            raise

    def get(self, path):
        return self.api.get(self.port, path)

    def wait(self, what, check, timeout=60):
        found = self.api.bench.wait_for(check, timeout, 0.01)
        if not found:
            raise RuntimeError(f"power bench: timed out waiting for {what}")
        return found

    def cpu_ms(self):
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)

    def count(self, query):
        with sqlite3.connect(os.path.join(self.data, "obsbox.db")) as db:
            return db.execute(query).fetchone()[0]


def halt_latency(api, samples):
    sim = Q1Sim()
    work = tempfile.mkdtemp(prefix="obsbox-bench-pbs-")
    os.makedirs(os.path.join(work, "pbs", "store1"))
    open(os.path.join(work, "pbs", "store1", ".password"), "w").write(PBS_PASSWORD)
    source = os.path.join(work, "files")
    os.makedirs(source)
    for i in range(200):
        open(os.path.join(source, f"f{i:03}"), "w").write("x" * 1000)
    signals = os.path.join(work, "client-signals")
    box = Box(api, 42900,
              {"backups": {"client": os.path.abspath(STAND_IN)},
               "power": {"ups": {"kind": "q1", "port": sim.path}, "poll": "1s",
                         "on_battery_debounce": "5s"}},
              {"PBS_STANDIN_ROOT": os.path.join(work, "pbs"), "PBS_STANDIN_SLOW_MS": "100",
               "PBS_STANDIN_SIGNAL_LOG": signals})
    latencies = []
    try:
        box.wait("the first reading", lambda: box.get("/api/power")["live"]["state"] == "online")
        job = {"name": "files", "paths": [source], "repository": "bench@pbs@localhost:store1",
               "schedule": "daily"}
        api.call(box.port, "/api/backups/jobs", {"job": job, "secrets": {"password": PBS_PASSWORD}})
        api.call(box.port, "/api/backups/jobs/files/run", {})
        for _ in range(samples):
            box.wait("a backup under way", lambda: (lambda r: r and r["kind"] == "backup" and r["progress"])(
                box.get("/api/backups")["jobs"][0]["running"]))
            time.sleep(random.uniform(0, 1))
            seen = len(open(signals).readlines()) if os.path.exists(signals) else 0
            switched = time.monotonic_ns()
            sim.on_battery = True
            line = box.wait("the client's SIGINT", lambda: os.path.exists(signals) and (
                lambda lines: len(lines) > seen and lines[-1])(open(signals).readlines()))
            kind, at = line.split()
            if kind != "INT":
                raise RuntimeError(f"power bench: the client got SIG{kind}, not SIGINT")
            latencies.append((int(at) - switched) / 1e6)
            sim.on_battery = False
            box.wait("backups resumed", lambda: box.get("/api/backups")["halted"] == [])
        halted = [r for r in box.get("/api/backups/history?job=files&limit=1000")
                  if r["result"] == "halted" and r["reason"] == "ups: on battery"]
    finally:
        box.stop()
        sim.close()
    return {"on_battery_to_sigint_ms": api.bench.summary(latencies),
            "on_battery_to_sigint_samples_ms": latencies, "halted_runs_recorded": len(halted)}


def flap_storm(api, toggles=1000, every=0.1):
    sim = Q1Sim()
    marker = os.path.join(tempfile.mkdtemp(prefix="obsbox-bench-flap-"), "powered-off")
    box = Box(api, 42901,
              {"power": {"ups": {"kind": "q1", "port": sim.path}, "poll": "100ms",
                         "lost_after": "1500ms", "on_battery_debounce": "500ms",
                         "poweroff_command": ["sh", "-c", f"echo off > {marker}"]}},
              {})
    try:
        box.wait("the first reading", lambda: box.get("/api/power")["live"]["state"] == "online")
        cpu_before, started = box.cpu_ms(), time.monotonic()
        for i in range(toggles):
            time.sleep(max(0.0, started + i * every - time.monotonic()))
            sim.on_battery = not sim.on_battery
        took = time.monotonic() - started
        time.sleep(2)  # longer than the debounce and lost_after: anything pending has happened
        cpu = box.cpu_ms() - cpu_before
        alive = box.proc.poll() is None
        state = box.get("/api/power")["live"]["state"] if alive else "exited"
    finally:
        box.stop()
        sim.close()
    return {"flap_toggles": toggles, "flap_seconds": took, "flap_obsbox_cpu_ms": cpu,
            "flap_alive": alive, "flap_state": state,
            "flap_shutdowns": len(sim.shutdowns) + os.path.exists(marker),
            "flap_halts": box.count("SELECT count(*) FROM power_events WHERE to_state = 'on_battery'"),
            "flap_notices": box.count("SELECT count(*) FROM audit WHERE actor = 'power'")}


def run(api, samples):
    """Both measurements; prints them and returns them for results.json."""
    res = halt_latency(api, samples)
    res.update(flap_storm(api))
    s = res["on_battery_to_sigint_ms"]
    print("\n== obsbox power: a Megatec Q1 UPS simulated on a pty, the PBS client stand-in as the backup")
    print(f"on battery -> backup client SIGINT (poll 1 s, debounce 5 s; goal p99 <= 6000 ms): "
          f"min {s['min']:.0f} / median {s['median']:.0f} / p99 {s['p99']:.0f} / max {s['max']:.0f} ms "
          f"(n={s['n']}; {res['halted_runs_recorded']} runs recorded halted 'ups: on battery')")
    print(f"flap storm, {res['flap_toggles']} toggles every 100 ms (poll 100 ms, debounce 500 ms: "
          f"the real 1 s / 1 s / 5 s divided by 10) in {res['flap_seconds']:.0f} s: "
          f"{res['flap_shutdowns']} shutdowns, obsbox {'alive' if res['flap_alive'] else 'GONE'} "
          f"({res['flap_state']}), {res['flap_halts']} halts, {res['flap_notices']} notices, "
          f"obsbox CPU {res['flap_obsbox_cpu_ms']:.0f} ms")
    print(json.dumps({k: v for k, v in res.items() if not k.endswith("_samples_ms")}))
    return res

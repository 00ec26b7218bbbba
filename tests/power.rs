//! The power service end to end, through the real binary: the NUT server
//! read by Debian's real `upsc`, logins and roles, and a primary's FSD
//! running the whole shutdown sequence down to the power-off command; a
//! Megatec Q1 UPS simulated on a pty halting and resuming a running backup,
//! flapping, garbage and silence on the wire, and the stop order of a
//! shutdown.

mod common;

use common::ups_sim::{Protocol, UpsSim};
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

/// A NUT client connection speaking one line at a time.
struct Nut {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Nut {
    fn connect(port: u16) -> Nut {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Nut {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn ask(&mut self, line: &str) -> String {
        writeln!(self.writer, "{line}").unwrap();
        let mut reply = String::new();
        self.reader.read_line(&mut reply).unwrap();
        reply.trim_end().to_string()
    }

    fn log_in(port: u16, user: &str, password: &str) -> Nut {
        let mut nut = Nut::connect(port);
        assert_eq!(nut.ask(&format!("USERNAME {user}")), "OK");
        assert_eq!(nut.ask(&format!("PASSWORD \"{password}\"")), "OK");
        assert_eq!(nut.ask("LOGIN ups"), "OK");
        nut
    }
}

fn upsc(args: &[&str]) -> String {
    let out = std::process::Command::new("upsc")
        .args(args)
        .output()
        .expect("upsc (Debian nut-client) is installed");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn nut_clients_follow_and_a_primary_fsd_powers_the_box_off() {
    let nut_port = free_port();
    let marker = tempfile::tempdir().unwrap();
    let marker = marker.path().join("powered-off");
    let power = json!({
        "poweroff_command": poweroff_writing(&marker),
        "nut_server": {"enabled": true, "listen": format!("127.0.0.1:{nut_port}")},
    });
    let obsbox = Obsbox::start(&[
        ("services", services_only(&["node_exporter"])),
        ("power", power),
    ]);
    obsbox.wait_all_ready(Duration::from_secs(30));

    // Users: passwords write-only; a new user needs one.
    for (name, role) in [("boss", "primary"), ("follower", "secondary")] {
        let body = json!({"user": {"name": name, "role": role}, "password": format!("{name}-pw")});
        let (status, answer) = obsbox.send(
            "PUT",
            &format!("/api/power/nut-users/{name}"),
            &body.to_string(),
        );
        assert_eq!(status, 200, "{answer}");
    }
    let body = json!({"user": {"name": "nopw", "role": "secondary"}});
    let (status, _) = obsbox.send("PUT", "/api/power/nut-users/nopw", &body.to_string());
    assert_eq!(status, 422);
    let power = obsbox.get("/api/power");
    let text = power.to_string();
    assert!(
        !text.contains("boss-pw") && !text.contains("follower-pw"),
        "{text}"
    );
    assert_eq!(
        power["config"]["nut_server"]["users"][0]["password_set"],
        json!(true)
    );
    assert_eq!(power["live"]["configured"], json!(false));

    // The dry run names every step and does nothing.
    let steps = obsbox.get("/api/power/dry-run")["steps"].to_string();
    for expected in [
        "halt backups",
        "raise FSD",
        "stop node_exporter: SIGTERM",
        "sync",
        "WARNING: the UPS is not told to cut its output (no UPS is configured)",
        "sh",
    ] {
        assert!(steps.contains(expected), "{expected} missing from {steps}");
    }

    // The real upsc lists the UPS; with no UPS configured its data is stale.
    let listed = upsc(&["-l", &format!("127.0.0.1:{nut_port}")]);
    assert_eq!(listed.lines().next(), Some("ups"), "{listed}");
    let vars = upsc(&[&format!("ups@127.0.0.1:{nut_port}")]);
    assert!(vars.contains("Data stale"), "{vars}");

    // Wrong passwords, unknown UPSes and secondaries get NUT's errors.
    let mut nut = Nut::connect(nut_port);
    assert_eq!(nut.ask("LOGIN ups"), "ERR USERNAME-REQUIRED");
    assert_eq!(nut.ask("USERNAME boss"), "OK");
    assert_eq!(nut.ask("LOGIN ups"), "ERR PASSWORD-REQUIRED");
    assert_eq!(nut.ask("PASSWORD wrong"), "OK");
    assert_eq!(nut.ask("LOGIN ups"), "ERR ACCESS-DENIED");
    assert_eq!(nut.ask("FSD ups"), "ERR ACCESS-DENIED");
    assert_eq!(nut.ask("GET VAR other ups.status"), "ERR UNKNOWN-UPS");
    assert_eq!(nut.ask("FLY ups"), "ERR UNKNOWN-COMMAND");
    assert_eq!(nut.ask("NETVER"), "1.3");
    let mut follower = Nut::log_in(nut_port, "follower", "follower-pw");
    assert_eq!(follower.ask("LOGIN ups"), "ERR ALREADY-LOGGED-IN");
    assert_eq!(follower.ask("FSD ups"), "ERR ACCESS-DENIED");
    assert_eq!(follower.ask("GET NUMLOGINS ups"), "NUMLOGINS ups 1");

    // A primary's FSD: obsbox shuts down, waiting for the follower to go.
    let mut boss = Nut::log_in(nut_port, "boss", "boss-pw");
    assert_eq!(boss.ask("PRIMARY ups"), "OK PRIMARY-GRANTED");
    assert_eq!(boss.ask("FSD ups"), "OK FSD-SET");
    wait_for("the shutdown", Duration::from_secs(10), || {
        (obsbox.try_send("GET", "/api/power", "")?.1["live"]["state"] == json!("shutdown"))
            .then_some(())
    });
    assert_eq!(boss.ask("LOGOUT"), "OK Goodbye");
    assert_eq!(follower.ask("LOGOUT"), "OK Goodbye");
    wait_for_exit(&obsbox);
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        "off\n",
        "{}",
        obsbox.log()
    );
    let log = obsbox.log();
    for expected in [
        "FSD from a NUT primary",
        "every child stopped",
        "disks synced",
        "THE UPS IS NOT TOLD TO CUT ITS OUTPUT",
        "power-off command ran",
    ] {
        assert!(
            log.contains(expected),
            "{expected} missing from the log:\n{log}"
        );
    }
}

/// The `power` settings for a Q1 UPS on `sim`, polled every 200 ms, with
/// `extra` fields on top.
fn q1_power(sim: &UpsSim, extra: Value) -> Value {
    let mut power = json!({
        "ups": {"kind": "q1", "port": sim.pts().display().to_string()},
        "poll": "200ms",
    });
    for (field, value) in extra.as_object().unwrap() {
        power[field] = value.clone();
    }
    power
}

/// A power-off command that writes `off` to `marker`.
fn poweroff_writing(marker: &Path) -> Value {
    json!(["sh", "-c", format!("echo off > {}", marker.display())])
}

fn live(obsbox: &Obsbox) -> Value {
    obsbox.get("/api/power")["live"].clone()
}

fn wait_for_state(obsbox: &Obsbox, state: &str) {
    wait_for(state, Duration::from_secs(10), || {
        (live(obsbox)["state"] == state).then_some(())
    });
}

/// A metric without labels, from /metrics.
fn metric(obsbox: &Obsbox, name: &str) -> f64 {
    let lines = obsbox.metric_lines(&format!("{name} "));
    lines
        .first()
        .and_then(|l| l.split(' ').nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in /metrics"))
}

/// The power transitions recorded, oldest first.
fn power_history(obsbox: &Obsbox) -> Vec<Value> {
    let mut history = obsbox.get("/api/power")["history"]
        .as_array()
        .unwrap()
        .clone();
    history.reverse();
    history
}

/// Audit entries the power service wrote (its notifications), newest first.
fn power_notices(obsbox: &Obsbox) -> Vec<String> {
    obsbox
        .get("/api/audit?limit=1000")
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["actor"] == "power")
        .map(|a| a["detail"].as_str().unwrap().to_string())
        .collect()
}

fn wait_for_exit(obsbox: &Obsbox) {
    let pid = obsbox.pid();
    wait_for("obsbox to exit", Duration::from_secs(60), || {
        (!pid_alive(pid)).then_some(())
    });
}

#[test]
fn a_power_cut_during_a_backup_halts_it_and_power_back_runs_it_again() {
    use common::pbs;
    let fx = pbs::fixture(40);
    let sims = tempfile::tempdir().unwrap();
    let sim = UpsSim::start(Protocol::Megatec, sims.path());
    let signals = sims.path().join("client-signals");
    let signals_env = signals.display().to_string();
    let power = q1_power(&sim, json!({"on_battery_debounce": "1s"}));
    let obsbox = pbs::start(
        &fx,
        &[("power", power)],
        &[
            ("PBS_STANDIN_SLOW_MS", "150"),
            ("PBS_STANDIN_SIGNAL_LOG", signals_env.as_str()),
        ],
    );
    wait_for_state(&obsbox, "online");
    pbs::create_job(&obsbox, pbs::job("photos", &fx.source));
    assert_eq!(
        obsbox.send("POST", "/api/backups/jobs/photos/run", "").0,
        202
    );
    pbs::backup_under_way(&obsbox);

    // Mains fails: after the debounce the client gets SIGINT and the run is
    // recorded as halted for the UPS.
    sim.set_on_battery(true);
    let halted = pbs::finished_run(&obsbox, "photos", "backup", 0);
    assert_eq!(halted["result"], "halted", "{halted}");
    assert_eq!(halted["reason"], "ups: on battery");
    let received: Vec<String> = std::fs::read_to_string(&signals)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(received, ["INT"], "the client got SIGINT, and only that");
    assert_eq!(live(&obsbox)["state"], "on_battery");
    assert_eq!(
        obsbox.get("/api/backups")["halted"],
        json!(["ups: on battery"])
    );
    // A run asked for meanwhile waits; with the halted one it makes one run.
    assert_eq!(
        obsbox.send("POST", "/api/backups/jobs/photos/run", "").0,
        202
    );

    // Mains is back before anything critical: the halted run runs again.
    // (Back online is not notified: one power notice per NOTIFY_EVERY.)
    sim.set_on_battery(false);
    let again = pbs::finished_run(&obsbox, "photos", "backup", halted["id"].as_i64().unwrap());
    assert_eq!(again["result"], "ok", "{again}");
    wait_for("the job to be idle", Duration::from_secs(10), || {
        obsbox.get("/api/backups")["jobs"][0]["running"]
            .is_null()
            .then_some(())
    });
    let runs = obsbox.get("/api/backups/history?job=photos");
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
    assert_eq!(obsbox.get("/api/backups")["halted"], json!([]));
    assert_eq!(live(&obsbox)["state"], "online");
    let changes: Vec<Value> = power_history(&obsbox)
        .iter()
        .map(|e| json!([e["to"], e["notified"]]))
        .collect();
    assert_eq!(
        changes,
        [
            json!(["online", false]),
            json!(["on_battery", true]),
            json!(["online", false])
        ]
    );
    assert_eq!(
        std::fs::read_to_string(&signals).unwrap().lines().count(),
        1
    );
}

#[test]
fn flapping_faster_than_the_debounce_changes_nothing_and_outages_notify_within_the_limit() {
    let sims = tempfile::tempdir().unwrap();
    let sim = UpsSim::start(Protocol::Megatec, sims.path());
    let marker = sims.path().join("powered-off");
    let power = q1_power(
        &sim,
        json!({
            "poll": "150ms",
            "on_battery_debounce": "2s",
            "poweroff_command": poweroff_writing(&marker),
        }),
    );
    let obsbox = Obsbox::start(&[("services", services_only(&[])), ("power", power)]);
    wait_for_state(&obsbox, "online");

    // 200 toggles 100 ms apart: never on battery for the whole debounce.
    sim.flap(200, Duration::from_millis(100)).join().unwrap();
    assert!(!sim.state().on_battery, "an even number of toggles");
    assert!(pid_alive(obsbox.pid()));
    assert_eq!(live(&obsbox)["state"], "online");
    assert_eq!(obsbox.get("/api/backups")["halted"], json!([]));
    // The policy: flapping faster than the debounce makes no transition at
    // all, so nothing but the first reading is recorded and nothing notified.
    let history = power_history(&obsbox);
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["to"], "online");
    assert_eq!(power_notices(&obsbox), Vec::<String>::new());

    // Three real outages in a row: backups halt and resume each time, but
    // the audit log gets one power notice (on battery or back online) per
    // NOTIFY_EVERY (10 min): the first on battery.
    for _ in 0..3 {
        sim.set_on_battery(true);
        wait_for("backups halted", Duration::from_secs(10), || {
            (obsbox.get("/api/backups")["halted"] == json!(["ups: on battery"])).then_some(())
        });
        sim.set_on_battery(false);
        wait_for("backups resumed", Duration::from_secs(10), || {
            (obsbox.get("/api/backups")["halted"] == json!([])).then_some(())
        });
    }
    let history = power_history(&obsbox);
    let to = |state: &str| history.iter().filter(|e| e["to"] == state).count();
    assert_eq!((to("on_battery"), to("online")), (3, 4), "{history:?}");
    let notified = history.iter().filter(|e| e["notified"] == true).count();
    assert_eq!(notified, 1, "{history:?}");
    assert_eq!(power_notices(&obsbox), ["on battery: mains power failed"]);
    assert!(sim.received_at("S").is_none(), "no shutdown");
    assert!(!marker.exists());
    assert!(pid_alive(obsbox.pid()));
}

#[test]
fn garbage_is_counted_silence_on_mains_is_reported_and_silence_on_battery_shuts_down() {
    let sims = tempfile::tempdir().unwrap();
    let sim = UpsSim::start(Protocol::Megatec, sims.path());
    let marker = sims.path().join("powered-off");
    let power = q1_power(
        &sim,
        json!({
            "lost_after": "2s",
            "on_battery_debounce": "1s",
            "poweroff_command": poweroff_writing(&marker),
        }),
    );
    let obsbox = Obsbox::start(&[("services", services_only(&[])), ("power", power)]);
    wait_for_state(&obsbox, "online");

    // Garbage instead of replies, one at a time between good ones: counted,
    // and nothing changes, not even from a reply that says on battery but
    // does not parse.
    let before = metric(&obsbox, "obsbox_ups_garbled_replies_total");
    for garbage in [
        &b"(000.0 140.0 230.0 020 50.0 13.6 25.0 1000100x\r"[..],
        b"\x00\xff\xfe(000.0 140\r",
        b"#230.0 004 12.00 50.0\r",
    ] {
        sim.inject_garbage(garbage);
        wait_for("the garbage to be sent", Duration::from_secs(5), || {
            sim.state().garbage.is_none().then_some(())
        });
    }
    wait_for("the garbage counted", Duration::from_secs(5), || {
        (metric(&obsbox, "obsbox_ups_garbled_replies_total") >= before + 3.0).then_some(())
    });
    assert_eq!(live(&obsbox)["state"], "online");
    assert_eq!(metric(&obsbox, "obsbox_ups_on_battery"), 0.0);
    assert_eq!(power_history(&obsbox).len(), 1);

    // Silence on mains: the UPS is lost, and that is all.
    sim.go_silent(true);
    wait_for("the UPS lost", Duration::from_secs(10), || {
        (live(&obsbox)["lost"] == true).then_some(())
    });
    assert_eq!(metric(&obsbox, "obsbox_ups_lost"), 1.0);
    assert_eq!(live(&obsbox)["state"], "online");
    sim.go_silent(false);
    wait_for("the UPS back", Duration::from_secs(15), || {
        (live(&obsbox)["lost"] == false).then_some(())
    });
    assert_eq!(metric(&obsbox, "obsbox_ups_lost"), 0.0);
    assert!(pid_alive(obsbox.pid()) && !marker.exists());

    // Silence once on battery (after the debounce): the shutdown runs.
    sim.set_on_battery(true);
    wait_for_state(&obsbox, "on_battery");
    sim.go_silent(true);
    wait_for_exit(&obsbox);
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        "off\n",
        "{}",
        obsbox.log()
    );
    let log = obsbox.log();
    for expected in [
        "the UPS was lost while on battery",
        "every child stopped",
        "power-off command ran",
    ] {
        assert!(
            log.contains(expected),
            "{expected} missing from the log:\n{log}"
        );
    }
}

/// A child that appends `<unix time> <name> term` to `log` when asked to
/// stop, takes a moment, appends `... exit` and exits.
const LOGGING_CHILD: &str = r#"name=$1 log=$2
trap 'echo "$(date +%s.%N) $name term" >> "$log"; sleep 0.2; echo "$(date +%s.%N) $name exit" >> "$log"; exit 0' TERM
while :; do sleep 0.1; done
"#;

#[test]
fn a_low_battery_tells_the_ups_first_then_stops_dependents_in_order_and_powers_off() {
    let sims = tempfile::tempdir().unwrap();
    let sim = UpsSim::start(Protocol::Megatec, sims.path());
    let marker = sims.path().join("powered-off");
    let script = sims.path().join("child.sh");
    std::fs::write(&script, LOGGING_CHILD).unwrap();
    let stops = sims.path().join("stops.log");
    // Listed before their dependencies, so the list's order is not the answer.
    let child = |name: &str, depends_on: &[&str]| {
        json!({
            "name": name,
            "command": ["sh", script, name, stops],
            "depends_on": depends_on,
        })
    };
    let children = json!([
        child("web", &["api"]),
        child("worker", &["db"]),
        child("api", &["db"]),
        child("db", &[]),
    ]);
    let power = q1_power(
        &sim,
        json!({
            "ups_shutdown_delay": "30s",
            "poweroff_command": poweroff_writing(&marker),
        }),
    );
    let obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        ("children", children),
        ("power", power),
    ]);
    obsbox.wait_all_ready(Duration::from_secs(30));
    wait_for_state(&obsbox, "online");
    // The dry run shows the order the shutdown will use.
    let planned: Vec<String> = obsbox.get("/api/power/dry-run")["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["child"]["name"].as_str().map(String::from))
        .collect();
    assert_eq!(planned, ["web", "api", "worker", "db"]);
    let first = obsbox.get("/api/power/dry-run")["steps"][0]["action"].clone();
    assert_eq!(
        first,
        "tell the UPS to cut its output in 120 s (115 s rounded up to what the UPS takes) and \
         to turn it on again 180 s later once mains is present (the stop takes at most 85 s, \
         then power.ups_shutdown_delay)"
    );

    // Out, and the battery low at once: critical without waiting for the debounce.
    sim.set_on_battery(true);
    sim.set_low_battery(true);
    wait_for_exit(&obsbox);
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        "off\n",
        "{}",
        obsbox.log()
    );

    // When each child was asked to stop and when it was gone.
    let mut term = std::collections::BTreeMap::new();
    let mut exit = std::collections::BTreeMap::new();
    let mut order = Vec::new();
    for line in std::fs::read_to_string(&stops).unwrap().lines() {
        let [at, name, what] = line.split(' ').collect::<Vec<_>>()[..] else {
            panic!("bad line {line:?}");
        };
        let at: f64 = at.parse().unwrap();
        match what {
            "term" => {
                assert!(term.insert(name.to_string(), at).is_none(), "{name} twice");
                order.push(name.to_string());
            }
            _ => {
                exit.insert(name.to_string(), at);
            }
        }
    }
    assert_eq!(order, ["web", "api", "worker", "db"]);
    for (dependent, dependency) in [("web", "api"), ("api", "db"), ("worker", "db")] {
        assert!(
            exit[dependent] <= term[dependency],
            "{dependency} was asked to stop before {dependent} was gone"
        );
    }
    for pair in order.windows(2) {
        assert!(exit[&pair[0]] <= term[&pair[1]], "one at a time: {pair:?}");
    }

    // The UPS heard of the shutdown first, before any child was asked to
    // stop, with a delay covering the longest the stop can take: four 10 s
    // graces, backups' 30 s halt grace and 15 s to finish, then the 30 s
    // ups_shutdown_delay: 115 s, rounded up to 2 min; and to come back 3
    // min (NUT's default) after that once mains is present.
    let commands = sim.commands();
    let shutdowns: Vec<&String> = commands.iter().filter(|c| c.starts_with('S')).collect();
    assert_eq!(shutdowns, ["S02R0003"], "{commands:?}");
    let told = sim
        .received_at("S")
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let first_term = term.values().cloned().fold(f64::MAX, f64::min);
    assert_eq!(exit.len(), 4, "every child logged its exit");
    assert!(
        told < first_term,
        "the UPS was told at {told}, after the first child was asked to stop at {first_term}"
    );
    let log = obsbox.log();
    for expected in [
        "the UPS reports a low battery",
        "every child stopped",
        "disks synced",
        "power-off command ran",
    ] {
        assert!(
            log.contains(expected),
            "{expected} missing from the log:\n{log}"
        );
    }
}

/// A NUT program (Debian nut-client) with its configuration and state in
/// `dir`, as platform.md says NUT runs here.
fn nut_command(dir: &Path, program: &str, args: &[&str]) -> std::process::Command {
    let (conf, state) = (dir.join("nut-conf"), dir.join("nut-state"));
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let mut command = std::process::Command::new(program);
    command
        .args(args)
        .env("NUT_CONFPATH", conf)
        .env("NUT_STATEPATH", state);
    command
}

/// A real `upsmon` secondary following obsbox's NUT server; killed when dropped.
struct Upsmon(std::process::Child);

impl Upsmon {
    fn start(dir: &Path, nut_port: u16, user: &str, password: &str) -> Upsmon {
        let conf = format!(
            "MONITOR ups@127.0.0.1:{nut_port} 1 {user} \"{password}\" secondary\n\
             MINSUPPLIES 1\n\
             SHUTDOWNCMD \"/bin/true\"\n\
             POWERDOWNFLAG {}\n\
             POLLFREQ 1\n\
             POLLFREQALERT 1\n",
            dir.join("killpower").display()
        );
        let mut command = nut_command(dir, "/lib/nut/upsmon", &["-F", "-p"]);
        std::fs::write(dir.join("nut-conf/upsmon.conf"), conf).unwrap();
        let log = std::fs::File::create(dir.join("upsmon.log")).unwrap();
        let child = command
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("upsmon (Debian nut-client) is installed");
        Upsmon(child)
    }
}

impl Drop for Upsmon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The clients obsbox's NUT server lists as logged in, as the real `upsc -c` reads them.
fn nut_clients(nut_port: u16) -> Vec<String> {
    let out = std::process::Command::new("upsc")
        .args(["-c", &format!("ups@127.0.0.1:{nut_port}")])
        .output()
        .expect("upsc (Debian nut-client) is installed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

fn put_nut_user(obsbox: &Obsbox, name: &str, role: &str, password: &str) -> (u16, Value) {
    let body = json!({"user": {"name": name, "role": role}, "password": password});
    obsbox.send(
        "PUT",
        &format!("/api/power/nut-users/{name}"),
        &body.to_string(),
    )
}

#[test]
fn a_real_upsmon_secondary_logs_in_again_after_obsbox_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let sim = UpsSim::start(Protocol::Megatec, dir.path());
    let nut_port = free_port();
    let power = q1_power(
        &sim,
        json!({"nut_server": {"enabled": true, "listen": format!("127.0.0.1:{nut_port}")}}),
    );
    let mut obsbox = Obsbox::start(&[("services", services_only(&[])), ("power", power)]);
    wait_for_state(&obsbox, "online");
    let (status, answer) = put_nut_user(&obsbox, "follower", "secondary", "follower-pw");
    assert_eq!(status, 200, "{answer}");

    let _upsmon = Upsmon::start(dir.path(), nut_port, "follower", "follower-pw");
    let upsmon_log = || std::fs::read_to_string(dir.path().join("upsmon.log")).unwrap_or_default();
    let logged_in = |what: &str, obsbox: &Obsbox| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while nut_clients(nut_port) != ["127.0.0.1"] {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; upsmon said:\n{}\nobsbox:\n{}",
                upsmon_log(),
                obsbox.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut nut = Nut::connect(nut_port);
        assert_eq!(nut.ask("GET NUMLOGINS ups"), "NUMLOGINS ups 1");
    };
    logged_in("upsmon logged in", &obsbox);

    // obsbox restarts: upsmon reconnects and logs in with the stored password.
    obsbox.restart();
    wait_for_state(&obsbox, "online");
    logged_in("upsmon logged in after the restart", &obsbox);
    let log = upsmon_log();
    assert!(!log.contains("ACCESS-DENIED"), "{log}");
}

/// Whether something accepts connections on `port`.
fn answers(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn the_nut_server_moves_and_stops_with_its_settings_and_lists_as_upsd_does() {
    let [first, second] = distinct_free_ports();
    let listen = |port: u16| format!("127.0.0.1:{port}");
    let power = json!({"nut_server": {"enabled": true, "listen": listen(first)}});
    let obsbox = Obsbox::start(&[("services", services_only(&[])), ("power", power)]);
    let (status, answer) = put_nut_user(&obsbox, "boss", "primary", "boss-pw");
    assert_eq!(status, 200, "{answer}");

    // A password the protocol cannot carry is refused, and nothing is stored.
    for bad in [
        "two\nlines",
        "with space",
        "quo\"te",
        "back\\slash",
        "nul\0",
        &"x".repeat(257),
    ] {
        let (status, answer) = put_nut_user(&obsbox, "odd", "secondary", bad);
        assert_eq!(status, 422, "{bad:?}: {answer}");
        assert!(answer.to_string().contains("password"), "{answer}");
    }
    assert_eq!(
        obsbox.get("/api/settings")["power"]["nut_server"]["users"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The real upscmd and upsrw get upsd's empty lists, not an error.
    let tool = |program: &str, args: &[&str]| {
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .expect("NUT clients (Debian nut-client) are installed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let target = format!("ups@{}", listen(first));
    let (ok, text) = tool("upscmd", &["-l", &target]);
    assert!(ok && !text.contains("rror"), "{text}");
    assert!(
        text.contains("Instant commands supported on UPS [ups]"),
        "{text}"
    );
    let (ok, text) = tool("upsrw", &[&target]);
    assert!(ok && !text.contains("rror"), "{text}");
    // LIST CLIENT names each logged-in client by address.
    assert_eq!(nut_clients(first), Vec::<String>::new());
    let mut boss = Nut::log_in(first, "boss", "boss-pw");
    assert_eq!(nut_clients(first), ["127.0.0.1"]);
    let mut nut = Nut::connect(first);
    assert_eq!(nut.ask("LIST CMD other"), "ERR UNKNOWN-UPS");
    assert_eq!(nut.ask("LIST RW ups"), "BEGIN LIST RW ups");

    // Moved: the old address stops answering and its connections end.
    let mut power = obsbox.get("/api/settings")["power"].clone();
    power["nut_server"]["listen"] = json!(listen(second));
    let (status, answer) = obsbox.send("PUT", "/api/settings/power", &power.to_string());
    assert_eq!(status, 200, "{answer}");
    wait_for("the new address", Duration::from_secs(10), || {
        answers(second).then_some(())
    });
    assert!(!answers(first), "the old address still answers");
    let mut rest = String::new();
    let read = boss.reader.read_line(&mut rest);
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the old connection is still open: {rest:?}"
    );
    let mut boss = Nut::log_in(second, "boss", "boss-pw");
    assert_eq!(
        boss.ask("GET NUMLOGINS ups"),
        "NUMLOGINS ups 1",
        "the old login is gone"
    );
    drop(boss);

    // Disabled: nothing listens any more.
    power["nut_server"]["enabled"] = json!(false);
    let (status, answer) = obsbox.send("PUT", "/api/settings/power", &power.to_string());
    assert_eq!(status, 200, "{answer}");
    wait_for("the server to stop", Duration::from_secs(10), || {
        (!answers(second)).then_some(())
    });
    assert!(!answers(first));
}

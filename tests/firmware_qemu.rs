//! The x86_64 firmware image booted under QEMU (software emulation): UEFI,
//! GRUB's A/B slots, obsbox as PID 1 with node_exporter, and the box's life:
//! first boot and setup, a refused bundle, an update committed, an update
//! that fails its health check and rolls back by itself, and power cuts
//! during an install and around a commit. See README, "QEMU boot test".
//! A second box boots with its data partition broken (recovery, a reformat
//! from the web) and its clock six years off (NTP from this machine, the
//! last known time kept for the next boot).
//!
//! Skipped, saying so, only when QEMU, OVMF or the image tools are missing.
//! `OBSBOX_QEMU_SEED` repeats a run's random choices (printed at its start).

mod common;
mod firmware;

use firmware::guest::Guest;
use firmware::image::{self, Build};
use firmware::ntp::NtpServer;
use firmware::qemu::{self, Machine, Mark};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A boot under TCG takes about 20 s; a slow, shared machine gets slack.
const BOOT: Duration = Duration::from_secs(180);
/// The data partition's disk is this much larger than the image.
const GROW: u64 = 1 << 30;
/// The bad update's health timeout: its rollback takes this long.
const BAD_HEALTH_TIMEOUT: u64 = 40;

/// One boot of the box, timed from power-on or from the reboot asked for.
struct Boot {
    why: String,
    slot: String,
    /// Until the init printed the kernel command line.
    init: Duration,
    /// Until the web UI answered.
    web: Duration,
}

/// The test's box: the machine, obsbox on it, and the log of its boots.
struct Appliance {
    machine: Machine,
    guest: Guest,
    boots: Vec<Boot>,
}

impl Appliance {
    /// Waits for the boot that follows `mark` (started at `since`) until its
    /// init runs; returns the slot, and where its console output starts.
    fn wait_init(&mut self, mark: Mark, since: Instant, why: &str) -> (String, Duration, Mark) {
        let at = self.machine.wait_console(mark, "init: BOOT_IMAGE=", BOOT);
        let init = since.elapsed();
        let line = self.machine.console_since(at);
        let slot = line
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .find_map(|w| w.strip_prefix("obsbox.slot="))
            .unwrap_or_else(|| panic!("{why}: no obsbox.slot= in the command line {line:?}"))
            .to_string();
        (slot, init, at)
    }

    /// Waits for the boot that follows `mark` (begun at `since`) up to the
    /// web UI answering; returns the slot, where the boot's console starts,
    /// and when its init ran.
    fn up(&mut self, mark: Mark, since: Instant, why: &str) -> (String, Mark, Instant) {
        let (slot, init, at) = self.wait_init(mark, since, why);
        if self.guest.wait_answering(BOOT).is_none() {
            panic!(
                "{why}: the web UI did not answer\n{}",
                self.machine.console_tail(60)
            );
        }
        self.record(why, &slot, init, since.elapsed());
        (slot, at, since + init)
    }

    /// [`Appliance::up`], then signs in.
    fn boot(&mut self, mark: Mark, since: Instant, why: &str) -> (String, Mark, Instant) {
        let booted = self.up(mark, since, why);
        self.guest.log_in(common::PASSWORD);
        booted
    }

    fn record(&mut self, why: &str, slot: &str, init: Duration, web: Duration) {
        println!(
            "boot {} ({why}): slot {slot}, init after {:.1} s, web UI after {:.1} s",
            self.boots.len() + 1,
            init.as_secs_f64(),
            web.as_secs_f64()
        );
        self.boots.push(Boot {
            why: why.to_string(),
            slot: slot.to_string(),
            init,
            web,
        });
    }

    fn power_on(&mut self, why: &str) -> String {
        let since = Instant::now();
        let mark = self.machine.power_on();
        self.boot(mark, since, why).0
    }

    /// A reboot through the web UI, as the admin would ask for one; returns
    /// where the console stood and when.
    fn reboot(&mut self) -> (Mark, Instant) {
        let mark = self.machine.mark();
        let since = Instant::now();
        self.guest.expect("POST", "/api/system/reboot", "", 202);
        (mark, since)
    }

    fn update(&self) -> Value {
        self.guest.get("/api/update")
    }

    /// Waits until obsbox reports every child ready and no trial under way:
    /// the running slot committed.
    fn wait_committed(&mut self, slot: &str, version: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let status = self.update();
            let services = self.guest.services();
            if status["committed"] == slot
                && status["running"]["slot"] == slot
                && status["on_trial"] == false
                && !services.is_empty()
                && services.iter().all(|s| s["ready"] == true)
            {
                assert_eq!(status["running"]["version"], version, "{status:#}");
                assert_eq!(status["slots"][slot]["condition"], "good", "{status:#}");
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "slot {slot} ({version}) not committed and healthy: {status:#}\n{services:?}\n{}",
                self.machine.console_tail(40)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Installs a good bundle into the slot that is not running.
    fn install_ok(&self, bundle: &Path, version: &str) -> (String, f64) {
        let (status, body, took) = install(&self.guest, bundle);
        assert_eq!(status, 200, "install {version}: {body}");
        assert_eq!(body["version"], version);
        let slot = body["slot"].as_str().unwrap().to_string();
        println!(
            "installed {version} into slot {slot} in {took:.1} s ({} MiB bundle)",
            std::fs::metadata(bundle).unwrap().len() >> 20
        );
        (slot, took)
    }
}

/// Uploads a bundle as the web UI does; returns the answer and its time.
fn install(guest: &Guest, bundle: &Path) -> (u16, Value, f64) {
    let bytes = std::fs::read(bundle).unwrap();
    let start = Instant::now();
    let (status, body) = guest
        .upload("/api/update/install", &bytes)
        .unwrap_or_else(|e| panic!("install {}: {e}", bundle.display()));
    (status, body, start.elapsed().as_secs_f64())
}

fn other(slot: &str) -> &'static str {
    if slot == "a" {
        "b"
    } else {
        "a"
    }
}

/// The images and bundles of the test, all from one static obsbox.
struct Firmware {
    factory_disk: PathBuf,
    update: PathBuf,
    bad_update: PathBuf,
    later_update: PathBuf,
    tampered: PathBuf,
}

fn build_firmware(dir: &Path, rng: &mut fastrand::Rng) -> Firmware {
    let obsbox = image::static_obsbox();
    let secret = dir.join("bundle.key");
    let public = dir.join("bundle.pub");
    image::run(
        Command::new(&obsbox)
            .args(["bundle", "keygen", "--secret"])
            .arg(&secret)
            .arg("--public")
            .arg(&public),
    );
    let build = |version: &str, overlay: Option<&Path>, rootfs_only: bool| -> PathBuf {
        let output = dir.join(version);
        let took = image::build_image(
            &Build {
                obsbox: &obsbox,
                version,
                public_key: Some(&public),
                overlay,
                rootfs_only,
            },
            &output,
        );
        println!("image {version} built in {took:.1} s");
        output
    };
    let bundle = |version: &str, output: &Path| -> PathBuf {
        let start = Instant::now();
        let rootfs = output.join("rootfs.ext4");
        let bundle = dir.join(format!("{version}.obb"));
        image::run(
            Command::new(&obsbox)
                .args(["bundle", "create", "--key"])
                .arg(&secret)
                .args(["--version", version, "--compatible", "x86_64", "--rootfs"])
                .arg(&rootfs)
                .arg("--output")
                .arg(&bundle),
        );
        println!(
            "bundle {version}: rootfs {} MiB, bundle {} MiB, made in {:.1} s",
            std::fs::metadata(&rootfs).unwrap().len() >> 20,
            std::fs::metadata(&bundle).unwrap().len() >> 20,
            start.elapsed().as_secs_f64()
        );
        std::fs::remove_file(rootfs).unwrap();
        bundle
    };

    let factory = build("1.0.0", None, false);
    for name in ["rootfs.ext4", "disk.img"] {
        let meta = std::fs::metadata(factory.join(name)).unwrap();
        let allocated = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
        println!(
            "factory {name}: {} MiB ({} MiB allocated)",
            meta.len() >> 20,
            allocated >> 20
        );
    }
    std::fs::remove_file(factory.join("rootfs.ext4")).unwrap();
    let update_dir = build("1.1.0", None, true);
    // The bad update: node_exporter never becomes ready, and the health
    // check gives up after BAD_HEALTH_TIMEOUT instead of two minutes; the
    // rest of its firmware.json is what build-image wrote.
    let mut description: Value = serde_json::from_str(&image::run(
        Command::new("debugfs")
            .args(["-R", "cat /etc/obsbox/firmware.json"])
            .arg(update_dir.join("rootfs.ext4")),
    ))
    .unwrap();
    description["version"] = json!("1.2.0");
    description["health_timeout_seconds"] = json!(BAD_HEALTH_TIMEOUT);
    let update = bundle("1.1.0", &update_dir);
    let bad = dir.join("bad-overlay");
    std::fs::create_dir_all(bad.join("usr/bin")).unwrap();
    std::fs::create_dir_all(bad.join("etc/obsbox")).unwrap();
    let exporter = bad.join("usr/bin/prometheus-node-exporter");
    std::fs::write(&exporter, "#!/bin/sh\nexec sleep 100000\n").unwrap();
    std::fs::set_permissions(
        &exporter,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(
        bad.join("etc/obsbox/firmware.json"),
        serde_json::to_string_pretty(&description).unwrap(),
    )
    .unwrap();
    let bad_update = bundle("1.2.0", &build("1.2.0", Some(&bad), true));
    let later_update = bundle("1.3.0", &build("1.3.0", None, true));

    let tampered = dir.join("1.1.0-tampered.obb");
    let mut bytes = std::fs::read(&update).unwrap();
    let at = rng.usize(..bytes.len());
    bytes[at] ^= 1 << rng.u8(..8);
    std::fs::write(&tampered, bytes).unwrap();
    println!("tampered bundle: one bit flipped at byte {at}");

    Firmware {
        factory_disk: factory.join("disk.img"),
        update,
        bad_update,
        later_update,
        tampered,
    }
}

/// A work directory for a QEMU test, or `None` when the tools are missing
/// here (and this is not CI).
fn work_dir() -> Option<tempfile::TempDir> {
    if let Some(why) = qemu::missing_tools() {
        // CI installs every tool (scripts/install-deps test): a skip there
        // would hide a broken install step behind a green run.
        assert!(
            std::env::var_os("CI").is_none(),
            "firmware_qemu cannot run in CI: {why}"
        );
        println!("SKIPPED firmware_qemu: {why}");
        return None;
    }
    Some(
        tempfile::Builder::new()
            .prefix("qemu-test-")
            .tempdir_in(image::repo().join("target"))
            .unwrap(),
    )
}

/// A box booting `disk` (which it takes), its clock at `rtc_base` if given.
fn appliance(work: &Path, disk: &Path, rtc_base: Option<&str>) -> Appliance {
    let vm = work.join("vm");
    std::fs::create_dir(&vm).unwrap();
    let machine = Machine::new(&vm, disk, GROW, rtc_base);
    let guest = Guest::new(machine.http_port(), machine.https_port());
    std::fs::remove_file(disk).unwrap();
    Appliance {
        machine,
        guest,
        boots: Vec::new(),
    }
}

/// Runs `scenario` on the box, then keeps its console as CI's artifact
/// `console` and prints its boots, whatever happened.
fn run_scenario(
    the_box: &mut Appliance,
    start: Instant,
    console: &str,
    scenario: impl FnOnce(&mut Appliance),
) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&mut *the_box)));
    let artifacts = image::repo().join("target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join(console), the_box.machine.console()).unwrap();
    let boots: Vec<String> = the_box
        .boots
        .iter()
        .map(|b| {
            format!(
                "{} ({}): {:.1}/{:.1} s",
                b.why,
                b.slot,
                b.init.as_secs_f64(),
                b.web.as_secs_f64()
            )
        })
        .collect();
    println!(
        "boots (why (slot): init/web UI):\n  {}\nwhole test {:.1} s; console in target/artifacts/{console}",
        boots.join("\n  "),
        start.elapsed().as_secs_f64()
    );
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn firmware_updates_roll_back_and_survive_power_cuts_under_qemu() {
    let Some(work) = work_dir() else { return };
    let start = Instant::now();
    let seed = std::env::var("OBSBOX_QEMU_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("seed {seed} (OBSBOX_QEMU_SEED={seed} repeats this run)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let firmware = build_firmware(work.path(), &mut rng);
    println!(
        "firmware ready after {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let mut the_box = appliance(work.path(), &firmware.factory_disk, None);
    run_scenario(&mut the_box, start, "qemu-console.log", |the_box| {
        scenario(the_box, &firmware, &mut rng)
    });
}

fn scenario(the_box: &mut Appliance, firmware: &Firmware, rng: &mut fastrand::Rng) {
    // First boot: the committed slot, the data partition grown to the disk.
    let since = Instant::now();
    let mark = the_box.machine.power_on();
    let (slot, init, _) = the_box.wait_init(mark, since, "first boot");
    assert_eq!(slot, "a");
    assert!(the_box.guest.wait_answering(BOOT).is_some());
    the_box.record("first boot", &slot, init, since.elapsed());
    let console = the_box.machine.console();
    assert!(
        console.contains("init: growing the data partition"),
        "the data partition was not grown\n{}",
        the_box.machine.console_tail(40)
    );
    let data_kib: u64 = console
        .split("init: /data has ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|kib| kib.parse().ok())
        .expect("the init reports the size of /data");
    assert!(
        data_kib > GROW / 1024,
        "/data has {data_kib} KiB on a disk {GROW} bytes larger than the image"
    );
    the_box.guest.set_up(common::PASSWORD);
    // Settings live on /data: they hold whatever slot boots.
    let mut services = the_box.guest.get("/api/settings")["services"].clone();
    for name in ["prometheus", "alertmanager", "loki", "grafana", "blackbox"] {
        services[name]["enabled"] = json!(false);
    }
    // On the box obsbox is PID 1 with cgroup v2 and its controllers: the
    // one place a child's memory limit can be checked (the build machine's
    // cgroup v2 has no memory controller).
    const NODE_EXPORTER_MAX: u64 = 64 << 20;
    services["node_exporter"]["memory_max_bytes"] = json!(NODE_EXPORTER_MAX);
    the_box
        .guest
        .expect("PUT", "/api/settings/services", &services.to_string(), 200);
    let status = the_box.wait_committed("a", "1.0.0");
    assert_eq!(status["board"], "x86_64");
    let node_exporter = the_box
        .guest
        .services()
        .into_iter()
        .find(|s| s["name"] == "node_exporter")
        .expect("node_exporter runs");
    let cgroup = &node_exporter["cgroup"];
    assert_eq!(
        cgroup["memory_max_bytes"],
        json!(NODE_EXPORTER_MAX),
        "the kernel's memory.max of node_exporter's cgroup: {node_exporter:#}"
    );
    let used = cgroup["memory_bytes"].as_u64().unwrap_or(0);
    assert!(
        used > 0 && used < NODE_EXPORTER_MAX,
        "node_exporter's memory.current: {node_exporter:#}"
    );
    println!("node_exporter in its cgroup: {used} bytes of a {NODE_EXPORTER_MAX} byte memory.max");

    // A bundle with one bit flipped is refused, and nothing is armed.
    let (code, body, _) = install(&the_box.guest, &firmware.tampered);
    assert_eq!(code, 422, "the tampered bundle: {body}");
    println!("tampered bundle refused: {}", body["error"]);
    let status = the_box.update();
    assert!(status["trial"].is_null(), "{status:#}");
    assert_eq!(status["committed"], "a");

    // An update: slot b, a reboot into its trial, the health check, the commit.
    let (slot, install_time) = the_box.install_ok(&firmware.update, "1.1.0");
    assert_eq!(slot, "b");
    let (mark, since) = the_box.reboot();
    let (slot, trial, init) = the_box.boot(mark, since, "trial of 1.1.0");
    assert_eq!(slot, "b");
    the_box
        .machine
        .wait_console(trial, "healthy: committed", BOOT);
    let commit_time = init.elapsed();
    println!(
        "1.1.0 committed {:.1} s after its init started",
        commit_time.as_secs_f64()
    );
    the_box.wait_committed("b", "1.1.0");

    // The bad update: its trial never gets healthy, obsbox reboots, and GRUB,
    // whose trial lasted one boot, brings back slot b: no one helps.
    let (slot, _) = the_box.install_ok(&firmware.bad_update, "1.2.0");
    assert_eq!(slot, "a");
    let (mark, since) = the_box.reboot();
    let (slot, trial, _) = the_box.boot(mark, since, "trial of the bad 1.2.0");
    assert_eq!(slot, "a");
    let reset = the_box.machine.wait_console(
        trial,
        "===== reset",
        Duration::from_secs(BAD_HEALTH_TIMEOUT) + BOOT,
    );
    let (slot, _, _) = the_box.boot(reset, Instant::now(), "rollback from 1.2.0");
    assert_eq!(
        slot, "b",
        "the failed trial must come back to the committed slot"
    );
    let status = the_box.wait_committed("b", "1.1.0");
    let rollback = &status["last_rollback"];
    assert_eq!(rollback["slot"], "a", "{status:#}");
    assert_eq!(rollback["version"], "1.2.0", "{status:#}");
    assert!(
        rollback["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("node_exporter"),
        "the rollback names the child that was not ready: {status:#}"
    );
    assert_eq!(status["slots"]["a"]["condition"], "bad", "{status:#}");
    println!("rolled back from 1.2.0: {}", rollback["reason"]);

    // Power cut during an install: at a random point of an upload as long as
    // the one above. The committed slot boots, or, when the cut came after
    // the trial was armed, the new one, which then commits.
    let cut = Duration::from_secs_f64(install_time * rng.f64());
    println!(
        "power cut {:.2} s into the install of 1.3.0",
        cut.as_secs_f64()
    );
    let bytes = std::fs::read(&firmware.later_update).unwrap();
    std::thread::scope(|scope| {
        let guest = &the_box.guest;
        // Cut off mid-upload, it fails; what matters is the next boot.
        let uploading = scope.spawn(|| guest.upload("/api/update/install", &bytes));
        std::thread::sleep(cut);
        the_box.machine.power_cut();
        let _ = uploading.join();
    });
    let committed = after_cut(
        the_box,
        "after a cut during an install",
        ("b", "1.1.0"),
        ("a", "1.3.0"),
    );

    // Power cut between the reboot into a trial and its commit.
    let (old_slot, old_version) = committed;
    let (new_slot, _) = the_box.install_ok(&firmware.later_update, "1.3.0");
    assert_eq!(new_slot, other(&old_slot));
    let (mark, since) = the_box.reboot();
    let (slot, _, _) = the_box.wait_init(mark, since, "trial of 1.3.0, to be cut");
    assert_eq!(slot, new_slot);
    let cut = commit_time.mul_f64(rng.f64());
    println!(
        "power cut {:.2} s after the trial's init started",
        cut.as_secs_f64()
    );
    std::thread::sleep(cut);
    the_box.machine.power_cut();
    let committed = after_cut(
        the_box,
        "after a cut before the commit",
        (&old_slot, &old_version),
        (&new_slot, "1.3.0"),
    );

    // Power cut right after the commit: the commit holds.
    let (old_slot, _) = committed;
    let (new_slot, _) = the_box.install_ok(&firmware.later_update, "1.3.0");
    assert_eq!(new_slot, other(&old_slot));
    let (mark, since) = the_box.reboot();
    let (slot, trial, _) = the_box.boot(mark, since, "trial of 1.3.0, committed then cut");
    assert_eq!(slot, new_slot);
    the_box
        .machine
        .wait_console(trial, "healthy: committed", BOOT);
    let cut = Duration::from_secs_f64(2.0 * rng.f64());
    println!("power cut {:.2} s after the commit", cut.as_secs_f64());
    std::thread::sleep(cut);
    the_box.machine.power_cut();
    let slot = the_box.power_on("after a cut after the commit");
    assert_eq!(
        slot, new_slot,
        "a commit obsbox logged must survive a power cut"
    );
    the_box.wait_committed(&new_slot, "1.3.0");

    // GRUB's environment agrees: the committed slot, no trial armed.
    the_box.machine.power_cut();
    let env = image::grubenv(the_box.machine.disk());
    assert!(
        env.lines()
            .any(|l| l == format!("obsbox_default={new_slot}"))
            && !env
                .lines()
                .any(|l| l.starts_with("obsbox_try=") && l != "obsbox_try="),
        "grubenv at the end:\n{env}"
    );
    let console = the_box.machine.console();
    assert_eq!(
        console.matches("init: growing the data partition").count(),
        1,
        "the data partition is grown on the first boot only"
    );
}

/// Powers on after a cut: the box must come up healthy on a committed slot,
/// `old` or `new` (slot, version). Returns the one it is on.
fn after_cut(
    the_box: &mut Appliance,
    why: &str,
    old: (&str, &str),
    new: (&str, &str),
) -> (String, String) {
    let slot = the_box.power_on(why);
    // A trial armed before the cut boots once; wait for its outcome.
    let expected = if slot == new.0 { new } else { old };
    assert!(slot == old.0 || slot == new.0, "{why}: booted slot {slot}");
    the_box.wait_committed(expected.0, expected.1);
    println!("{why}: committed {} ({})", expected.0, expected.1);
    (expected.0.to_string(), expected.1.to_string())
}

/// The clock the second box's hardware starts at, every power-on: years
/// behind, as a Raspberry Pi without a clock battery or a flat CMOS cell.
const RTC_BASE: &str = "2020-01-01";

/// The data partition broken and the clock wrong, on the factory image: the
/// first failed mount reboots, the second starts obsbox in recovery, whose
/// reformat (with the code from the serial console) brings the box back to
/// setup; NTP then sets the clock, and the last known time kept on /data
/// puts it right on the next boot even with no NTP server answering.
#[test]
fn data_recovery_and_time_sync_under_qemu() {
    let Some(work) = work_dir() else { return };
    let start = Instant::now();
    let output = work.path().join("1.0.0");
    let took = image::build_image(
        &Build {
            obsbox: &image::static_obsbox(),
            version: "1.0.0",
            public_key: None,
            overlay: None,
            rootfs_only: false,
        },
        &output,
    );
    println!("image 1.0.0 built in {took:.1} s");
    let disk = output.join("disk.img");
    image::break_data_superblock(&disk);
    let mut the_box = appliance(work.path(), &disk, Some(RTC_BASE));
    run_scenario(
        &mut the_box,
        start,
        "qemu-recovery-console.log",
        recovery_and_clock,
    );
}

/// Now on this machine, in Unix seconds.
fn host_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A time from the box's API, in Unix seconds.
fn seconds(value: &Value) -> i64 {
    value
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .unwrap_or_else(|| panic!("not a time: {value}"))
        .as_second()
}

fn recovery_and_clock(the_box: &mut Appliance) {
    // First boot: the mount fails, init reboots to try again.
    let since = Instant::now();
    let mark = the_box.machine.power_on();
    let (slot, init, at) = the_box.wait_init(mark, since, "first boot, /data broken");
    let failed = the_box
        .machine
        .wait_console(at, "init: cannot mount the data partition", BOOT);
    the_box
        .machine
        .wait_console(failed, "init: rebooting in 30 s to try again", BOOT);
    the_box.record("first boot, /data broken", &slot, init, since.elapsed());
    let reset = the_box.machine.wait_console(failed, "===== reset", BOOT);

    // Second failure in a row: obsbox in recovery, its code on the console.
    let since = Instant::now();
    let (slot, init, at) = the_box.wait_init(reset, since, "second boot, /data broken");
    // init prints the failure after e2fsck has had its go: waited for, not
    // looked for at once.
    let failed =
        the_box
            .machine
            .wait_console(at, "init: cannot mount the data partition /dev/vda4", BOOT);
    let recovery = the_box
        .machine
        .wait_console(failed, "init: starting obsbox in recovery", BOOT);
    let code_at =
        the_box
            .machine
            .wait_console(recovery, "the code for repairs from the web UI is ", BOOT);
    the_box
        .machine
        .wait_console(code_at, "\n", Duration::from_secs(10));
    let code: String = the_box
        .machine
        .console_since(code_at)
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert_eq!(code.len(), 6, "the console code: {code:?}");
    the_box.record("recovery", &slot, init, since.elapsed());
    let (status, body) = the_box.guest.plain("GET", "/api/recovery", "").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "recovery", "{body:#}");
    assert_eq!(body["problem"]["kind"], "data", "{body:#}");
    assert_eq!(body["problem"]["device"], "/dev/vda4", "{body:#}");
    assert!(
        body["problem"]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot mount the data partition /dev/vda4"),
        "{body:#}"
    );
    assert_eq!(body["repairs"], json!(["fsck", "reformat"]), "{body:#}");
    // Neither services nor setup: the rest of the API says why.
    let (status, _) = the_box.guest.plain("GET", "/healthz", "").unwrap();
    assert_eq!(status, 503);
    println!("in recovery: {}", body["problem"]["message"]);

    // A reformat from the network without the console's code is refused.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, body) = the_box
        .guest
        .plain(
            "POST",
            "/api/recovery/data",
            &format!("action=reformat&code={wrong}&confirm=REFORMAT"),
        )
        .unwrap();
    assert_eq!(status, 403, "{body}");
    // With it: an empty file system, and the box restarts into setup.
    let mark = the_box.machine.mark();
    let since = Instant::now();
    let (status, body) = the_box
        .guest
        .plain(
            "POST",
            "/api/recovery/data",
            &format!("action=reformat&code={code}&confirm=REFORMAT"),
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["repaired"]["ok"], true, "{body:#}");
    println!("reformatted in {:.1} s", since.elapsed().as_secs_f64());
    let reset = the_box.machine.wait_console(mark, "===== reset", BOOT);
    let (_, at, _) = the_box.up(reset, since, "after the reformat");
    let console = the_box.machine.console_since(at);
    assert!(
        console.contains("init: /data has ") && !console.contains("cannot mount"),
        "{console}"
    );
    the_box.guest.set_up(common::PASSWORD);

    // The clock: six years behind, and no NTP server answers yet (the
    // default ones are names, and DNS does not leave this machine).
    let time = the_box.guest.get("/api/system/time");
    assert_eq!(time["synchronised"], false, "{time:#}");
    let behind = host_now() - seconds(&time["now"]);
    assert!(behind > 3 * 365 * 86_400, "{time:#}");
    let ntp = NtpServer::start();
    let mut settings = the_box.guest.get("/api/settings")["time"].clone();
    settings["servers"] = json!(["10.0.2.2"]);
    settings["use_dhcp_servers"] = json!(false);
    the_box
        .guest
        .expect("PUT", "/api/settings/time", &settings.to_string(), 200);
    let asked = Instant::now();
    let deadline = asked + Duration::from_secs(240);
    let synced = loop {
        // The session was made six years ago once the clock steps.
        let time = match the_box.guest.send("GET", "/api/system/time", "") {
            Ok((401, _)) => {
                the_box.guest.log_in(common::PASSWORD);
                continue;
            }
            Ok((200, time)) => time,
            other => panic!("GET /api/system/time: {other:?}"),
        };
        let off = (host_now() - seconds(&time["now"])).abs();
        if time["synchronised"] == true && off <= 3 {
            break time;
        }
        assert!(
            Instant::now() < deadline,
            "not synchronised to 10.0.2.2 ({} requests answered): {time:#}\n{:?}\n{}",
            ntp.answered(),
            the_box.guest.services(),
            the_box.machine.console_tail(40)
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    println!(
        "synchronised {:.1} s after the servers were set ({} NTP requests answered): {synced}",
        asked.elapsed().as_secs_f64(),
        ntp.answered()
    );
    let ntpd = the_box
        .guest
        .services()
        .into_iter()
        .find(|s| s["name"] == "ntpd");
    assert!(
        ntpd.as_ref().is_some_and(|s| s["ready"] == true),
        "the NTP daemon runs as a child: {ntpd:?}"
    );

    // No NTP from here on: the next boot starts in 2020 again, and the time
    // obsbox kept on /data (`clock-last-known`) when it stopped sets the
    // clock forward; the API reads that file back.
    drop(ntp);
    let (mark, since) = the_box.reboot();
    let rebooted = host_now();
    the_box.boot(mark, since, "clock from the last known time");
    let time = the_box.guest.get("/api/system/time");
    let now = seconds(&time["now"]);
    let kept = seconds(&time["last_known"]);
    assert_eq!(time["synchronised"], false, "{time:#}");
    assert!(
        kept >= rebooted - 5 && kept <= host_now(),
        "the last known time was kept at the reboot ({rebooted}): {time:#}"
    );
    assert!(
        now >= kept && host_now() - now < BOOT.as_secs() as i64,
        "the clock was set forward to the last known time: {time:#}"
    );
    println!(
        "booted with the clock {} s behind instead of {behind} s",
        host_now() - now
    );

    // On the disk: no failed mount counted any more.
    the_box.machine.power_cut();
    assert_eq!(
        image::esp_file(the_box.machine.disk(), image::DATA_FAILURES),
        None
    );
}

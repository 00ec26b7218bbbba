//! The UPS simulator that obsbox's driver tests use is checked against NUT's
//! real drivers: if `nutdrv_qx` and `apcsmart` read from it what it was set
//! to, and send it the commands obsbox sends, it speaks the real protocols.

mod common;

use common::ups_sim::{NutServer, Protocol, UpsSim};
use common::wait_for;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn wait_var(nut: &NutServer, var: &str, want: impl Fn(&str) -> bool) -> String {
    wait_for(&format!("{var} from upsc"), WAIT, || {
        nut.upsc(var).filter(|v| want(v))
    })
}

#[test]
fn nutdrv_qx_reads_the_megatec_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let sim = UpsSim::start(Protocol::Megatec, dir.path());
    let pts = sim.pts().to_string_lossy().into_owned();
    let mut nut = NutServer::start(
        dir.path(),
        "nutdrv_qx",
        &[
            ("port", &pts),
            ("protocol", "megatec"),
            ("pollinterval", "1"),
            // Full updates (voltages, charge) as often as status ones.
            ("pollfreq", "1"),
        ],
    );
    wait_var(&nut, "ups.status", |s| s == "OL");
    assert_eq!(nut.upsc("battery.charge").as_deref(), Some("100"));
    assert_eq!(nut.upsc("input.voltage").as_deref(), Some("230.0"));
    assert_eq!(nut.upsc("ups.load").as_deref(), Some("20"));
    assert_eq!(nut.upsc("battery.voltage.nominal").as_deref(), Some("12.0"));
    assert_eq!(nut.upsc("device.mfr").as_deref(), Some("obsbox-sim"));

    sim.set_charge(50.0);
    sim.set_on_battery(true);
    sim.set_low_battery(true);
    wait_var(&nut, "ups.status", |s| s == "OB LB");
    // nutdrv_qx estimates the charge from the voltage as obsbox does.
    wait_var(&nut, "battery.charge", |c| c == "50");

    // NUT's shutdown (`-k`) sends what obsbox's Q1 encoder sends for
    // (30 s, 3 min), and the simulator records it. The killed driver's
    // exclusive open is cleared by the simulator.
    nut.stop();
    let status = nut
        .command("/lib/nut/nutdrv_qx", &["-a", "ups", "-k", "-u", "root"])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        sim.commands().contains(&"S.5R0003".to_string()),
        "{:?}",
        sim.commands()
    );
    assert!(sim.state().shutdown_pending);
}

#[test]
fn apcsmart_reads_the_apc_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let sim = UpsSim::start(Protocol::ApcSmart, dir.path());
    let pts = sim.pts().to_string_lossy().into_owned();
    let mut nut = NutServer::start(
        dir.path(),
        "apcsmart",
        &[("port", &pts), ("pollinterval", "1")],
    );
    wait_var(&nut, "ups.status", |s| s == "OL");
    assert_eq!(nut.upsc("battery.charge").as_deref(), Some("100.0"));
    assert_eq!(nut.upsc("battery.runtime").as_deref(), Some("2520"));
    assert!(sim.commands().contains(&"Y".to_string()));

    sim.set_on_battery(true);
    sim.set_low_battery(true);
    wait_var(&nut, "ups.status", |s| s == "OB LB");

    nut.stop();
    let status = nut
        .command("/lib/nut/apcsmart", &["-a", "ups", "-k", "-u", "root"])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        sim.commands().contains(&"S".to_string()),
        "{:?}",
        sim.commands()
    );
}

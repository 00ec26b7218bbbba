//! The serial drivers end to end: the real driver task and tokio-serial
//! against the test suite's UPS simulator on a real pseudo-terminal.

#[allow(dead_code)] // shared with tests/ups.rs, which uses other parts
#[path = "../../../tests/common/ups_sim.rs"]
mod ups_sim;

use super::{spawn, Ups, UpsConfig, UpsContext, UpsEventKind, UpsStatus};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use ups_sim::{Protocol, UpsSim};

fn start(config: UpsConfig, poll: Duration, lost_after: Duration) -> (Ups, CancellationToken) {
    let cancel = CancellationToken::new();
    let ups = spawn(UpsContext {
        config,
        nut_password: None,
        poll,
        lost_after,
        cancel: cancel.clone(),
    });
    (ups, cancel)
}

/// The next event that `want` accepts, within `timeout`; fails the test otherwise.
async fn next(
    ups: &mut Ups,
    what: &str,
    timeout: Duration,
    want: impl Fn(&UpsEventKind) -> bool,
) -> UpsEventKind {
    let found = tokio::time::timeout(timeout, async {
        while let Some(event) = ups.events.recv().await {
            if want(&event.kind) {
                return Some(event.kind);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(kind)) => kind,
        Ok(None) => panic!("the driver stopped before {what}"),
        Err(_) => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

fn status(kind: &UpsEventKind) -> Option<&UpsStatus> {
    match kind {
        UpsEventKind::Status(s) => Some(s),
        UpsEventKind::Lost => None,
    }
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn q1_over_a_pty() {
    let dir = tempfile::tempdir().unwrap();
    let sim = UpsSim::start(Protocol::Megatec, dir.path());
    let config = UpsConfig::Q1 {
        port: sim.path().to_string_lossy().into(),
        baud: 2400,
    };
    let (mut ups, cancel) = start(config, Duration::from_millis(100), SECOND);

    let first = next(&mut ups, "a first reading", 5 * SECOND, |k| {
        status(k).is_some()
    })
    .await;
    let first = status(&first).unwrap().clone();
    assert!(first.online && !first.on_battery);
    assert!(
        (first.charge_percent.unwrap() - 100.0).abs() < 0.01,
        "{first:?}"
    );
    assert_eq!(first.load_percent, Some(20.0));

    sim.set_charge(50.0);
    sim.set_on_battery(true);
    let kind = next(&mut ups, "on battery", 5 * SECOND, |k| {
        status(k).is_some_and(|s| s.on_battery)
    })
    .await;
    let s = status(&kind).unwrap();
    assert!((s.charge_percent.unwrap() - 50.0).abs() < 1.0, "{s:?}");
    assert!(!s.online);

    // Garbage is counted and changes nothing.
    let before = ups.commands.stats().invalid_replies;
    for garbage in [
        &b"(230.0 1\r"[..],
        b"#bogus\r",
        b"(230.0 140.0 230.0 020 50.0 11.7 25.0 0000100x\r",
    ] {
        sim.inject_garbage(garbage);
        let kind = next(&mut ups, "a reading after garbage", 5 * SECOND, |k| {
            status(k).is_some()
        })
        .await;
        assert!(status(&kind).unwrap().on_battery);
    }
    assert!(ups.commands.stats().invalid_replies >= before + 3);

    // Shutdown and cancel: unanswered commands, as the protocol has them.
    ups.commands
        .shutdown(Duration::from_secs(30), Duration::from_secs(180))
        .await
        .unwrap();
    ups.commands.cancel_shutdown().await.unwrap();
    let commands = sim.commands();
    assert!(commands.contains(&"S.5R0003".to_string()), "{commands:?}");
    assert!(commands.contains(&"C".to_string()));
    assert!(!sim.state().shutdown_pending);

    // Silence: Lost once, then a reading again.
    sim.go_silent(true);
    next(&mut ups, "Lost", 5 * SECOND, |k| *k == UpsEventKind::Lost).await;
    sim.go_silent(false);
    next(&mut ups, "a reading after silence", 10 * SECOND, |k| {
        status(k).is_some()
    })
    .await;

    // Cable pulled and plugged back (a new pty behind the same path).
    let connects = ups.commands.stats().connects;
    sim.unplug();
    next(&mut ups, "Lost after unplugging", 5 * SECOND, |k| {
        *k == UpsEventKind::Lost
    })
    .await;
    sim.plug();
    next(&mut ups, "a reading after plugging in", 10 * SECOND, |k| {
        status(k).is_some()
    })
    .await;
    assert!(ups.commands.stats().connects > connects);

    cancel.cancel();
    ups.task.await.unwrap();
}

#[tokio::test]
async fn apc_over_a_pty_reports_alerts_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = UpsSim::start(Protocol::ApcSmart, dir.path());
    let config = UpsConfig::Apc {
        port: sim.path().to_string_lossy().into(),
        baud: 2400,
    };
    // Polls far apart: only the alert can bring the change in time.
    let (mut ups, cancel) = start(config, Duration::from_secs(30), Duration::from_secs(60));
    let first = next(&mut ups, "a first reading", 5 * SECOND, |k| {
        status(k).is_some()
    })
    .await;
    let first = status(&first).unwrap().clone();
    assert!(first.online);
    assert_eq!(first.runtime_seconds, Some(42.0 * 60.0));
    assert_eq!(first.charge_percent, Some(100.0));
    assert!(sim.commands().starts_with(&["Y".to_string()]));

    sim.set_on_battery(true);
    let kind = next(&mut ups, "the on-battery alert", 2 * SECOND, |k| {
        status(k).is_some()
    })
    .await;
    assert!(status(&kind).unwrap().on_battery);
    sim.set_low_battery(true);
    let kind = next(&mut ups, "the low-battery alert", 2 * SECOND, |k| {
        status(k).is_some()
    })
    .await;
    let s = status(&kind).unwrap();
    assert!(s.on_battery && s.low_battery);

    ups.commands
        .shutdown(Duration::from_secs(30), Duration::from_secs(180))
        .await
        .unwrap();
    assert!(sim.state().shutdown_pending);
    ups.commands.cancel_shutdown().await.unwrap();
    assert!(!sim.state().shutdown_pending);
    let commands = sim.commands();
    assert!(commands.contains(&"S".to_string()), "{commands:?}");
    assert!(commands.contains(&"\u{7f}".to_string()));

    cancel.cancel();
    ups.task.await.unwrap();
}

#[tokio::test]
async fn no_ups_configured() {
    let (mut ups, _cancel) = start(UpsConfig::None, SECOND, SECOND);
    assert!(ups.events.recv().await.is_none());
    assert!(matches!(
        ups.commands.cancel_shutdown().await,
        Err(super::UpsError::NotConfigured)
    ));
}

#[tokio::test]
async fn nut_client_against_real_upsd() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("rack.dev");
    std::fs::write(
        &dev,
        "ups.status: OL\nbattery.charge: 100\nbattery.runtime: 1800\n",
    )
    .unwrap();
    let dev_path = dev.to_string_lossy().into_owned();
    let nut = ups_sim::NutServer::start(dir.path(), "dummy-ups", &[("port", &dev_path)]);
    let config = UpsConfig::Nut {
        host: "127.0.0.1".into(),
        port: nut.port,
        ups: nut.ups.into(),
        username: "obsbox".into(),
    };
    let cancel = CancellationToken::new();
    let mut ups = spawn(UpsContext {
        config,
        nut_password: Some("secret".into()),
        poll: Duration::from_millis(200),
        lost_after: Duration::from_secs(30),
        cancel: cancel.clone(),
    });
    let kind = next(&mut ups, "online from upsd", 20 * SECOND, |k| {
        status(k).is_some_and(|s| s.online)
    })
    .await;
    assert_eq!(status(&kind).unwrap().runtime_seconds, Some(1800.0));

    std::fs::write(
        &dev,
        "ups.status: OB LB\nbattery.charge: 20\nbattery.runtime: 120\n",
    )
    .unwrap();
    let kind = next(&mut ups, "OB LB from upsd", 20 * SECOND, |k| {
        status(k).is_some_and(|s| s.on_battery && s.low_battery)
    })
    .await;
    assert_eq!(status(&kind).unwrap().charge_percent, Some(20.0));
    assert!(matches!(
        ups.commands.shutdown(SECOND, SECOND).await,
        Err(super::UpsError::Unsupported(_))
    ));
    // Before dummy-ups reaches upsd, upsd answers ERR (counted as invalid).
    assert!(ups.commands.stats().connects >= 1);

    cancel.cancel();
    ups.task.await.unwrap();
}

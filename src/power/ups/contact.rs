//! Contact-closure ("dumb") UPSes, as NUT's `genericups` drives them: the UPS
//! closes contacts wired to a serial port's status lines (CTS, DCD, RNG,
//! DSR), the cable is powered by raising DTR and/or RTS, and raising a
//! (cable-specific) line tells the UPS to shut down. The cable types and
//! their wiring are genericups' (`upstype` numbers in its man page).
//!
//! The lines are read through [`ModemLines`], so tests drive the driver with
//! a fake: a pseudo-terminal has no modem-control lines.

use super::driver::Driver;
use super::{UpsError, UpsStatus};
use serde::{Deserialize, Serialize};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

/// The state of a serial port's modem-control lines (true = asserted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineState {
    pub dtr: bool,
    pub rts: bool,
    pub cts: bool,
    pub dcd: bool,
    pub rng: bool,
    pub dsr: bool,
}

/// Reading and setting the modem-control lines of one port.
pub trait ModemLines: Send {
    fn get(&self) -> io::Result<LineState>;
    /// Raises exactly the outputs (`dtr`, `rts`) set in `outputs`; the inputs are ignored.
    fn set(&self, outputs: LineState) -> io::Result<()>;
}

/// A cable type, as in NUT genericups' table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cable {
    /// APC Back-UPS with the 940-0095A/C cable (genericups type 1).
    #[serde(rename = "apc-940-0095")]
    Apc9400095,
    /// APC Back-UPS with the 940-0020B/C cable (type 2, "simple signalling").
    #[serde(rename = "apc-940-0020b")]
    Apc9400020b,
    /// APC Back-UPS with the 940-0023A cable (type 9).
    #[serde(rename = "apc-940-0023a")]
    Apc9400023a,
    /// APC Back-UPS Office with the 940-0119A cable (type 12).
    #[serde(rename = "apc-940-0119a")]
    Apc9400119a,
    /// Generic RUPS (type 4); it cannot be told to shut down.
    GenericRups,
    /// CyberPower Power99 (type 7).
    CyberpowerPower99,
    /// Tripp Lite Internet Office with the black 73-0844 cable (type 5).
    TrippliteLan22,
}

/// An input line and the level it has when its condition holds.
#[derive(Debug, Clone, Copy)]
struct Signal {
    line: Input,
    asserted: bool,
}

#[derive(Debug, Clone, Copy)]
enum Input {
    Cts,
    Dcd,
    Rng,
}

/// What a cable's lines mean.
#[derive(Debug, Clone, Copy)]
struct Wiring {
    /// Raised to power the cable.
    power: LineState,
    online: Signal,
    low_battery: Signal,
    /// Raised to shut the UPS down; `None` if the cable cannot.
    shutdown: Option<LineState>,
}

const DTR: LineState = outputs(true, false);
const RTS: LineState = outputs(false, true);
const DTR_RTS: LineState = outputs(true, true);
const NONE: LineState = outputs(false, false);

const fn outputs(dtr: bool, rts: bool) -> LineState {
    LineState {
        dtr,
        rts,
        cts: false,
        dcd: false,
        rng: false,
        dsr: false,
    }
}

const fn on(line: Input) -> Signal {
    Signal {
        line,
        asserted: true,
    }
}

const fn off(line: Input) -> Signal {
    Signal {
        line,
        asserted: false,
    }
}

impl Cable {
    /// Every cable, as the UI offers them.
    pub const ALL: [Cable; 7] = [
        Cable::Apc9400095,
        Cable::Apc9400020b,
        Cable::Apc9400023a,
        Cable::Apc9400119a,
        Cable::GenericRups,
        Cable::CyberpowerPower99,
        Cable::TrippliteLan22,
    ];

    /// Whether the cable has lines that tell the UPS to shut down.
    pub fn can_shut_down(self) -> bool {
        self.wiring().shutdown.is_some()
    }

    fn wiring(self) -> Wiring {
        use Input::*;
        let w = |power, online, low_battery, shutdown| Wiring {
            power,
            online,
            low_battery,
            shutdown,
        };
        match self {
            Cable::Apc9400095 => w(DTR, off(Rng), on(Dcd), Some(RTS)),
            Cable::Apc9400020b => w(RTS, off(Cts), on(Dcd), Some(DTR_RTS)),
            Cable::Apc9400023a => w(NONE, off(Dcd), on(Cts), Some(RTS)),
            Cable::Apc9400119a => w(RTS, off(Cts), on(Dcd), Some(DTR)),
            Cable::GenericRups => w(RTS, on(Cts), off(Dcd), None),
            Cable::CyberpowerPower99 => w(RTS, on(Cts), off(Dcd), Some(DTR)),
            Cable::TrippliteLan22 => w(DTR, on(Cts), off(Dcd), Some(DTR_RTS)),
        }
    }
}

impl Signal {
    fn holds(self, state: &LineState) -> bool {
        let level = match self.line {
            Input::Cts => state.cts,
            Input::Dcd => state.dcd,
            Input::Rng => state.rng,
        };
        level == self.asserted
    }
}

/// The status the lines mean for `cable`. A contact-closure UPS tells
/// nothing else (no charge, no voltages).
pub(crate) fn status(cable: Cable, state: &LineState) -> UpsStatus {
    let wiring = cable.wiring();
    let online = wiring.online.holds(state);
    UpsStatus {
        online,
        on_battery: !online,
        low_battery: wiring.low_battery.holds(state),
        ..UpsStatus::default()
    }
}

/// The real thing: `TIOCMGET`/`TIOCMSET` on an open serial port.
struct SerialLines(OwnedFd);

impl SerialLines {
    fn open(port: &str) -> io::Result<SerialLines> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(port)?;
        Ok(SerialLines(file.into()))
    }
}

impl ModemLines for SerialLines {
    fn get(&self) -> io::Result<LineState> {
        let mut bits: libc::c_int = 0;
        // SAFETY: TIOCMGET writes one c_int through the pointer we own.
        if unsafe { libc::ioctl(self.0.as_raw_fd(), libc::TIOCMGET, &mut bits) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let has = |b: libc::c_int| bits & b != 0;
        Ok(LineState {
            dtr: has(libc::TIOCM_DTR),
            rts: has(libc::TIOCM_RTS),
            cts: has(libc::TIOCM_CTS),
            dcd: has(libc::TIOCM_CAR),
            rng: has(libc::TIOCM_RNG),
            dsr: has(libc::TIOCM_DSR),
        })
    }

    fn set(&self, outputs: LineState) -> io::Result<()> {
        let bits: libc::c_int = if outputs.dtr { libc::TIOCM_DTR } else { 0 }
            | if outputs.rts { libc::TIOCM_RTS } else { 0 };
        // SAFETY: TIOCMSET reads one c_int through a pointer to ours.
        if unsafe { libc::ioctl(self.0.as_raw_fd(), libc::TIOCMSET, &bits) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Opens a port's lines (a seam for tests).
pub(crate) type Opener = Box<dyn Fn(&str) -> io::Result<Box<dyn ModemLines>> + Send>;

pub(crate) struct ContactDriver {
    port: String,
    cable: Cable,
    open: Opener,
    lines: Option<Box<dyn ModemLines>>,
}

impl ContactDriver {
    pub fn serial(port: String, cable: Cable) -> Self {
        let open: Opener =
            Box::new(|port| Ok(Box::new(SerialLines::open(port)?) as Box<dyn ModemLines>));
        Self::with_opener(port, cable, open)
    }

    pub fn with_opener(port: String, cable: Cable, open: Opener) -> Self {
        ContactDriver {
            port,
            cable,
            open,
            lines: None,
        }
    }

    fn lines(&self) -> Result<&dyn ModemLines, UpsError> {
        self.lines.as_deref().ok_or(UpsError::NotConnected)
    }
}

impl Driver for ContactDriver {
    async fn connect(&mut self) -> Result<(), UpsError> {
        let lines = (self.open)(&self.port).map_err(|source| UpsError::Open {
            port: self.port.clone(),
            source,
        })?;
        lines.set(self.cable.wiring().power)?;
        self.lines = Some(lines);
        Ok(())
    }

    async fn read(&mut self) -> Result<UpsStatus, UpsError> {
        let state = self.lines()?.get()?;
        Ok(status(self.cable, &state))
    }

    /// Raises the cable's shutdown lines and keeps them up; the UPS decides
    /// the delay, so `delay` and `restore_after` are not used.
    async fn shutdown(&mut self, _: Duration, _: Duration) -> Result<(), UpsError> {
        let lines = self
            .cable
            .wiring()
            .shutdown
            .ok_or(UpsError::Unsupported("this cable cannot shut the UPS down"))?;
        self.lines()?.set(lines)?;
        Ok(())
    }

    /// Lowers the shutdown lines again (power lines only). Whether the UPS
    /// stops a shutdown it has begun is up to the UPS.
    async fn cancel_shutdown(&mut self) -> Result<(), UpsError> {
        self.lines()?.set(self.cable.wiring().power)?;
        Ok(())
    }

    fn disconnect(&mut self) {
        self.lines = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn all_lists_every_cable_once() {
        // Exhaustive: a new cable fails to compile here until it is listed.
        let place = |cable: Cable| match cable {
            Cable::Apc9400095 => 0,
            Cable::Apc9400020b => 1,
            Cable::Apc9400023a => 2,
            Cable::Apc9400119a => 3,
            Cable::GenericRups => 4,
            Cable::CyberpowerPower99 => 5,
            Cable::TrippliteLan22 => 6,
        };
        for (i, cable) in Cable::ALL.into_iter().enumerate() {
            assert_eq!(place(cable), i);
        }
    }

    /// Lines a test sets; records what the driver raised.
    #[derive(Clone, Default)]
    pub(crate) struct FakeLines {
        pub state: Arc<Mutex<LineState>>,
        pub raised: Arc<Mutex<Vec<LineState>>>,
        pub broken: Arc<Mutex<bool>>,
    }

    impl ModemLines for FakeLines {
        fn get(&self) -> io::Result<LineState> {
            if *self.broken.lock().unwrap() {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            Ok(*self.state.lock().unwrap())
        }
        fn set(&self, outputs: LineState) -> io::Result<()> {
            self.raised.lock().unwrap().push(outputs);
            Ok(())
        }
    }

    #[test]
    fn cables_decode_as_genericups() {
        let lines = |cts, dcd, rng| LineState {
            cts,
            dcd,
            rng,
            ..LineState::default()
        };
        // 940-0020B: CTS raised = on battery, DCD raised = battery low.
        let s = status(Cable::Apc9400020b, &lines(false, false, false));
        assert!(s.online && !s.on_battery && !s.low_battery);
        let s = status(Cable::Apc9400020b, &lines(true, true, false));
        assert!(s.on_battery && s.low_battery);
        // 940-0095: RNG means on battery.
        assert!(status(Cable::Apc9400095, &lines(false, false, true)).on_battery);
        assert!(status(Cable::Apc9400095, &lines(true, false, false)).online);
        // Generic RUPS: CTS raised = on line; DCD dropped = battery low.
        let s = status(Cable::GenericRups, &lines(true, true, false));
        assert!(s.online && !s.low_battery);
        assert!(status(Cable::GenericRups, &lines(true, false, false)).low_battery);
        let s = status(Cable::Apc9400023a, &lines(true, true, false));
        assert!(s.on_battery && s.low_battery);
    }

    #[tokio::test]
    async fn drives_the_lines() {
        let fake = FakeLines::default();
        let given = fake.clone();
        let open: Opener = Box::new(move |_| Ok(Box::new(given.clone()) as Box<dyn ModemLines>));
        let mut driver = ContactDriver::with_opener("/dev/ttyS0".into(), Cable::Apc9400020b, open);
        driver.connect().await.unwrap();
        assert_eq!(fake.raised.lock().unwrap().last(), Some(&RTS));
        assert!(driver.read().await.unwrap().online);
        fake.state.lock().unwrap().cts = true;
        assert!(driver.read().await.unwrap().on_battery);
        driver
            .shutdown(Duration::ZERO, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(fake.raised.lock().unwrap().last(), Some(&DTR_RTS));
        driver.cancel_shutdown().await.unwrap();
        assert_eq!(fake.raised.lock().unwrap().last(), Some(&RTS));
        *fake.broken.lock().unwrap() = true;
        assert!(driver.read().await.unwrap_err().link_down());

        let mut rups = ContactDriver::with_opener(
            "/dev/ttyS0".into(),
            Cable::GenericRups,
            Box::new(|_| Ok(Box::new(FakeLines::default()) as Box<dyn ModemLines>)),
        );
        rups.connect().await.unwrap();
        assert!(matches!(
            rups.shutdown(Duration::ZERO, Duration::ZERO).await,
            Err(UpsError::Unsupported(_))
        ));
    }
}

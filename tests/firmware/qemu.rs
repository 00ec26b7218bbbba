//! One x86_64 machine under QEMU's software emulation (KVM does not run
//! here): UEFI firmware (OVMF) with its own writable variables, the disk as
//! virtio, the web UI's HTTP and HTTPS ports forwarded to loopback ports,
//! the serial console in a file. SIGKILL to QEMU is a power cut.
//!
//! A reset of the guest (a reboot, a panic) ends QEMU (`-no-reboot`) and a
//! watcher thread starts it again at once, so every reboot is a cold start
//! of the firmware. Under TCG, OVMF now and then spins forever after a warm
//! reset (seen twice in a dozen reboots, never after a cold start); the box
//! decides which slot boots either way, from GRUB's environment on its disk.
//!
//! The user network reaches this machine's loopback only: QEMU runs in a
//! mount namespace of its own whose `/etc/resolv.conf` names 127.0.0.1, so
//! the guest's DNS queries (the box's default NTP servers are pool names)
//! never leave the machine, and IPv6 is off. The guest reaches 127.0.0.1 as
//! 10.0.2.2.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Why the machine cannot run here, if it cannot.
pub fn missing_tools() -> Option<String> {
    let on_path = |program: &str| {
        std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
            .unwrap_or(false)
    };
    let mut missing = Vec::new();
    for program in [
        "qemu-system-x86_64",
        "genimage",
        "mmdebstrap",
        "grub-mkimage",
        "mcopy",
        "debugfs",
    ] {
        if !on_path(program) {
            missing.push(program.to_string());
        }
    }
    for file in [OVMF_CODE, OVMF_VARS] {
        if !Path::new(file).exists() {
            missing.push(file.to_string());
        }
    }
    (!missing.is_empty()).then(|| {
        format!(
            "missing {} (scripts/install-deps image installs them)",
            missing.join(", ")
        )
    })
}

/// A place in the serial console's output, to wait for what comes after it.
#[derive(Clone, Copy, Debug)]
pub struct Mark(usize);

/// How QEMU is started, shared with the watcher thread.
struct Hardware {
    dir: PathBuf,
    disk: PathBuf,
    serial: PathBuf,
    http_port: u16,
    https_port: u16,
    /// The guest's real-time clock at power-on (`-rtc base=`), or now.
    rtc_base: Option<String>,
}

impl Hardware {
    fn start(&self) -> Child {
        let resolv = self.dir.join("resolv.conf");
        std::fs::write(&resolv, "nameserver 127.0.0.1\n").unwrap();
        let mut qemu = Command::new("unshare");
        qemu.args(["--mount", "sh", "-c"])
            .arg(r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#)
            .arg(&resolv)
            .arg("qemu-system-x86_64");
        if let Some(base) = &self.rtc_base {
            qemu.arg("-rtc").arg(format!("base={base}"));
        }
        qemu.args(["-accel", "tcg", "-machine", "q35", "-m", "512", "-smp", "1"])
            .args([
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-no-reboot",
            ])
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,file={}",
                self.dir.join("vars.fd").display()
            ))
            .arg("-drive")
            .arg(format!(
                "if=none,id=disk,format=raw,file={}",
                self.disk.display()
            ))
            // bootindex: straight to the disk, no network boot attempts.
            .args(["-device", "virtio-blk-pci,drive=disk,bootindex=0"])
            .arg("-netdev")
            .arg(format!(
                "user,id=net0,ipv6=off,hostfwd=tcp:127.0.0.1:{}-:80,hostfwd=tcp:127.0.0.1:{}-:443",
                self.http_port, self.https_port
            ))
            // romfile=: no iPXE in the firmware's boot options.
            .args(["-device", "virtio-net-pci,netdev=net0,romfile="])
            // Entropy at once: getrandom() would otherwise wait under TCG.
            .args(["-device", "virtio-rng-pci"])
            .arg("-chardev")
            .arg(format!(
                "file,id=serial0,path={},append=on",
                self.serial.display()
            ))
            .args(["-serial", "chardev:serial0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join("qemu.err"))
                    .unwrap(),
            ))
            .spawn()
            .expect("qemu-system-x86_64")
    }

    /// A line of the test's own in the console file, between QEMU runs.
    fn note(&self, text: &str) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.serial)
            .unwrap();
        writeln!(file, "\n===== {text} =====").unwrap();
    }
}

struct Power {
    process: Option<Child>,
}

pub struct Machine {
    hardware: Arc<Hardware>,
    power: Arc<Mutex<Power>>,
    quit: Arc<AtomicBool>,
    watcher: Option<JoinHandle<()>>,
    /// The console file as read so far, without terminal escapes.
    console: Vec<u8>,
    read: usize,
}

impl Machine {
    /// A machine in `dir` whose disk is `image` grown by `grow_bytes`, as
    /// when an image is written to a larger disk; its clock starts at
    /// `rtc_base` (QEMU's `-rtc base=` syntax) at every power-on, or now.
    pub fn new(dir: &Path, image: &Path, grow_bytes: u64, rtc_base: Option<&str>) -> Machine {
        let disk = dir.join("disk.img");
        let copied = Command::new("cp")
            .arg("--sparse=always")
            .arg(image)
            .arg(&disk)
            .status()
            .unwrap();
        assert!(copied.success(), "cannot copy {}", image.display());
        let file = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
        let size = file.metadata().unwrap().len();
        file.set_len(size + grow_bytes).unwrap();
        std::fs::copy(OVMF_VARS, dir.join("vars.fd")).unwrap();
        let hardware = Arc::new(Hardware {
            dir: dir.to_path_buf(),
            disk,
            serial: dir.join("serial.log"),
            http_port: crate::common::free_port(),
            https_port: crate::common::free_port(),
            rtc_base: rtc_base.map(String::from),
        });
        let power = Arc::new(Mutex::new(Power { process: None }));
        let quit = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (hardware, power, quit) = (hardware.clone(), power.clone(), quit.clone());
            std::thread::spawn(move || {
                while !quit.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    let mut power = power.lock().unwrap();
                    let exited = match &mut power.process {
                        Some(process) => process.try_wait().unwrap(),
                        None => None,
                    };
                    if let Some(status) = exited {
                        hardware.note(&format!("reset ({status}): QEMU started again"));
                        power.process = Some(hardware.start());
                    }
                }
            })
        };
        Machine {
            hardware,
            power,
            quit,
            watcher: Some(watcher),
            console: Vec::new(),
            read: 0,
        }
    }

    pub fn disk(&self) -> &Path {
        &self.hardware.disk
    }

    pub fn http_port(&self) -> u16 {
        self.hardware.http_port
    }

    pub fn https_port(&self) -> u16 {
        self.hardware.https_port
    }

    /// Starts QEMU; the console output from here on is after the mark returned.
    pub fn power_on(&mut self) -> Mark {
        let mut power = self.power.lock().unwrap();
        assert!(power.process.is_none(), "already powered on");
        self.hardware.note("power on");
        power.process = Some(self.hardware.start());
        drop(power);
        self.mark()
    }

    /// Pulls the plug: SIGKILL, nothing flushed that QEMU had not written.
    pub fn power_cut(&mut self) {
        let mut power = self.power.lock().unwrap();
        if let Some(mut process) = power.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
        self.hardware.note("power cut");
    }

    /// The end of the console output so far.
    pub fn mark(&mut self) -> Mark {
        self.poll();
        Mark(self.console.len())
    }

    /// The console's output since `mark`.
    pub fn console_since(&mut self, mark: Mark) -> String {
        self.poll();
        String::from_utf8_lossy(&self.console[mark.0..]).into_owned()
    }

    /// The last lines of the console, for failure messages.
    pub fn console_tail(&mut self, lines: usize) -> String {
        self.poll();
        let text = String::from_utf8_lossy(&self.console).into_owned();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The whole console since the first power-on.
    pub fn console(&mut self) -> String {
        self.poll();
        String::from_utf8_lossy(&self.console).into_owned()
    }

    /// Waits for `needle` on the console after `mark`; returns the mark just
    /// past it. Fails with the console's tail if it does not come.
    pub fn wait_console(&mut self, mark: Mark, needle: &str, timeout: Duration) -> Mark {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll();
            if let Some(at) = find(&self.console[mark.0..], needle.as_bytes()) {
                return Mark(mark.0 + at + needle.len());
            }
            if Instant::now() > deadline {
                let qemu =
                    std::fs::read_to_string(self.hardware.dir.join("qemu.err")).unwrap_or_default();
                panic!(
                    "no {needle:?} on the console within {timeout:?}\n{qemu}--- console ---\n{}",
                    self.console_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Reads what the console file gained since the last call.
    fn poll(&mut self) {
        let Ok(bytes) = std::fs::read(&self.hardware.serial) else {
            return;
        };
        if bytes.len() > self.read {
            // Terminal escapes from the firmware and GRUB; only text is of use.
            let text = strip_escapes(&bytes[self.read..]);
            self.console.extend_from_slice(&text);
            self.read = bytes.len();
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::Relaxed);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        if let Some(mut process) = self.power.lock().unwrap().process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The text of a console stream without ANSI escape sequences and carriage returns.
fn strip_escapes(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            0x1b => {
                i += 1;
                if bytes.get(i) == Some(&b'[') {
                    i += 1;
                    while i < bytes.len() && !(0x40..=0x7e).contains(&bytes[i]) {
                        i += 1;
                    }
                }
            }
            b'\r' | 0 => {}
            b => out.push(b),
        }
        i += 1;
    }
    out
}

//! A private D-Bus with a fake systemd on it, for running packd with `--supervisor systemd`:
//! a real `dbus-daemon` listening on a socket in the test's directory, and `fake-systemd`
//! (src/bin/fake-systemd.rs) owning `org.freedesktop.systemd1` there. Both are stopped by pid
//! when dropped.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bin_dir;

pub struct FakeSystemd {
    // Held to be dropped, in this order: other fakes on the bus, systemd (which stops its
    // units), then the bus.
    others: Vec<Stopped>,
    _systemd: Stopped,
    _bus: Stopped,
    /// The bus's address, for `packd --systemd-bus`.
    pub address: String,
}

/// A child process that is stopped (SIGTERM, then SIGKILL after 10 s) and reaped when dropped,
/// also when a test panics half-way through starting things.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid; it is not reaped before the wait below.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.0.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.0.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.wait();
    }
}

impl FakeSystemd {
    /// Starts the bus and the fake in `dir`; their output goes to `dir/systemd.log`.
    pub fn start(dir: &Path) -> FakeSystemd {
        let socket = dir.join("bus");
        let address = format!("unix:path={}", socket.display());
        let config = dir.join("bus.conf");
        fs::write(
            &config,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"
 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">
<busconfig>
  <type>custom</type>
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  <policy context=\"default\">
    <allow user=\"*\"/>
    <allow own=\"*\"/>
    <allow send_destination=\"*\"/>
    <allow receive_sender=\"*\"/>
  </policy>
</busconfig>
"
            ),
        )
        .expect("bus config");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("systemd.log"))
            .expect("log");
        // It prints its address once it listens.
        let mut bus = Stopped(
            Command::new("dbus-daemon")
                .arg(format!("--config-file={}", config.display()))
                .args(["--nofork", "--nopidfile", "--nosyslog", "--print-address=1"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log.try_clone().expect("log"))
                .spawn()
                .expect("start dbus-daemon (make test installs it)"),
        );
        let listening = first_line(&mut bus.0);
        assert!(
            listening.starts_with(&address),
            "dbus-daemon did not listen on {address}: {listening:?} (see {})",
            dir.join("systemd.log").display()
        );
        let mut systemd = Stopped(
            Command::new(bin_dir().join("fake-systemd"))
                .arg(&address)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .expect("start fake-systemd"),
        );
        assert_eq!(
            first_line(&mut systemd.0).trim(),
            "ready",
            "fake-systemd did not start (see {})",
            dir.join("systemd.log").display()
        );
        FakeSystemd {
            others: Vec::new(),
            _systemd: systemd,
            _bus: bus,
            address,
        }
    }
}

impl FakeSystemd {
    /// Adds a fake NetworkManager on the bus whose `Metered` property is `metered`.
    pub fn network_manager(&mut self, dir: &Path, metered: u32) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("systemd.log"))
            .expect("log");
        let mut nm = Stopped(
            Command::new(bin_dir().join("fake-networkmanager"))
                .arg(&self.address)
                .arg(metered.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .expect("start fake-networkmanager"),
        );
        assert_eq!(
            first_line(&mut nm.0).trim(),
            "ready",
            "fake-networkmanager did not start"
        );
        self.others.push(nm);
    }
}

/// The first line `child` prints on its (piped) standard output; empty if it exits first.
fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    line
}

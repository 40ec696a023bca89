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
    bus: Child,
    systemd: Child,
    /// The bus's address, for `packd --systemd-bus`.
    pub address: String,
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
        let bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--nosyslog"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log.try_clone().expect("log"))
            .spawn()
            .expect("start dbus-daemon (make test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "dbus-daemon did not listen");
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut systemd = Command::new(bin_dir().join("fake-systemd"))
            .arg(&address)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start fake-systemd");
        let mut line = String::new();
        BufReader::new(systemd.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("fake-systemd's first line");
        assert_eq!(line.trim(), "ready", "fake-systemd did not start");
        FakeSystemd {
            bus,
            systemd,
            address,
        }
    }
}

impl Drop for FakeSystemd {
    fn drop(&mut self) {
        for child in [&mut self.systemd, &mut self.bus] {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

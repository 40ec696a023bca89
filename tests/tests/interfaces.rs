//! Interfaces end to end: a connection opens exactly what its interface says, a disconnection
//! closes it again, and connections survive a daemon restart.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use packd_tests::{Env, Run, require_root, write_pack_dir};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// A pack `app` with a shell app `sh` and the given top-level plugs (YAML lines).
fn install_app(env: &Env, name: &str, extra: &str) {
    let yaml = format!(
        "name: {name}\nversion: '1'\nbase: busybox\n{extra}apps:\n  sh:\n    command: /bin/sh\n"
    );
    let dir = write_pack_dir(env.dir.path(), name, &yaml, &[]);
    env.install(&env.build(&dir));
}

fn sh(env: &Env, pack: &str, script: &str) -> Run {
    let app = format!("{pack}.sh");
    env.pack(["run", app.as_str(), "-c", script])
}

fn connections(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["connections", "--json"];
    all.extend(args);
    json(&env.pack(all).ok())
}

#[test]
fn network_is_auto_connected_and_reaches_the_host_until_disconnected() {
    require_root!();
    let mut env = Env::new();
    env.install_base();
    install_app(&env, "client", "plugs:\n  network:\n");
    // Auto-connected at install, to the system's slot.
    assert_eq!(
        connections(&env, &[]),
        serde_json::json!([{"interface": "network", "plug": "client:network", "slot": "system:network", "manual": false}])
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        got
    });
    sh(&env, "client", &format!("echo hello | nc 127.0.0.1 {port}")).ok();
    assert_eq!(accept.join().unwrap().trim(), "hello");

    // Disconnected: a private, empty network again.
    env.pack(["disconnect", "client:network"]).ok();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    sh(&env, "client", &format!("echo hello | nc 127.0.0.1 {port}")).fails(1);
    drop(listener);
    // Remembered: the plug stays disconnected, listed as such, across a restart.
    assert_eq!(
        connections(&env, &["client"]),
        serde_json::json!([{"interface": "network", "plug": "client:network", "slot": null, "manual": false}])
    );
    env.stop();
    env.start();
    assert_eq!(connections(&env, &[]), serde_json::json!([]));
    // A manual connection comes back and survives a restart too.
    env.pack(["connect", "client:network"]).ok();
    env.stop();
    env.start();
    assert_eq!(
        connections(&env, &[]),
        serde_json::json!([{"interface": "network", "plug": "client:network", "slot": "system:network", "manual": true}])
    );
}

#[test]
fn network_bind_lets_the_host_reach_the_app() {
    require_root!();
    let env = Env::new();
    env.install_base();
    install_app(
        &env,
        "server",
        "plugs:\n  web:\n    interface: network-bind\n",
    );
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = env
        .cmd()
        .args([
            "run",
            "server.sh",
            "-c",
            &format!("echo served | nc -l -p {port}"),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut s) => {
                let mut got = String::new();
                s.read_to_string(&mut got).unwrap();
                break got;
            }
            Err(e) if Instant::now() > deadline => panic!("the app never listened: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert_eq!(got.trim(), "served");
    assert!(child.wait().unwrap().success());
    // Without the plug connected the app's listener is in its own network namespace.
    env.pack(["disconnect", "server:web"]).ok();
    let mut child = env
        .cmd()
        .args(["run", "server.sh", "-c", &format!("nc -l -p {port}")])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn removable_media_opens_and_closes_media() {
    require_root!();
    let env = Env::new();
    env.install_base();
    fs::create_dir_all(env.root.join("media/usb")).unwrap();
    fs::write(env.root.join("media/usb/photo"), "jpeg").unwrap();
    install_app(&env, "viewer", "plugs:\n  removable-media:\n");
    // Privileged: not connected by itself.
    assert_eq!(connections(&env, &[]), serde_json::json!([]));
    sh(&env, "viewer", "cat /media/usb/photo").fails(1);
    env.pack(["connect", "viewer:removable-media"]).ok();
    assert_eq!(
        sh(
            &env,
            "viewer",
            "cat /media/usb/photo; echo new > /media/usb/copy"
        )
        .ok(),
        "jpeg"
    );
    assert_eq!(
        fs::read_to_string(env.root.join("media/usb/copy")).unwrap(),
        "new\n"
    );
    env.pack(["disconnect", "viewer:removable-media"]).ok();
    sh(&env, "viewer", "cat /media/usb/photo").fails(1);
}

#[test]
fn home_shows_only_the_users_visible_files() {
    require_root!();
    let env = Env::new();
    env.install_base();
    let home = env.root.join("home/alice");
    for dir in ["docs", ".ssh", "bin"] {
        fs::create_dir_all(home.join(dir)).unwrap();
    }
    fs::write(home.join("docs/letter"), "dear").unwrap();
    fs::write(home.join("notes"), "n").unwrap();
    fs::write(home.join(".ssh/id"), "secret").unwrap();
    fs::write(home.join(".profile"), "evil").unwrap();
    fs::create_dir_all(env.root.join("etc")).unwrap();
    fs::write(
        env.root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nalice:x:4242:4242::/home/alice:/bin/sh\n",
    )
    .unwrap();
    std::os::unix::fs::chown(&home, Some(4242), Some(4242)).unwrap();
    for entry in ["docs", "docs/letter", "notes"] {
        std::os::unix::fs::chown(home.join(entry), Some(4242), Some(4242)).unwrap();
    }
    install_app(&env, "editor", "plugs:\n  home:\n");
    let as_alice = |script: &str| {
        let mut c = env.cmd();
        c.args(["run", "editor.sh", "-c", script]).current_dir("/");
        // SAFETY: setgroups/setgid/setuid in the child before exec.
        unsafe {
            c.pre_exec(|| {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(4242) != 0
                    || libc::setuid(4242) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let o = c.output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    assert_eq!(as_alice("ls /home/alice").0, Some(1), "not connected yet");
    env.pack(["connect", "editor:home"]).ok();
    assert_eq!(
        as_alice("ls -A /home/alice"),
        (Some(0), "docs\nnotes\n".into())
    );
    assert_eq!(
        as_alice("cat /home/alice/docs/letter; echo re > /home/alice/docs/reply").1,
        "dear"
    );
    assert_eq!(fs::read_to_string(home.join("docs/reply")).unwrap(), "re\n");
    // Dotfiles and ~/bin are never there, and no new entry can be planted at the top.
    assert_ne!(as_alice("cat /home/alice/.ssh/id").0, Some(0));
    assert_ne!(as_alice("echo x > /home/alice/.bashrc").0, Some(0));
    assert!(!home.join(".bashrc").exists());
    assert_ne!(as_alice("ls /home/alice/bin").0, Some(0));
    env.pack(["disconnect", "editor:home"]).ok();
    assert_eq!(as_alice("ls /home/alice").0, Some(1));
}

#[test]
fn content_shares_a_directory_between_two_packs() {
    require_root!();
    let env = Env::new();
    env.install_base();
    install_app(
        &env,
        "provider",
        "slots:\n  share:\n    interface: content\n    write: [$PACK_COMMON/out/deep]\n",
    );
    install_app(
        &env,
        "consumer",
        "plugs:\n  share:\n    interface: content\n    target: $PACK_DATA/in\n    default-provider: provider\n",
    );
    // The provider has not made its directory yet: packd makes it, empty.
    assert_eq!(sh(&env, "consumer", "ls -A $PACK_DATA/in").ok(), "");
    assert!(env.root.join("var/pack/provider/common/out/deep").is_dir());
    sh(&env, "provider", "echo shared > $PACK_COMMON/out/deep/file").ok();
    // The default provider's slot connected by itself.
    assert_eq!(
        connections(&env, &["consumer"]),
        serde_json::json!([{"interface": "content", "plug": "consumer:share", "slot": "provider:share", "manual": false}])
    );
    assert_eq!(
        sh(
            &env,
            "consumer",
            "cat $PACK_DATA/in/file; echo back > $PACK_DATA/in/reply"
        )
        .ok(),
        "shared\n"
    );
    assert_eq!(
        sh(&env, "provider", "cat $PACK_COMMON/out/deep/reply").ok(),
        "back\n"
    );
    // Removing the provider disconnects the consumer cleanly.
    env.pack(["remove", "provider"]).ok();
    assert_eq!(
        connections(&env, &["consumer"]),
        serde_json::json!([{"interface": "content", "plug": "consumer:share", "slot": null, "manual": false}])
    );
    sh(&env, "consumer", "cat $PACK_DATA/in/file").fails(1);
}

#[test]
fn a_gadget_serial_port_exposes_exactly_its_device() {
    require_root!();
    let env = Env::new();
    env.install_base();
    let dev = env.root.join("dev");
    fs::create_dir_all(&dev).unwrap();
    // Stand-ins for two serial ports: FIFOs the test reads.
    for port in ["ttyS8", "ttyS9"] {
        nix::unistd::mkfifo(
            &dev.join(port),
            nix::sys::stat::Mode::from_bits_truncate(0o666),
        )
        .unwrap();
    }
    let gadget = write_pack_dir(
        env.dir.path(),
        "board",
        "name: board\nversion: '1'\ntype: gadget\nslots:\n  uart:\n    interface: serial-port\n    path: /dev/ttyS9\n  gps:\n    interface: serial-port\n    path: /dev/ttyS8\n",
        &[],
    );
    env.install(&env.build(&gadget));
    install_app(
        &env,
        "modem",
        "plugs:\n  tty:\n    interface: serial-port\n",
    );
    assert_eq!(connections(&env, &[]), serde_json::json!([]), "privileged");
    let err = env.pack(["connect", "modem:tty"]).fails(1);
    assert!(
        err.contains("could connect to board:gps, board:uart; name the slot"),
        "{err}"
    );
    env.pack(["connect", "modem:tty", "board:uart"]).ok();
    let fifo = dev.join("ttyS9");
    let reader = std::thread::spawn(move || fs::read_to_string(fifo).unwrap());
    let out = sh(&env, "modem", "ls /dev | grep ttyS; echo AT > /dev/ttyS9").ok();
    assert_eq!(out, "ttyS9\n", "only the connected port is there");
    assert_eq!(reader.join().unwrap(), "AT\n");
    env.pack(["disconnect", "modem:tty"]).ok();
    sh(&env, "modem", "ls /dev/ttyS9").fails(1);
}

#[test]
fn bad_plugs_slots_and_interfaces_get_clear_errors() {
    require_root!();
    let env = Env::new();
    env.install_base();
    let dir = write_pack_dir(
        env.dir.path(),
        "odd",
        "name: odd\nversion: '1'\nbase: busybox\nplugs:\n  x:\n    interface: teleport\napps:\n  sh:\n    command: /bin/sh\n",
        &[],
    );
    // `pack pack` refuses it...
    let err = env.pack([OsStr::new("pack"), dir.as_os_str()]).fails(1);
    assert!(
        err.contains("plug \"x\": unknown interface \"teleport\"; known interfaces: content,"),
        "{err}"
    );
    // ...and so does packd, for an image made by another tool.
    let image = env.dir.path().join("odd.pack");
    let status = std::process::Command::new("mksquashfs")
        .arg(&dir)
        .arg(&image)
        .args(["-noappend", "-all-root", "-quiet", "-no-progress"])
        .status()
        .expect("mksquashfs is installed by make test");
    assert!(status.success());
    let before = env.snapshot();
    let err = env
        .pack([
            OsStr::new("install"),
            image.as_os_str(),
            OsStr::new("--dangerous"),
        ])
        .fails(1);
    assert!(
        err.contains("plug \"x\": unknown interface \"teleport\"; known interfaces: content,"),
        "{err}"
    );
    assert_eq!(env.snapshot(), before, "nothing changed");
    install_app(&env, "app", "plugs:\n  network:\n");
    assert_eq!(
        env.pack(["connect", "app:nope"]).fails(1),
        "error: pack \"app\" has no plug named \"nope\"; its plugs are: network\n"
    );
    assert!(
        env.pack(["connect", "app:network", "system:warp"])
            .fails(1)
            .contains("the system has no slot named \"warp\""),
    );
    assert_eq!(
        env.pack(["connect", "app"]).fails(1),
        "error: \"app\" is not PACK:NAME: the colon is missing\n"
    );
    let err = env.pack(["interface", "teleport"]).fails(1);
    assert!(
        err.starts_with("error: unknown interface \"teleport\""),
        "{err}"
    );
    // The documentation comes from the catalog itself.
    let doc = env.pack(["interface", "home"]).ok();
    assert!(doc.contains("CVE-2024-1724"), "{doc}");
    let all = json(&env.pack(["interfaces", "--json"]).ok());
    assert_eq!(all.as_array().unwrap().len(), 15);
}

/// A pack `name` with the given top-level plugs and two apps: `api`, the probe making one
/// request to packd's API from inside (`pack run NAME.api METHOD PATH [BODY]`), and `sh`.
fn install_api_client(env: &Env, name: &str, plugs: &str) {
    let yaml = format!(
        "name: {name}\nversion: '1'\nbase: busybox\n{plugs}apps:\n  api:\n    command: bin/probe --api\n  sh:\n    command: /bin/sh\n"
    );
    let dir = write_pack_dir(env.dir.path(), name, &yaml, &[]);
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::copy(packd_tests::probe::probe_binary(), dir.join("bin/probe")).unwrap();
    env.install(&env.build(&dir));
}

/// The probe's answer: status code, then the envelope.
fn api_answer(out: &str) -> (String, serde_json::Value) {
    let (status, body) = out.split_once('\n').unwrap_or((out, ""));
    let body = if body.trim().is_empty() {
        serde_json::Value::Null
    } else {
        json(body.trim())
    };
    (status.trim().to_string(), body)
}

#[test]
fn packd_control_opens_the_api_to_a_pack_until_disconnected() {
    require_root!();
    let env = Env::new();
    env.install_base();
    install_api_client(&env, "ctl", "plugs:\n  packd-control:\n");
    // Privileged: not connected by itself, and without it there is no socket inside.
    assert_eq!(
        connections(&env, &["ctl"]),
        serde_json::json!([{"interface": "packd-control", "plug": "ctl:packd-control", "slot": null, "manual": false}])
    );
    let err = env.pack(["run", "ctl.api", "GET", "/v2/packs"]).fails(3);
    assert!(err.contains("/run/packd.socket"), "{err}");

    env.pack(["connect", "ctl:packd-control"]).ok();
    let (status, body) = api_answer(&env.pack(["run", "ctl.api", "GET", "/v2/packs"]).ok());
    assert_eq!(status, "200", "{body}");
    let names: Vec<&str> = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&"ctl") && names.contains(&"busybox"),
        "{body}"
    );

    // An app that is already running loses the API the moment the plug is disconnected.
    let go = env.root.join("var/pack/ctl/common/go");
    let mut running = env
        .cmd()
        .args([
            "run",
            "ctl.sh",
            "-c",
            "while [ ! -e /var/pack/ctl/common/go ]; do sleep 0.05; done; \
             /pack/ctl/current/bin/probe --api GET /v2/packs",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // It is running once its sandbox has the socket: wait for the pack's socket on the host.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env
        .root
        .join("run/packd/api/ctl.control/packd.socket")
        .exists()
    {
        assert!(
            Instant::now() < deadline,
            "the pack's socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    env.pack(["disconnect", "ctl:packd-control"]).ok();
    fs::write(&go, "").unwrap();
    let mut out = String::new();
    running
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(running.wait().unwrap().success());
    let (status, body) = api_answer(&out);
    assert_eq!(status, "403", "{body}");
    assert!(
        body["result"]["message"]
            .as_str()
            .unwrap()
            .contains("pack connect ctl:packd-control"),
        "{body}"
    );
    // And later launches get no socket at all.
    env.pack(["run", "ctl.api", "GET", "/v2/packs"]).fails(3);
}

#[test]
fn shutdown_asks_packd_for_a_reboot_and_nothing_else() {
    require_root!();
    let mut env = Env::stopped();
    // The system command is a script that writes down what it was asked to do.
    let actions = env.dir.path().join("actions");
    let script = env.dir.path().join("system-command");
    fs::write(
        &script,
        format!("#!/bin/sh\necho \"$1\" >> {}\n", actions.display()),
    )
    .unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    env.set_daemon_env("PACKD_SYSTEM_COMMAND", script.to_str().unwrap());
    env.start();
    env.install_base();
    install_api_client(&env, "sd", "plugs:\n  shutdown:\n");
    // A service, to see it stopped before the system goes down.
    let dir = write_pack_dir(
        env.dir.path(),
        "daemon",
        "name: daemon\nversion: '1'\nbase: busybox\napps:\n  svc:\n    command: bin/svc\n    daemon: simple\n",
        &[("bin/svc", "#!/bin/sh\nexec sleep 1000\n")],
    );
    env.install(&env.build(&dir));
    let service_state =
        || json(&env.pack(["services", "--json", "daemon"]).ok())[0]["active"].clone();
    assert_eq!(service_state(), "active");
    env.pack(["run", "sd.api", "GET", "/v2/packs"]).fails(3);
    env.pack(["connect", "sd:shutdown"]).ok();

    let reboot = r#"{"action": "reboot"}"#;
    let (status, body) = api_answer(
        &env.pack(["run", "sd.api", "POST", "/v2/system", reboot])
            .ok(),
    );
    assert_eq!(status, "200", "{body}");
    // Carried out on packd's own time: the services stop, then the command runs.
    let deadline = Instant::now() + Duration::from_secs(15);
    while fs::read_to_string(&actions).unwrap_or_default() != "reboot\n" {
        assert!(Instant::now() < deadline, "the reboot command never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(service_state(), "inactive");
    // Nothing else answers on that socket.
    let (status, body) = api_answer(&env.pack(["run", "sd.api", "GET", "/v2/packs"]).ok());
    assert_eq!(status, "403", "{body}");
    let (status, _) = api_answer(
        &env.pack([
            "run",
            "sd.api",
            "POST",
            "/v2/connections",
            r#"{"action": "connect", "plug": "sd:network"}"#,
        ])
        .ok(),
    );
    assert_eq!(status, "403");
    let (status, body) = api_answer(
        &env.pack([
            "run",
            "sd.api",
            "POST",
            "/v2/system",
            r#"{"action": "explode"}"#,
        ])
        .ok(),
    );
    assert_eq!(status, "400", "{body}");
    assert_eq!(fs::read_to_string(&actions).unwrap(), "reboot\n");

    // The pack's socket answers its sandboxes only, not whoever reaches the file (root here).
    let direct = std::process::Command::new(packd_tests::probe::probe_binary())
        .args(["--api", "POST", "/v2/system", reboot])
        .env(
            "PACKD_SOCKET",
            env.root.join("run/packd/api/sd.shutdown/packd.socket"),
        )
        .output()
        .unwrap();
    let (status, body) = api_answer(&String::from_utf8_lossy(&direct.stdout));
    assert_eq!(status, "403", "{body}");
    assert!(
        body.to_string().contains("answers the apps of sd only"),
        "{body}"
    );
    assert_eq!(fs::read_to_string(&actions).unwrap(), "reboot\n");

    // On the main socket: refused to an ordinary user, done for root.
    let host_probe = |nobody: bool| {
        let mut c = std::process::Command::new(packd_tests::probe::probe_binary());
        c.args(["--api", "POST", "/v2/system", r#"{"action": "power-off"}"#])
            .env("PACKD_SOCKET", &env.socket);
        if nobody {
            packd_tests::as_nobody(&mut c);
        }
        let o = c.output().unwrap();
        api_answer(&String::from_utf8_lossy(&o.stdout))
    };
    assert_eq!(host_probe(true).0, "403");
    assert_eq!(fs::read_to_string(&actions).unwrap(), "reboot\n");
    assert_eq!(host_probe(false).0, "200");
    let deadline = Instant::now() + Duration::from_secs(15);
    while fs::read_to_string(&actions).unwrap_or_default() != "reboot\npower-off\n" {
        assert!(Instant::now() < deadline, "the power-off command never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn system_observe_shows_the_host_processes_only_while_connected() {
    require_root!();
    let env = Env::new();
    env.install_base();
    install_app(&env, "watch", "plugs:\n  system-observe:\n");
    let me = std::process::id();
    let sees_me = || {
        sh(
            &env,
            "watch",
            &format!("test -d /proc/{me} && echo yes || echo no"),
        )
        .ok()
        .trim()
            == "yes"
    };
    // Its own pid namespace: the test process is not there.
    assert!(!sees_me());
    env.pack(["connect", "watch:system-observe"]).ok();
    assert!(sees_me());
    // Seeing is not touching: signals to a host process stay denied.
    sh(&env, "watch", &format!("kill -0 {me}")).fails(1);
    env.pack(["disconnect", "watch:system-observe"]).ok();
    assert!(!sees_me());
}

#[test]
fn a_content_provider_cannot_redirect_the_bind_with_a_symlink() {
    require_root!();
    let env = Env::new();
    env.install_base();
    install_app(
        &env,
        "sneaky",
        "slots:\n  share:\n    interface: content\n    write: [$PACK_COMMON/link/etc]\n",
    );
    // The provider (root in its sandbox) plants a symlink to the host's /etc on the path.
    sh(&env, "sneaky", "ln -s / $PACK_COMMON/link").ok();
    install_app(
        &env,
        "victim",
        "plugs:\n  share:\n    interface: content\n    target: $PACK_DATA/in\n    default-provider: sneaky\n",
    );
    let before = fs::read_dir("/etc").unwrap().count();
    let err = sh(&env, "victim", "ls $PACK_DATA/in").fails(125);
    assert!(err.contains("var/pack/sneaky/common/link"), "{err}");
    // Nothing was made through it, and the consumer saw nothing of the host.
    assert_eq!(fs::read_dir("/etc").unwrap().count(), before);
}

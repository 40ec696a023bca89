//! `probe`: run inside a packd sandbox, it tries every escape it knows and prints one JSON
//! document: `{"uid": .., "checks": [{"name", "blocked", "detail"}], ..}`. Every check is a real
//! attempt whose success would be an escape, and `blocked` comes from what actually happened.
//! The probe always exits 0: the test decides what a result means.
//!
//! `--outside` skips the checks that would change the host (mounts, signals to pid 1, ptrace of
//! pid 1, ...), so the same binary can run unconfined to show the checks can fail.
//!
//! Single-threaded on purpose (it forks); risky attempts run in forked children.

mod files;
mod kernel;
mod net;
mod procs;
mod util;

use std::cell::RefCell;

use util::Outcome;

/// The command line.
#[derive(Debug, Default)]
pub struct Args {
    pub host_canaries: Vec<String>,
    pub host_pid: Option<i32>,
    pub port: Option<u16>,
    pub sockets: Vec<String>,
    pub other_data: Option<String>,
    pub tasks: Option<u32>,
    pub outside: bool,
}

const USAGE: &str = "usage: probe [--host-canary PATH]... [--host-pid PID] [--port N] \
                     [--socket PATH]... [--other-data PATH] [--tasks N] [--outside] [--list]";

fn parse_args() -> Result<(Args, bool), String> {
    let mut args = Args::default();
    let mut list = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--host-canary" => args.host_canaries.push(value(&a)?),
            "--host-pid" => {
                args.host_pid = Some(value(&a)?.parse().map_err(|e| format!("{a}: {e}"))?)
            }
            "--port" => args.port = Some(value(&a)?.parse().map_err(|e| format!("{a}: {e}"))?),
            "--socket" => args.sockets.push(value(&a)?),
            "--other-data" => args.other_data = Some(value(&a)?),
            "--tasks" => args.tasks = Some(value(&a)?.parse().map_err(|e| format!("{a}: {e}"))?),
            "--outside" => args.outside = true,
            "--list" => list = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok((args, list))
}

/// Whether a check may run outside a sandbox.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Where {
    /// Harmless anywhere: reads, or attempts with arguments that change nothing.
    Anywhere,
    /// Would change the host if it succeeded there: only inside.
    InsideOnly,
}

type CheckFn = fn(&Args) -> Outcome;

/// Every check, in the order they run. The fork and memory checks come late so that the
/// children they leave behind (none, normally) cannot disturb the others; unmounting and
/// pivoting come last.
pub const CHECKS: &[(&str, Where, CheckFn)] = {
    use Where::{Anywhere as A, InsideOnly as I};
    &[
        // What the sandbox lets the app see of the host's files.
        ("read-host-canary", A, files::read_host_canary),
        ("read-host-shadow", A, files::read_host_shadow),
        ("proc-root-canary", A, files::proc_root_canary),
        ("tmp-private", A, files::tmp_private),
        // What it may write.
        ("write-own-pack", A, files::write_own_pack),
        ("write-base", A, files::write_base),
        ("write-other-pack-data", A, files::write_other_data),
        ("other-packs-visible", A, files::other_packs_visible),
        ("chown-to-other-user", A, files::chown_other),
        ("dac-override", A, files::dac_override),
        ("landlock-fs-enforced", A, files::landlock_fs),
        ("proc-sys-writable", A, files::proc_sys_writable),
        ("sys-writable", A, files::sys_writable),
        ("proc-masked", A, files::proc_masked),
        // Devices.
        ("open-host-devices", A, files::open_devices),
        ("mknod-devices", A, files::mknod_devices),
        ("dev-nodes", A, files::dev_nodes),
        // Mounts as the app sees them.
        ("mounts-nosuid", A, files::mounts_nosuid),
        ("mounts-expected", A, files::mounts_expected),
        // Descriptors and working directory (runc CVE-2024-21626).
        ("leaked-fds", A, files::leaked_fds),
        ("fd-links-inside", A, files::fd_links_inside),
        ("cwd-inside", A, files::cwd_inside),
        // Processes.
        ("host-pid-visible", A, procs::host_pid_visible),
        ("process-count", A, procs::process_count),
        ("pid1-is-sandbox-init", A, procs::pid1_is_init),
        ("proc1-exe-write", A, procs::proc_exe_write),
        ("proc1-environ-mem", A, procs::proc1_environ_mem),
        ("signal-init", A, procs::signal_init),
        ("ptrace-attach-init", I, procs::ptrace_attach_init),
        ("ptrace-traceme", A, procs::ptrace_traceme),
        ("process-vm-readv-init", A, procs::process_vm_readv_init),
        ("pidfd-getfd-init", A, procs::pidfd_getfd_init),
        // Identity and privileges.
        ("capabilities", A, procs::capabilities),
        ("no-new-privs", A, procs::no_new_privs),
        ("seccomp-filter", A, procs::seccomp_mode),
        // Namespaces (bubblewrap CVE-2020-5291).
        ("unshare-user", A, procs::unshare_user),
        ("unshare-mount", A, procs::unshare_mount),
        ("clone-namespaces", A, procs::clone_namespaces),
        ("clone3", A, procs::clone3),
        ("setns-init-mnt", A, procs::setns_init),
        // cgroups.
        ("cgroup-procs-writable", A, procs::cgroup_procs_writable),
        ("cgroup-move-self", I, procs::cgroup_move_self),
        ("mount-cgroup2", I, kernel::mount_cgroup2),
        // The mount family (Flatpak CVE-2021-41133).
        ("mount-tmpfs", I, kernel::mount_tmpfs),
        ("chroot", A, kernel::chroot),
        ("open-tree", A, kernel::open_tree),
        ("move-mount", I, kernel::move_mount),
        ("fsopen", A, kernel::fsopen),
        ("fsconfig", A, kernel::fsconfig),
        ("fsmount", A, kernel::fsmount),
        ("fspick", A, kernel::fspick),
        ("mount-setattr", I, kernel::mount_setattr),
        // Terminal injection (CVE-2019-7303, CVE-2023-1523).
        ("tiocsti", A, kernel::tiocsti),
        ("tiocsti-high-bits", A, kernel::tiocsti_high_bits),
        ("tioclinux", A, kernel::tioclinux),
        // Kernel surfaces.
        ("keyctl", A, kernel::keyctl),
        ("add-key", A, kernel::add_key),
        ("bpf", A, kernel::bpf),
        ("perf-event-open", A, kernel::perf_event_open),
        ("userfaultfd", A, kernel::userfaultfd),
        ("io-uring-setup", A, kernel::io_uring_setup),
        ("init-module", A, kernel::init_module),
        ("kexec-load", A, kernel::kexec_load),
        ("reboot", A, kernel::reboot),
        ("settimeofday", A, kernel::settimeofday),
        ("swapon", A, kernel::swapon),
        ("acct", A, kernel::acct),
        ("open-by-handle-at", A, kernel::open_by_handle_at),
        ("syslog", A, kernel::syslog),
        ("iopl", A, kernel::iopl),
        ("sethostname", I, kernel::sethostname),
        // Sockets and the network.
        ("packet-socket", A, net::packet_socket),
        ("raw-ip-socket", A, net::raw_ip_socket),
        ("netlink-sockets", A, net::netlink_sockets),
        ("connect-host-listener", A, net::connect_host_listener),
        ("bind-tcp", A, net::bind_tcp),
        ("proc-net-dev", A, net::proc_net_dev),
        ("landlock-tcp-connect", A, net::landlock_tcp_connect),
        ("packd-socket", A, net::packd_socket),
        // Resource limits, in children.
        ("fork-limit", A, procs::fork_limit),
        ("memory-limit", A, procs::memory_limit),
        // Last: were these allowed, they would take the file system away from the checks
        // after them.
        ("umount", I, kernel::umount),
        ("pivot-root", I, kernel::pivot_root),
    ]
};

thread_local! {
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn run_check(f: CheckFn, args: &Args) -> Outcome {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(args))) {
        Ok(o) => o,
        Err(_) => Outcome {
            blocked: false,
            detail: format!(
                "the check panicked: {}",
                PANIC.with(|p| p.borrow_mut().take()).unwrap_or_default()
            ),
        },
    }
}

/// `probe --api METHOD PATH [BODY]`: one request to packd's API at `$PACKD_SOCKET` (or
/// `/run/packd.socket`); prints the status code on the first line and the body after it. Exits
/// 3 when the socket cannot be reached.
fn api(args: &[String]) -> i32 {
    use std::io::{Read, Write};
    let [method, path, rest @ ..] = args else {
        eprintln!("usage: probe --api METHOD PATH [BODY]");
        return 2;
    };
    let body = rest.first().map(String::as_str).unwrap_or("");
    let socket = std::env::var("PACKD_SOCKET").unwrap_or_else(|_| "/run/packd.socket".into());
    let mut s = match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot connect to {socket}: {e}");
            return 3;
        }
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: packd\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut answer = String::new();
    if let Err(e) = s
        .write_all(request.as_bytes())
        .and_then(|()| s.read_to_string(&mut answer))
    {
        eprintln!("cannot talk to {socket}: {e}");
        return 3;
    }
    let status = answer.split(' ').nth(1).unwrap_or("?");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    println!("{status}\n{body}");
    0
}

/// `probe --notify MESSAGE`: one datagram to `$NOTIFY_SOCKET` (as `systemd-notify`).
fn notify(message: &str) -> i32 {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
        eprintln!("NOTIFY_SOCKET is not set");
        return 3;
    };
    let sent = std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.send_to(message.as_bytes(), &path));
    match sent {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("cannot notify {path}: {e}");
            3
        }
    }
}

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    match all.first().map(String::as_str) {
        Some("--api") => std::process::exit(api(&all[1..])),
        Some("--notify") => std::process::exit(notify(all.get(1).map_or("READY=1", |m| m))),
        _ => {}
    }
    let (args, list) = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    if list {
        for (name, _, _) in CHECKS {
            println!("{name}");
        }
        return;
    }
    // A panicking check is reported in its detail, not on stderr.
    std::panic::set_hook(Box::new(|info| {
        PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
    }));
    // A last resort against a check that hangs: the report is lost, but the test is not stuck.
    // SAFETY: alarm has no preconditions.
    unsafe { libc::alarm(300) };

    let mut checks = Vec::new();
    let mut skipped = Vec::new();
    for (name, place, f) in CHECKS {
        if args.outside && *place == Where::InsideOnly {
            skipped.push(serde_json::Value::from(*name));
            continue;
        }
        let o = run_check(*f, &args);
        checks.push(serde_json::json!({
            "name": name,
            "blocked": o.blocked,
            "detail": o.detail,
        }));
    }
    // SAFETY: these getters have no preconditions.
    let (uid, gid, pid) = unsafe { (libc::getuid(), libc::getgid(), libc::getpid()) };
    let report = serde_json::json!({
        "uid": uid,
        "gid": gid,
        "pid": pid,
        "outside": args.outside,
        "checks": checks,
        "skipped": skipped,
    });
    let text =
        serde_json::to_string_pretty(&report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    println!("{text}");
}

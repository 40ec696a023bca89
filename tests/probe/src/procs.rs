//! Processes, privileges, namespaces, cgroups and resource limits.

use std::time::Duration;

use crate::Args;
use crate::util::{
    Child, Outcome, Parts, add_fails, add_refused, call_in_child, close, en, errno, in_child, open,
    read_some, read_text, readlink, ret, show,
};

fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

fn comm(pid: i32) -> String {
    read_text(&format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|e| format!("<{}>", en(e)))
}

pub fn host_pid_visible(args: &Args) -> Outcome {
    let mut parts = Parts::new();
    let Some(pid) = args.host_pid else {
        return parts.outcome();
    };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let r = ret(unsafe { libc::kill(pid, 0) } as i64);
    parts.add(
        r == Err(libc::ESRCH),
        format!("kill({pid}, 0): {}", show(&r)),
    );
    match crate::util::lstat(&format!("/proc/{pid}")) {
        Ok(_) => parts.add(false, format!("/proc/{pid} exists (comm {:?})", comm(pid))),
        Err(e) => parts.add(true, format!("/proc/{pid}: {}", en(e))),
    }
    parts.outcome()
}

/// The ppid and command of a visible process.
fn stat_of(pid: i32) -> Option<(i32, String)> {
    let s = read_text(&format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let name = s[open + 1..close].to_string();
    let ppid = s[close + 2..].split(' ').nth(1)?.parse().ok()?;
    Some((ppid, name))
}

/// Only the sandbox's init, this probe and its own children are visible.
pub fn process_count(_: &Args) -> Outcome {
    let me = getpid();
    let mut parts = Parts::new();
    let pids: Vec<i32> = match std::fs::read_dir("/proc") {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
            .collect(),
        Err(e) => {
            parts.add(
                false,
                format!("list /proc: {}", en(e.raw_os_error().unwrap_or(0))),
            );
            return parts.outcome();
        }
    };
    let mut foreign = Vec::new();
    let mut all = Vec::new();
    for pid in &pids {
        let (ppid, name) = stat_of(*pid).unwrap_or((-1, "?".into()));
        all.push(format!("{pid}({name})"));
        if *pid != 1 && *pid != me && ppid != me {
            foreign.push(*pid);
        }
    }
    all.truncate(40);
    parts.add(
        foreign.is_empty(),
        format!(
            "{} processes visible, {} besides pid 1, this probe and its children: {}",
            pids.len(),
            foreign.len(),
            all.join(" ")
        ),
    );
    parts.outcome()
}

/// Pid 1 is the sandbox's init (pack-confine) and the probe is pid 2, its child.
pub fn pid1_is_init(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let me = getpid();
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    parts.add(me == 2, format!("this probe is pid {me}"));
    parts.add(parent == 1, format!("its parent is pid {parent}"));
    let c = comm(1);
    parts.add(
        c == "pack-confine",
        format!(
            "pid 1 is {c:?} (exe: {})",
            readlink("/proc/1/exe").unwrap_or_else(en)
        ),
    );
    parts.outcome()
}

/// runc CVE-2019-5736: the init's binary (the host's helper) cannot be opened for writing, nor
/// reached at all (the init is not dumpable).
pub fn proc_exe_write(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    for (p, flags, what) in [
        ("/proc/self/exe", libc::O_WRONLY, "for writing"),
        ("/proc/1/exe", libc::O_WRONLY, "for writing"),
        ("/proc/1/exe", libc::O_RDONLY, "for reading"),
        ("/proc/1/exe", libc::O_PATH, "as O_PATH"),
    ] {
        add_fails(
            &mut parts,
            &format!("open {p} {what}"),
            crate::util::try_open(p, flags),
        );
    }
    match readlink("/proc/1/exe") {
        Ok(l) => parts.add(false, format!("readlink /proc/1/exe: {l}")),
        Err(e) => parts.add(true, format!("readlink /proc/1/exe: {}", en(e))),
    }
    parts.outcome()
}

pub fn proc1_environ_mem(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    for p in ["/proc/1/environ", "/proc/1/maps", "/proc/1/auxv"] {
        match read_some(p, 64) {
            Ok(b) => parts.add(false, format!("read {p}: {} bytes", b.len())),
            Err(e) => parts.add(true, format!("read {p}: {}", en(e))),
        }
    }
    add_fails(
        &mut parts,
        "open /proc/1/mem",
        crate::util::try_open("/proc/1/mem", libc::O_RDONLY),
    );
    // The init's descriptors (runc CVE-2024-21626 through the init): listing their numbers is
    // allowed to the same uid (the directory belongs to root), following them must not be.
    let mut fds: Vec<String> = match std::fs::read_dir("/proc/1/fd") {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => {
            parts.note(format!(
                "list /proc/1/fd: {}",
                en(e.raw_os_error().unwrap_or(0))
            ));
            Vec::new()
        }
    };
    if !fds.is_empty() {
        parts.note(format!("/proc/1/fd lists descriptors {fds:?}"));
    }
    // Descriptors 0-2 and the usual status/spec ones even when the listing is refused.
    fds.extend(["0", "1", "2", "3", "4"].map(String::from));
    fds.sort();
    fds.dedup();
    for fd in fds {
        let p = format!("/proc/1/fd/{fd}");
        match readlink(&p) {
            Ok(l) => parts.add(false, format!("readlink {p}: {l}")),
            Err(e) => parts.add(true, format!("readlink {p}: {}", en(e))),
        }
        add_fails(
            &mut parts,
            &format!("open {p}"),
            crate::util::try_open(&p, libc::O_PATH),
        );
    }
    for p in ["/proc/1/cwd", "/proc/1/root"] {
        match std::fs::read_dir(p) {
            Ok(_) => parts.add(false, format!("list {p}: allowed")),
            Err(e) => parts.add(
                true,
                format!("list {p}: {}", en(e.raw_os_error().unwrap_or(0))),
            ),
        }
    }
    parts.outcome()
}

/// Signals to the init (outside the app's Landlock domain) are refused. Outside a sandbox only
/// the permission check (signal 0) is made.
pub fn signal_init(args: &Args) -> Outcome {
    let mut parts = Parts::new();
    // SAFETY: signal 0 sends nothing.
    let r = ret(unsafe { libc::kill(1, 0) } as i64);
    add_refused(&mut parts, "kill(1, 0)", r);
    if args.outside {
        parts.note("kill(1, SIGTERM) not sent outside a sandbox");
    } else {
        // Were it delivered, the init would forward SIGTERM to this probe: ignore it meanwhile.
        // SAFETY: plain signal disposition changes.
        let old = unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
        // SAFETY: kill with constant arguments.
        let r = ret(unsafe { libc::kill(1, libc::SIGTERM) } as i64);
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: restoring the disposition.
        unsafe { libc::signal(libc::SIGTERM, old) };
        add_refused(&mut parts, "kill(1, SIGTERM)", r);
        // SAFETY: kill with constant arguments.
        let r = ret(unsafe { libc::kill(-1, 0) } as i64);
        parts.note(format!("kill(-1, 0): {}", show(&r)));
    }
    parts.outcome()
}

pub fn ptrace_attach_init(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    for (req, name) in [
        (libc::PTRACE_ATTACH, "PTRACE_ATTACH"),
        (libc::PTRACE_SEIZE, "PTRACE_SEIZE"),
    ] {
        // SAFETY: ptrace with integer arguments.
        let r = ret(unsafe { libc::ptrace(req, 1, 0, 0) });
        if r.is_ok() {
            undo_attach(req == libc::PTRACE_SEIZE);
        }
        add_refused(&mut parts, &format!("ptrace({name}, 1)"), r);
    }
    parts.outcome()
}

/// Undoes an attach to pid 1 that should never have worked, without leaving it stopped: wait
/// for the attach stop (interrupting a seized tracee first), detach, and continue it.
fn undo_attach(seized: bool) {
    // SAFETY: ptrace and waitpid on a process this probe traces.
    unsafe {
        if seized {
            libc::ptrace(libc::PTRACE_INTERRUPT, 1, 0, 0);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut status = 0;
        while libc::waitpid(1, &mut status, libc::__WALL | libc::WNOHANG) == 0
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        libc::ptrace(libc::PTRACE_DETACH, 1, 0, 0);
        libc::kill(1, libc::SIGCONT);
    }
}

pub fn ptrace_traceme(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let r = call_in_child(|| {
        // SAFETY: ptrace with integer arguments, in a throwaway child.
        unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) }
    });
    add_refused(&mut parts, "ptrace(PTRACE_TRACEME) in a child", r);
    parts.outcome()
}

pub fn process_vm_readv_init(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let mut buf = [0u8; 8];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Any address: the permission check comes before the memory is looked at.
    let remote = libc::iovec {
        iov_base: 0x1_0000 as *mut libc::c_void,
        iov_len: 8,
    };
    // SAFETY: valid iovecs for our side; the remote side is only read by the kernel.
    let r = ret(unsafe { libc::process_vm_readv(1, &local, 1, &remote, 1, 0) } as i64);
    add_refused(&mut parts, "process_vm_readv(1)", r);
    // SAFETY: as above.
    let r = ret(unsafe { libc::process_vm_writev(1, &local, 1, &remote, 1, 0) } as i64);
    add_refused(&mut parts, "process_vm_writev(1)", r);
    parts.outcome()
}

pub fn pidfd_getfd_init(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    // SAFETY: pidfd_open with integer arguments.
    match ret(unsafe { libc::syscall(libc::SYS_pidfd_open, 1, 0) }) {
        Ok(pidfd) => {
            // SAFETY: pidfd_getfd with integer arguments.
            let r = ret(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, 0, 0) });
            if let Ok(fd) = r {
                close(fd);
            }
            add_refused(&mut parts, "pidfd_getfd(pidfd of 1, fd 0)", r);
            close(pidfd);
        }
        Err(e) => parts.add(true, format!("pidfd_open(1): {}", en(e))),
    }
    parts.outcome()
}

fn status_field(status: &str, key: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
}

pub fn capabilities(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    match read_text("/proc/self/status") {
        Ok(s) => {
            for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
                let v = status_field(&s, key).unwrap_or_else(|| "<missing>".into());
                parts.add(v == "0000000000000000", format!("{key} {v}"));
            }
        }
        Err(e) => parts.add(false, format!("read /proc/self/status: {}", en(e))),
    }
    parts.outcome()
}

pub fn no_new_privs(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    match read_text("/proc/self/status") {
        Ok(s) => {
            let v = status_field(&s, "NoNewPrivs").unwrap_or_else(|| "<missing>".into());
            parts.add(v == "1", format!("NoNewPrivs {v}"));
        }
        Err(e) => parts.add(false, format!("read /proc/self/status: {}", en(e))),
    }
    // SAFETY: prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
    parts.add(r == 1, format!("PR_GET_NO_NEW_PRIVS {r}"));
    parts.outcome()
}

pub fn seccomp_mode(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    match read_text("/proc/self/status") {
        Ok(s) => {
            let v = status_field(&s, "Seccomp").unwrap_or_else(|| "<missing>".into());
            parts.add(v == "2", format!("Seccomp {v} (2 = filter)"));
            if let Some(n) = status_field(&s, "Seccomp_filters") {
                parts.note(format!("Seccomp_filters {n}"));
            }
        }
        Err(e) => parts.add(false, format!("read /proc/self/status: {}", en(e))),
    }
    parts.outcome()
}

fn unshare_in_child(parts: &mut Parts, flag: i32, name: &str) {
    let r = call_in_child(|| {
        // SAFETY: unshare in a throwaway child.
        unsafe { libc::unshare(flag) as i64 }
    });
    add_fails(parts, &format!("unshare({name}) in a child"), r);
}

pub fn unshare_user(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    unshare_in_child(&mut parts, libc::CLONE_NEWUSER, "CLONE_NEWUSER");
    unshare_in_child(
        &mut parts,
        libc::CLONE_NEWUSER | libc::CLONE_NEWNS,
        "CLONE_NEWUSER|CLONE_NEWNS",
    );
    parts.outcome()
}

pub fn unshare_mount(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    for (flag, name) in [
        (libc::CLONE_NEWNS, "CLONE_NEWNS"),
        (libc::CLONE_NEWNET, "CLONE_NEWNET"),
        (libc::CLONE_NEWPID, "CLONE_NEWPID"),
        (libc::CLONE_NEWIPC, "CLONE_NEWIPC"),
        (libc::CLONE_NEWUTS, "CLONE_NEWUTS"),
        (libc::CLONE_NEWCGROUP, "CLONE_NEWCGROUP"),
        (0x80, "CLONE_NEWTIME"),
    ] {
        unshare_in_child(&mut parts, flag, name);
    }
    parts.outcome()
}

/// clone(2) with namespace flags: the grandchild, if one is made, exits at once.
pub fn clone_namespaces(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    for (flag, name) in [
        (libc::CLONE_NEWUSER, "CLONE_NEWUSER"),
        (libc::CLONE_NEWNS, "CLONE_NEWNS"),
        (libc::CLONE_NEWPID, "CLONE_NEWPID"),
        (libc::CLONE_NEWNET, "CLONE_NEWNET"),
    ] {
        let r = call_in_child(|| {
            let flags = (flag | libc::SIGCHLD) as libc::c_ulong;
            // SAFETY: a fork-like clone (no CLONE_VM, no new stack): the child continues on a
            // copy of this stack and leaves at once.
            let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
            if pid == 0 {
                // SAFETY: leaving the grandchild.
                unsafe { libc::_exit(0) };
            }
            if pid > 0 {
                // SAFETY: reaping our child.
                unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), 0) };
            }
            pid
        });
        add_fails(&mut parts, &format!("clone({name})"), r);
    }
    parts.outcome()
}

/// clone3 must be answered ENOSYS (seccomp cannot read its flags).
pub fn clone3(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    for (flags, name) in [
        (
            (libc::CLONE_NEWUSER | libc::CLONE_NEWNS) as u64,
            "CLONE_NEWUSER|CLONE_NEWNS",
        ),
        (0u64, "no flags"),
    ] {
        let r = call_in_child(|| {
            // struct clone_args (version 0, 64 bytes): flags, pidfd, child_tid, parent_tid,
            // exit_signal, stack, stack_size, tls.
            let args: [u64; 8] = [flags, 0, 0, 0, libc::SIGCHLD as u64, 0, 0, 0];
            // SAFETY: a fork-like clone3 (no CLONE_VM, no stack): the child leaves at once.
            let pid = unsafe {
                libc::syscall(
                    libc::SYS_clone3,
                    args.as_ptr(),
                    std::mem::size_of_val(&args),
                )
            };
            if pid == 0 {
                // SAFETY: leaving the grandchild.
                unsafe { libc::_exit(0) };
            }
            if pid > 0 {
                // SAFETY: reaping our child.
                unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), 0) };
            }
            pid
        });
        let expected = r == Err(libc::ENOSYS);
        parts.add(
            r.is_err(),
            format!(
                "clone3({name}): {}{}",
                show(&r),
                if r.is_err() && !expected {
                    " (expected ENOSYS)"
                } else {
                    ""
                }
            ),
        );
    }
    parts.outcome()
}

/// bubblewrap CVE-2020-5291 and friends: joining the init's (the host side's) namespaces.
pub fn setns_init(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    for (ns, flag) in [
        ("mnt", libc::CLONE_NEWNS),
        ("net", libc::CLONE_NEWNET),
        ("user", libc::CLONE_NEWUSER),
        ("cgroup", libc::CLONE_NEWCGROUP),
    ] {
        let p = format!("/proc/1/ns/{ns}");
        match open(&p, libc::O_RDONLY, 0) {
            Ok(fd) => {
                let r = call_in_child(|| {
                    // SAFETY: setns in a throwaway child.
                    unsafe { libc::setns(fd as i32, flag) as i64 }
                });
                close(fd);
                add_fails(&mut parts, &format!("setns({p}) in a child"), r);
            }
            Err(e) => parts.add(true, format!("open {p}: {}", en(e))),
        }
    }
    parts.outcome()
}

/// Every cgroup.procs file reachable under /sys/fs/cgroup, with own cgroups first.
fn cgroup_procs_files() -> (Vec<String>, String) {
    let mut files = Vec::new();
    let own = read_text("/proc/self/cgroup").unwrap_or_else(|e| format!("<{}>", en(e)));
    let tops: Vec<String> = match std::fs::read_dir("/sys/fs/cgroup") {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    for line in own.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let dir = if ctrl.is_empty() {
            "unified".to_string()
        } else {
            ctrl.trim_start_matches("name=").to_string()
        };
        for top in [
            format!("/sys/fs/cgroup/{dir}"),
            "/sys/fs/cgroup".to_string(),
        ] {
            files.push(format!("{top}{path}/cgroup.procs"));
        }
    }
    files.push("/sys/fs/cgroup/cgroup.procs".into());
    for t in &tops {
        files.push(format!("/sys/fs/cgroup/{t}/cgroup.procs"));
        files.push(format!("/sys/fs/cgroup/{t}/tasks"));
    }
    let mut seen = std::collections::BTreeSet::new();
    files.retain(|f| seen.insert(f.clone()) && crate::util::lstat(f).is_ok());
    (
        files,
        format!(
            "/proc/self/cgroup: {:?}; /sys/fs/cgroup holds {tops:?}",
            own.trim()
        ),
    )
}

pub fn cgroup_procs_writable(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let (files, info) = cgroup_procs_files();
    parts.note(info);
    if files.is_empty() {
        parts.add(true, "no cgroup.procs or tasks file is reachable");
    }
    for f in files {
        add_fails(
            &mut parts,
            &format!("open {f} for writing"),
            crate::util::try_open(&f, libc::O_WRONLY),
        );
    }
    parts.outcome()
}

/// Moving itself to another cgroup (out of its limits): only inside a sandbox.
pub fn cgroup_move_self(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let (files, info) = cgroup_procs_files();
    parts.note(info);
    if files.is_empty() {
        parts.add(true, "no cgroup.procs or tasks file to write to");
    }
    let me = format!("{}\n", getpid());
    for f in files {
        let r = match open(&f, libc::O_WRONLY, 0) {
            Ok(fd) => {
                // SAFETY: writing our own buffer to our descriptor.
                let n = unsafe { libc::write(fd as i32, me.as_ptr().cast(), me.len()) };
                let e = errno();
                close(fd);
                if n < 0 { Err(e) } else { Ok(n as i64) }
            }
            Err(e) => Err(e),
        };
        add_fails(&mut parts, &format!("write own pid to {f}"), r);
    }
    parts.outcome()
}

/// Fork sleeping children until fork fails: the task limit must stop it with EAGAIN.
pub fn fork_limit(args: &Args) -> Outcome {
    const MAX: usize = 200;
    let limit = args.tasks.map(|t| t as usize).unwrap_or(MAX);
    let mut children = Vec::new();
    let mut failure = None;
    while children.len() < MAX.max(limit + 8) {
        // SAFETY: single-threaded; the child only sleeps.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: the child dies with the probe and otherwise sleeps until killed.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                loop {
                    libc::pause();
                }
            }
        }
        if pid < 0 {
            failure = Some(errno());
            break;
        }
        children.push(pid);
    }
    let n = children.len();
    for pid in &children {
        // SAFETY: killing our own children.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    for pid in &children {
        // SAFETY: reaping our own children.
        unsafe { libc::waitpid(*pid, std::ptr::null_mut(), 0) };
    }
    let mut parts = Parts::new();
    match failure {
        Some(e) => parts.add(
            e == libc::EAGAIN && n < limit,
            format!(
                "fork failed with {} after {n} children (task limit {limit})",
                en(e)
            ),
        ),
        None => parts.add(false, format!("{n} children forked, and fork never failed")),
    }
    parts.outcome()
}

/// A child allocates and touches 256 MiB: the memory limit must kill it or fail the allocation.
pub fn memory_limit(_: &Args) -> Outcome {
    const SIZE: usize = 256 << 20;
    let child = in_child(Duration::from_secs(120), || {
        // SAFETY: an anonymous private mapping of our own.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return 3;
        }
        let base = p.cast::<u8>();
        for off in (0..SIZE).step_by(4096) {
            // SAFETY: inside the mapping made above.
            unsafe { std::ptr::write_volatile(base.add(off), 1) };
        }
        0
    });
    let mut parts = Parts::new();
    let blocked = matches!(child, Child::Signaled(libc::SIGKILL) | Child::Exited(3));
    parts.add(
        blocked,
        format!(
            "allocating and touching 256 MiB: {}{}",
            child.describe(),
            match child {
                Child::Exited(0) => " (the whole allocation succeeded)",
                Child::Exited(3) => " (mmap failed)",
                Child::Signaled(libc::SIGKILL) => " (killed by the OOM killer)",
                _ => "",
            }
        ),
    );
    parts.outcome()
}

//! The file system: what the app can read, write, create and see.

use std::collections::BTreeSet;

use crate::Args;
use crate::util::{
    Outcome, Parts, add_fails, close, cstr, en, errno, lstat, open, pack_dir, pack_name, read_some,
    read_text, readlink, scratch, show, stat, try_create, try_open,
};

fn add_read(parts: &mut Parts, path: &str) {
    match read_some(path, 64) {
        Ok(b) => parts.add(
            false,
            format!(
                "read {path}: {} bytes: {:?}",
                b.len(),
                String::from_utf8_lossy(&b)
            ),
        ),
        Err(e) => parts.add(true, format!("read {path}: {}", en(e))),
    }
}

pub fn read_host_canary(args: &Args) -> Outcome {
    let mut parts = Parts::new();
    for c in &args.host_canaries {
        add_read(&mut parts, c);
    }
    parts.outcome()
}

pub fn read_host_shadow(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    add_read(&mut parts, "/etc/shadow");
    add_read(&mut parts, "/etc/gshadow");
    parts.outcome()
}

pub fn proc_root_canary(args: &Args) -> Outcome {
    let mut parts = Parts::new();
    parts.note(format!(
        "/proc/1/root -> {}",
        readlink("/proc/1/root").unwrap_or_else(en)
    ));
    for c in &args.host_canaries {
        for via in ["/proc/1/root", "/proc/self/root", "/proc/2/root"] {
            add_read(&mut parts, &format!("{via}{c}"));
        }
    }
    parts.outcome()
}

/// snap-confine CVE-2021-44731: /tmp must be a real directory, root's, 1777, and private.
pub fn tmp_private(args: &Args) -> Outcome {
    let mut parts = Parts::new();
    match lstat("/tmp") {
        Ok(st) => {
            let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
            let mode = st.st_mode & 0o7777;
            parts.add(
                is_dir && mode == 0o1777 && st.st_uid == 0,
                format!(
                    "/tmp: {}, mode {mode:o}, owner {}",
                    if is_dir {
                        "a directory"
                    } else if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                        "a SYMLINK"
                    } else {
                        "not a directory"
                    },
                    st.st_uid
                ),
            );
        }
        Err(e) => parts.add(false, format!("lstat /tmp: {}", en(e))),
    }
    let in_tmp: Vec<&String> = args
        .host_canaries
        .iter()
        .filter(|c| c.starts_with("/tmp/"))
        .collect();
    if in_tmp.is_empty() {
        parts.add(false, "no --host-canary under /tmp was given");
    }
    for c in in_tmp {
        match lstat(c) {
            Ok(_) => parts.add(false, format!("the host's {c} is visible in /tmp")),
            Err(e) => parts.add(true, format!("lstat {c}: {}", en(e))),
        }
    }
    parts.outcome()
}

pub fn write_own_pack(_: &Args) -> Outcome {
    let dir = pack_dir();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut parts = Parts::new();
    for p in [
        format!("{dir}/.packd-probe-{pid}"),
        format!("{dir}/bin/.packd-probe-{pid}"),
        format!("{dir}/meta/.packd-probe-{pid}"),
    ] {
        add_fails(&mut parts, &format!("create {p}"), try_create(&p));
    }
    let yaml = format!("{dir}/meta/pack.yaml");
    add_fails(
        &mut parts,
        &format!("open {yaml} for writing"),
        try_open(&yaml, libc::O_WRONLY),
    );
    parts.outcome()
}

pub fn write_base(_: &Args) -> Outcome {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut parts = Parts::new();
    for dir in ["", "/bin", "/etc", "/usr", "/var", "/root", "/home", "/mnt"] {
        let p = format!("{dir}/.packd-probe-{pid}");
        add_fails(&mut parts, &format!("create {p}"), try_create(&p));
    }
    for existing in ["/bin/busybox", "/etc/passwd"] {
        if lstat(existing).is_ok() {
            add_fails(
                &mut parts,
                &format!("open {existing} for writing"),
                try_open(existing, libc::O_WRONLY),
            );
        }
    }
    let d = format!("/etc/.packd-probe-dir-{pid}");
    let c = cstr(&d);
    // SAFETY: a valid C string.
    let r = crate::util::ret(unsafe { libc::mkdir(c.as_ptr(), 0o755) } as i64);
    if r.is_ok() {
        // SAFETY: as above.
        unsafe { libc::rmdir(c.as_ptr()) };
    }
    add_fails(&mut parts, &format!("mkdir {d}"), r);
    parts.outcome()
}

/// The name of the pack whose data a host path belongs to (`.../var/pack/NAME/...`).
fn pack_of(host_path: &str) -> Option<String> {
    let (_, rest) = host_path.split_once("/var/pack/")?;
    rest.split('/')
        .next()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

pub fn write_other_data(args: &Args) -> Outcome {
    let mut parts = Parts::new();
    let Some(other) = &args.other_data else {
        return parts.outcome();
    };
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    add_fails(
        &mut parts,
        &format!("create {other}/.packd-probe-{pid}"),
        try_create(&format!("{other}/.packd-probe-{pid}")),
    );
    match std::fs::read_dir(other) {
        Ok(rd) => {
            let names: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            parts.add(false, format!("list {other}: {names:?}"));
        }
        Err(e) => parts.add(
            true,
            format!("list {other}: {}", en(e.raw_os_error().unwrap_or(0))),
        ),
    }
    if let Some(name) = pack_of(other) {
        let inside = format!("/var/pack/{name}");
        match lstat(&inside) {
            Ok(_) => parts.add(false, format!("{inside} exists")),
            Err(e) => parts.add(true, format!("lstat {inside}: {}", en(e))),
        }
        for sub in ["", "/common", "/x1"] {
            let p = format!("{inside}{sub}/.packd-probe-{pid}");
            add_fails(&mut parts, &format!("create {p}"), try_create(&p));
        }
        let c = cstr(&inside);
        // SAFETY: a valid C string.
        let r = crate::util::ret(unsafe { libc::mkdir(c.as_ptr(), 0o755) } as i64);
        if r.is_ok() {
            // SAFETY: as above.
            unsafe { libc::rmdir(c.as_ptr()) };
        }
        add_fails(&mut parts, &format!("mkdir {inside}"), r);
    } else {
        parts.note(format!("{other} is not under a var/pack/NAME directory"));
    }
    parts.outcome()
}

/// Only this pack under /pack and /var/pack.
pub fn other_packs_visible(_: &Args) -> Outcome {
    let own = pack_name().unwrap_or_default();
    let mut parts = Parts::new();
    for dir in ["/pack", "/var/pack"] {
        match std::fs::read_dir(dir) {
            Ok(rd) => {
                let names: Vec<String> = rd
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                let others: Vec<&String> = names.iter().filter(|n| **n != own).collect();
                parts.add(
                    others.is_empty(),
                    format!("{dir} holds {names:?} (this pack: {own:?})"),
                );
            }
            Err(e) => parts.add(
                true,
                format!("list {dir}: {}", en(e.raw_os_error().unwrap_or(0))),
            ),
        }
    }
    parts.outcome()
}

/// CAP_CHOWN: giving a file away.
pub fn chown_other(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let p = scratch("chown");
    match open(&p, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o644) {
        Ok(fd) => {
            // SAFETY: fchown on our descriptor.
            let r = crate::util::ret(unsafe { libc::fchown(fd as i32, 4242, 4242) } as i64);
            add_fails(&mut parts, &format!("chown {p} to 4242:4242"), r);
            close(fd);
            let c = cstr(&p);
            // SAFETY: a valid C string.
            unsafe { libc::unlink(c.as_ptr()) };
        }
        Err(e) => parts.add(
            false,
            format!(
                "could not create {p} to try: {} (/tmp must be writable)",
                en(e)
            ),
        ),
    }
    parts.outcome()
}

/// CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH: reading a mode-000 file.
pub fn dac_override(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let p = scratch("dac");
    match open(&p, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0) {
        Ok(fd) => {
            close(fd);
            let c = cstr(&p);
            // SAFETY: a valid C string.
            unsafe { libc::chmod(c.as_ptr(), 0) };
            add_fails(
                &mut parts,
                &format!("open mode-000 {p} for reading"),
                try_open(&p, libc::O_RDONLY),
            );
            // SAFETY: as above.
            unsafe { libc::unlink(c.as_ptr()) };
        }
        Err(e) => parts.add(
            false,
            format!(
                "could not create {p} to try: {} (/tmp must be writable)",
                en(e)
            ),
        ),
    }
    parts.outcome()
}

/// Landlock on the file system, beyond permissions: files the app owns and may write by mode,
/// but that Landlock does not grant, must be refused with EACCES.
pub fn landlock_fs(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    for p in ["/proc/self/comm", "/proc/self/oom_score_adj"] {
        let r = try_open(p, libc::O_WRONLY);
        parts.add(
            r == Err(libc::EACCES),
            format!(
                "open {p} for writing (owner-writable): {}{}",
                show(&r),
                if r.is_ok() {
                    " (Landlock does not restrict writes)"
                } else {
                    ""
                }
            ),
        );
    }
    parts.outcome()
}

pub fn proc_sys_writable(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    for p in [
        "/proc/sys/kernel/hostname",
        "/proc/sys/kernel/core_pattern",
        "/proc/sys/kernel/modprobe",
        "/proc/sys/vm/drop_caches",
        "/proc/sysrq-trigger",
    ] {
        add_fails(
            &mut parts,
            &format!("open {p} for writing"),
            try_open(p, libc::O_WRONLY),
        );
    }
    parts.outcome()
}

pub fn sys_writable(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let c = cstr("/sys");
    // SAFETY: zeroed statvfs is a valid out-parameter.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    if unsafe { libc::statvfs(c.as_ptr(), &mut vfs) } == 0 {
        let ro = vfs.f_flag & libc::ST_RDONLY != 0;
        parts.add(
            ro,
            format!(
                "/sys is mounted {}",
                if ro { "read-only" } else { "READ-WRITE" }
            ),
        );
    } else {
        parts.add(true, format!("statvfs /sys: {}", en(errno())));
    }
    for p in [
        "/sys/kernel/uevent_helper",
        "/sys/power/state",
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/kernel/profiling",
        "/sys/class/net/lo/mtu",
    ] {
        if lstat(p).is_ok() {
            add_fails(
                &mut parts,
                &format!("open {p} for writing"),
                try_open(p, libc::O_WRONLY),
            );
        }
    }
    let p = format!("/sys/.packd-probe-{}", std::process::id());
    add_fails(&mut parts, &format!("create {p}"), try_create(&p));
    parts.outcome()
}

/// runc's masked paths: absent, unreadable, empty or /dev/null.
pub fn proc_masked(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    for p in [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
        "/proc/latency_stats",
        "/proc/kmsg",
    ] {
        if let Err(e) = lstat(p) {
            parts.note(format!("{p}: {}", en(e)));
            continue;
        }
        let fd = match open(p, libc::O_RDONLY | libc::O_NONBLOCK, 0) {
            Ok(fd) => fd,
            Err(e) => {
                parts.add(true, format!("open {p}: {}", en(e)));
                continue;
            }
        };
        // SAFETY: zeroed stat is a valid out-parameter; fstat on our descriptor.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::fstat(fd as i32, &mut st) };
        if st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3) {
            parts.add(true, format!("{p} is masked with /dev/null"));
        } else if p == "/proc/kmsg" {
            // Reading would consume the kernel's log: that it opened is enough.
            parts.add(false, format!("{p} opened (not masked)"));
        } else {
            let mut buf = [0u8; 16];
            // SAFETY: reading into our own buffer.
            let n = unsafe { libc::read(fd as i32, buf.as_mut_ptr().cast(), buf.len()) };
            let e = errno();
            if n > 0 {
                parts.add(false, format!("read {n} bytes from {p}"));
            } else if n == 0 {
                parts.add(true, format!("{p} reads empty"));
            } else {
                parts.add(true, format!("read {p}: {}", en(e)));
            }
        }
        close(fd);
    }
    for d in ["/proc/acpi", "/proc/scsi"] {
        match std::fs::read_dir(d) {
            Ok(rd) => {
                let n = rd.count();
                parts.add(n == 0, format!("{d} has {n} entries"));
            }
            Err(e) => parts.note(format!("{d}: {}", en(e.raw_os_error().unwrap_or(0)))),
        }
    }
    parts.outcome()
}

pub fn open_devices(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    for p in [
        "/dev/sda",
        "/dev/vda",
        "/dev/nvme0n1",
        "/dev/loop0",
        "/dev/loop-control",
        "/dev/mem",
        "/dev/kmem",
        "/dev/port",
        "/dev/kmsg",
        "/dev/fuse",
        "/dev/kvm",
        "/dev/console",
        "/dev/tty0",
        "/dev/net/tun",
    ] {
        add_fails(
            &mut parts,
            &format!("open {p}"),
            try_open(p, libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK),
        );
    }
    parts.outcome()
}

pub fn mknod_devices(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    for (tag, kind, major, minor, what) in [
        ("blk", libc::S_IFBLK, 7, 0, "block device 7:0 (loop0)"),
        ("blk2", libc::S_IFBLK, 254, 0, "block device 254:0 (vda)"),
        ("chr", libc::S_IFCHR, 1, 1, "character device 1:1 (mem)"),
    ] {
        let p = scratch(tag);
        let c = cstr(&p);
        // SAFETY: a valid C string.
        let r = crate::util::ret(unsafe {
            libc::mknod(c.as_ptr(), kind | 0o600, libc::makedev(major, minor))
        } as i64);
        if r.is_ok() {
            // SAFETY: as above.
            unsafe { libc::unlink(c.as_ptr()) };
        }
        add_fails(&mut parts, &format!("mknod {p} as a {what}"), r);
    }
    parts.outcome()
}

fn walk_devices(dir: &str, out: &mut Vec<(String, libc::stat)>, depth: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = format!("{dir}/{}", e.file_name().to_string_lossy());
        let Ok(st) = lstat(&p) else { continue };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFCHR | libc::S_IFBLK => out.push((p, st)),
            libc::S_IFDIR if depth < 4 => walk_devices(&p, out, depth + 1),
            _ => {}
        }
    }
}

/// Only the minimal /dev: null zero full random urandom tty, the private ptmx and ptys.
pub fn dev_nodes(_: &Args) -> Outcome {
    let mut nodes = Vec::new();
    walk_devices("/dev", &mut nodes, 0);
    let expected: BTreeSet<&str> = [
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
        "/dev/pts/ptmx",
    ]
    .into_iter()
    .collect();
    let mut fine = Vec::new();
    let mut unexpected = Vec::new();
    for (p, st) in &nodes {
        let block = st.st_mode & libc::S_IFMT == libc::S_IFBLK;
        let (ma, mi) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
        let pty = p
            .strip_prefix("/dev/pts/")
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
            && (136..=143).contains(&ma);
        let text = format!("{p} ({} {ma}:{mi})", if block { "block" } else { "char" });
        if !block && (expected.contains(p.as_str()) || pty) {
            fine.push(text);
        } else {
            unexpected.push(text);
        }
    }
    let mut parts = Parts::new();
    if unexpected.is_empty() {
        parts.add(true, format!("only {}", fine.join(", ")));
    } else {
        let n = unexpected.len();
        unexpected.truncate(25);
        parts.add(
            false,
            format!("{n} unexpected device nodes: {}", unexpected.join(", ")),
        );
    }
    parts.outcome()
}

struct Mount {
    point: String,
    root: String,
    opts: String,
    fstype: String,
    source: String,
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn mounts() -> Result<Vec<Mount>, i32> {
    let text = read_text("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            Some(Mount {
                root: unescape(f.get(3)?),
                point: unescape(f.get(4)?),
                opts: f.get(5)?.to_string(),
                fstype: f.get(dash + 1)?.to_string(),
                source: unescape(f.get(dash + 2)?),
            })
        })
        .collect())
}

pub fn mounts_nosuid(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    match mounts() {
        Ok(ms) => {
            let bad: Vec<String> = ms
                .iter()
                .filter(|m| !m.opts.split(',').any(|o| o == "nosuid"))
                .map(|m| format!("{} ({} {})", m.point, m.fstype, m.opts))
                .collect();
            let summary: Vec<String> = ms
                .iter()
                .map(|m| format!("{} {} {}", m.point, m.fstype, m.opts))
                .collect();
            parts.add(
                bad.is_empty(),
                format!(
                    "{} mounts, {} without nosuid{}",
                    ms.len(),
                    bad.len(),
                    if bad.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", bad.join(", "))
                    }
                ),
            );
            parts.note(format!("mounts: {}", summary.join(" | ")));
        }
        Err(e) => parts.add(false, format!("read /proc/self/mountinfo: {}", en(e))),
    }
    parts.outcome()
}

/// Every mount point is one the sandbox is expected to have.
pub fn mounts_expected(_: &Args) -> Outcome {
    let under = |p: &str, top: &str| p == top || p.starts_with(&format!("{top}/"));
    let expected = |p: &str| {
        p == "/"
            || p == "/tmp"
            || p == "/run"
            || ["/dev", "/proc", "/sys", "/pack", "/var/pack"]
                .iter()
                .any(|t| under(p, t))
    };
    let mut parts = Parts::new();
    match mounts() {
        Ok(ms) => {
            let bad: Vec<String> = ms
                .iter()
                .filter(|m| !expected(&m.point))
                .map(|m| format!("{} ({} from {}:{})", m.point, m.fstype, m.source, m.root))
                .collect();
            parts.add(
                bad.is_empty(),
                format!(
                    "{} mounts, {} outside the expected set{}",
                    ms.len(),
                    bad.len(),
                    if bad.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", bad.join(", "))
                    }
                ),
            );
            let binds: Vec<String> = ms
                .iter()
                .filter(|m| m.root != "/")
                .map(|m| format!("{} <- {}:{}", m.point, m.source, m.root))
                .collect();
            parts.note(format!("bind sources: {}", binds.join(" | ")));
        }
        Err(e) => parts.add(false, format!("read /proc/self/mountinfo: {}", en(e))),
    }
    parts.outcome()
}

/// The open descriptors, and the one used to list them.
fn open_fds() -> Result<(Vec<i32>, i32), i32> {
    let c = cstr("/proc/self/fd");
    // SAFETY: a valid C string.
    let dir = unsafe { libc::opendir(c.as_ptr()) };
    if dir.is_null() {
        return Err(errno());
    }
    // SAFETY: dir is a valid DIR*.
    let own = unsafe { libc::dirfd(dir) };
    let mut fds = Vec::new();
    loop {
        // SAFETY: dir is valid until closedir.
        let ent = unsafe { libc::readdir(dir) };
        if ent.is_null() {
            break;
        }
        // SAFETY: d_name is a NUL-terminated string inside the entry.
        let name = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) };
        if let Ok(n) = name.to_string_lossy().parse::<i32>() {
            fds.push(n);
        }
    }
    // SAFETY: closing the DIR* we opened.
    unsafe { libc::closedir(dir) };
    Ok((fds, own))
}

/// runc CVE-2024-21626: nothing but stdin, stdout and stderr crosses into the sandbox.
pub fn leaked_fds(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    match open_fds() {
        Ok((fds, own)) => {
            let desc: Vec<String> = fds
                .iter()
                .map(|fd| {
                    let l = if *fd == own {
                        "(the listing's own descriptor)".to_string()
                    } else {
                        readlink(&format!("/proc/self/fd/{fd}")).unwrap_or_else(en)
                    };
                    format!("{fd} -> {l}")
                })
                .collect();
            let extra: Vec<&i32> = fds
                .iter()
                .filter(|fd| !(0..=2).contains(*fd) && **fd != own)
                .collect();
            parts.add(
                extra.is_empty(),
                format!(
                    "open descriptors: {}{}",
                    desc.join(", "),
                    if extra.is_empty() {
                        String::new()
                    } else {
                        format!("; leaked: {extra:?}")
                    }
                ),
            );
        }
        Err(e) => parts.add(false, format!("list /proc/self/fd: {}", en(e))),
    }
    parts.outcome()
}

/// Every descriptor that names a path names a path inside the sandbox: the path resolves here
/// to the very same file.
pub fn fd_links_inside(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let (fds, own) = match open_fds() {
        Ok(x) => x,
        Err(e) => {
            parts.add(false, format!("list /proc/self/fd: {}", en(e)));
            return parts.outcome();
        }
    };
    for fd in fds.into_iter().filter(|fd| *fd != own) {
        let link = match readlink(&format!("/proc/self/fd/{fd}")) {
            Ok(l) => l,
            Err(e) => {
                parts.add(true, format!("fd {fd}: readlink {}", en(e)));
                continue;
            }
        };
        if !link.starts_with('/') {
            parts.add(true, format!("fd {fd} -> {link} (not a path)"));
            continue;
        }
        // SAFETY: zeroed stat is a valid out-parameter; fstat on an open descriptor.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            parts.add(true, format!("fd {fd} -> {link}: fstat {}", en(errno())));
            continue;
        }
        match stat(&link) {
            Ok(here) if here.st_dev == st.st_dev && here.st_ino == st.st_ino => {
                parts.add(true, format!("fd {fd} -> {link} (the same file here)"))
            }
            Ok(_) => parts.add(
                false,
                format!("fd {fd} -> {link}: a DIFFERENT file has that path here (outside view)"),
            ),
            Err(e) => parts.add(
                false,
                format!(
                    "fd {fd} -> {link}: that path does not resolve here ({})",
                    en(e)
                ),
            ),
        }
    }
    parts.outcome()
}

/// runc CVE-2024-21626: the working directory is inside the sandbox.
pub fn cwd_inside(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let mut buf = vec![0u8; 4096];
    // SAFETY: the raw syscall (not libc's wrapper, which hides "(unreachable)") into our buffer.
    let n = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    if n < 0 {
        parts.add(false, format!("getcwd: {}", en(errno())));
    } else {
        let s = std::ffi::CStr::from_bytes_until_nul(&buf)
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        parts.add(s.starts_with('/'), format!("getcwd (raw syscall): {s:?}"));
    }
    match readlink("/proc/self/cwd") {
        Ok(l) => match (stat(&l), stat(".")) {
            (Ok(a), Ok(b)) if a.st_dev == b.st_dev && a.st_ino == b.st_ino => {
                parts.add(true, format!("/proc/self/cwd -> {l} resolves to the cwd"))
            }
            (a, _) => parts.add(
                false,
                format!(
                    "/proc/self/cwd -> {l} does not resolve to the cwd ({})",
                    a.map(|_| "another file".to_string()).unwrap_or_else(en)
                ),
            ),
        },
        Err(e) => parts.add(false, format!("readlink /proc/self/cwd: {}", en(e))),
    }
    parts.outcome()
}

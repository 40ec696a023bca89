//! The mount family, terminal injection and the kernel's privileged surfaces. Arguments are
//! chosen so that a call changes nothing even where it is allowed (outside a sandbox), unless
//! the check only runs inside one; a call that fails on those arguments rather than on a
//! permission check counts as NOT blocked (it got through).

use crate::Args;
use crate::util::{Outcome, Parts, add_fails, add_refused, close, cstr, en, ret, scratch};

fn c(s: &str) -> std::ffi::CString {
    cstr(s)
}

/// A scratch directory under /tmp (removed by [`rmdir`]).
fn scratch_dir(tag: &str) -> String {
    let d = scratch(tag);
    let cs = c(&d);
    // SAFETY: a valid C string.
    unsafe { libc::mkdir(cs.as_ptr(), 0o755) };
    d
}

fn rmdir(d: &str) {
    let cs = c(d);
    // SAFETY: a valid C string.
    unsafe { libc::rmdir(cs.as_ptr()) };
}

fn umount_if(r: &Result<i64, i32>, target: &str) {
    if r.is_ok() {
        let cs = c(target);
        // SAFETY: a valid C string.
        unsafe { libc::umount2(cs.as_ptr(), libc::MNT_DETACH) };
    }
}

fn mount(
    src: &str,
    target: &str,
    fstype: Option<&str>,
    flags: u64,
    data: Option<&str>,
) -> Result<i64, i32> {
    let (s, t) = (c(src), c(target));
    let f = fstype.map(c);
    let d = data.map(c);
    // SAFETY: valid C strings or NULL.
    ret(unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            f.as_ref().map_or(std::ptr::null(), |x| x.as_ptr()),
            flags as libc::c_ulong,
            d.as_ref()
                .map_or(std::ptr::null(), |x| x.as_ptr().cast::<libc::c_void>()),
        )
    } as i64)
}

pub fn mount_cgroup2(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let d = scratch_dir("cg");
    let r = mount("none", &d, Some("cgroup2"), 0, None);
    umount_if(&r, &d);
    add_refused(&mut parts, &format!("mount cgroup2 on {d}"), r);
    let r = mount("none", &d, Some("cgroup"), 0, Some("pids"));
    umount_if(&r, &d);
    add_refused(&mut parts, &format!("mount cgroup (v1, pids) on {d}"), r);
    rmdir(&d);
    parts.outcome()
}

pub fn mount_tmpfs(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let d = scratch_dir("mnt");
    let r = mount("tmpfs", &d, Some("tmpfs"), 0, Some("size=1m"));
    umount_if(&r, &d);
    add_refused(&mut parts, &format!("mount tmpfs on {d}"), r);
    let r = mount("/", &d, None, libc::MS_BIND | libc::MS_REC, None);
    umount_if(&r, &d);
    add_refused(&mut parts, &format!("bind / on {d}"), r);
    let r = mount("none", "/", None, libc::MS_REMOUNT | libc::MS_BIND, None);
    add_refused(&mut parts, "remount / read-write", r);
    let r = mount("proc", &d, Some("proc"), 0, None);
    umount_if(&r, &d);
    add_refused(&mut parts, &format!("mount proc on {d}"), r);
    rmdir(&d);
    parts.outcome()
}

pub fn umount(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    for target in ["/proc/kcore", "/proc/timer_list", "/proc/sys", "/tmp", "/"] {
        let t = c(target);
        // SAFETY: a valid C string.
        let r = ret(unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } as i64);
        add_refused(&mut parts, &format!("umount2({target}, MNT_DETACH)"), r);
    }
    parts.outcome()
}

pub fn pivot_root(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let here = crate::util::open(".", libc::O_RDONLY | libc::O_DIRECTORY, 0);
    let root = c("/");
    let dot = c(".");
    // SAFETY: valid C strings; the working directory is restored below.
    let r = unsafe {
        libc::chdir(root.as_ptr());
        ret(libc::syscall(
            libc::SYS_pivot_root,
            dot.as_ptr(),
            dot.as_ptr(),
        ))
    };
    if let Ok(fd) = here {
        // SAFETY: fchdir to our descriptor.
        unsafe { libc::fchdir(fd as i32) };
        close(fd);
    }
    add_refused(&mut parts, "pivot_root(\".\", \".\") in /", r);
    parts.outcome()
}

pub fn chroot(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let root = c("/");
    // SAFETY: chroot to "/" changes nothing even when allowed.
    let r = ret(unsafe { libc::chroot(root.as_ptr()) } as i64);
    add_refused(&mut parts, "chroot(\"/\")", r);
    parts.outcome()
}

const OPEN_TREE_CLONE: u32 = 1;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 4;
const FSOPEN_CLOEXEC: u32 = 1;
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;
const FSMOUNT_CLOEXEC: u32 = 1;
const FSPICK_CLOEXEC: u32 = 1;
const MOUNT_ATTR_RDONLY: u64 = 1;
const MOUNT_ATTR_NOSUID: u64 = 2;

fn open_tree_clone(path: &str) -> Result<i64, i32> {
    let p = c(path);
    // SAFETY: a valid C string; the result is a descriptor we close.
    ret(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            p.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as u32,
        )
    })
}

pub fn open_tree(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let r = open_tree_clone("/");
    if let Ok(fd) = r {
        close(fd);
    }
    add_refused(&mut parts, "open_tree(\"/\", OPEN_TREE_CLONE)", r);
    parts.outcome()
}

pub fn move_mount(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let d = scratch_dir("move");
    let tree = open_tree_clone("/");
    let from = tree.unwrap_or(-1);
    let empty = c("");
    let to = c(&d);
    // SAFETY: valid C strings and descriptors (or -1).
    let r = ret(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from,
            empty.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    });
    umount_if(&r, &d);
    close(from);
    add_refused(
        &mut parts,
        &format!(
            "move_mount(clone of / {}, onto {d})",
            if tree.is_ok() { "(cloned)" } else { "(fd -1)" }
        ),
        r,
    );
    rmdir(&d);
    parts.outcome()
}

fn fsopen_tmpfs() -> Result<i64, i32> {
    let t = c("tmpfs");
    // SAFETY: a valid C string.
    ret(unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), FSOPEN_CLOEXEC) })
}

fn fsconfig_call(fd: i64, cmd: u32, key: Option<&str>, value: Option<&str>) -> Result<i64, i32> {
    let k = key.map(c);
    let v = value.map(c);
    // SAFETY: valid C strings or NULL.
    ret(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd,
            cmd,
            k.as_ref().map_or(std::ptr::null(), |x| x.as_ptr()),
            v.as_ref().map_or(std::ptr::null(), |x| x.as_ptr()),
            0,
        )
    })
}

pub fn fsopen(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let r = fsopen_tmpfs();
    if let Ok(fd) = r {
        close(fd);
    }
    add_refused(&mut parts, "fsopen(\"tmpfs\")", r);
    parts.outcome()
}

fn fsconfig_check(fd: i64, parts: &mut Parts) {
    let r = fsconfig_call(fd, FSCONFIG_SET_STRING, Some("size"), Some("1m"));
    add_refused(parts, &format!("fsconfig(fd {fd}, SET_STRING size=1m)"), r);
    let r = fsconfig_call(fd, FSCONFIG_CMD_CREATE, None, None);
    add_refused(parts, &format!("fsconfig(fd {fd}, CMD_CREATE)"), r);
}

pub fn fsconfig(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let fd = fsopen_tmpfs().unwrap_or(-1);
    fsconfig_check(fd, &mut parts);
    close(fd);
    parts.outcome()
}

pub fn fsmount(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let fd = fsopen_tmpfs().unwrap_or(-1);
    if fd >= 0 {
        let _ = fsconfig_call(fd, FSCONFIG_CMD_CREATE, None, None);
    }
    // SAFETY: integer arguments; a resulting (detached) mount descriptor is closed.
    let r = ret(unsafe { libc::syscall(libc::SYS_fsmount, fd, FSMOUNT_CLOEXEC, 0) });
    if let Ok(m) = r {
        close(m);
    }
    close(fd);
    add_refused(&mut parts, &format!("fsmount(fd {fd})"), r);
    parts.outcome()
}

pub fn fspick(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let p = c("/");
    // SAFETY: a valid C string; the context is closed without reconfiguring anything.
    let r =
        ret(unsafe { libc::syscall(libc::SYS_fspick, libc::AT_FDCWD, p.as_ptr(), FSPICK_CLOEXEC) });
    if let Ok(fd) = r {
        close(fd);
    }
    add_refused(&mut parts, "fspick(\"/\")", r);
    parts.outcome()
}

/// Clearing read-only and nosuid on the root: only inside a sandbox.
pub fn mount_setattr(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    // struct mount_attr: attr_set, attr_clr, propagation, userns_fd.
    let attr: [u64; 4] = [0, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0];
    let p = c("/");
    // SAFETY: valid pointers and sizes.
    let r = ret(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            p.as_ptr(),
            0,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    });
    add_refused(&mut parts, "mount_setattr(\"/\", clear RDONLY|NOSUID)", r);
    parts.outcome()
}

const TIOCGPTPEER: u64 = 0x5441;

/// A new pseudo-terminal of our own: (master, slave).
fn pty() -> Result<Pty, String> {
    let m = crate::util::open("/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY, 0)
        .map_err(|e| format!("open /dev/ptmx: {}", en(e)))?;
    let unlock: libc::c_int = 0;
    // SAFETY: ioctls on our own descriptor with valid pointers.
    unsafe { libc::ioctl(m as i32, libc::TIOCSPTLCK, &unlock) };
    // SAFETY: as above.
    let s = unsafe {
        libc::syscall(
            libc::SYS_ioctl,
            m,
            TIOCGPTPEER,
            (libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) as libc::c_long,
        )
    };
    if s < 0 {
        let e = crate::util::errno();
        close(m);
        return Err(format!("TIOCGPTPEER: {}", en(e)));
    }
    Ok((m, s))
}

/// The descriptors to try terminal ioctls on: a pty of our own, and fd 0 unless it is a real
/// terminal (input must never be pushed into a user's terminal by a test).
/// A pty's (master, slave) descriptors.
type Pty = (i64, i64);

fn tty_targets(parts: &mut Parts) -> (Vec<(i64, String)>, Option<Pty>) {
    let mut targets = Vec::new();
    let pair = match pty() {
        Ok((m, s)) => {
            targets.push((s, "a pty of its own".to_string()));
            Some((m, s))
        }
        Err(e) => {
            parts.note(format!("no pty: {e}"));
            None
        }
    };
    // SAFETY: isatty on fd 0.
    if unsafe { libc::isatty(0) } == 1 {
        parts.note("fd 0 is a terminal: not touched");
    } else {
        targets.push((0, "fd 0".to_string()));
    }
    (targets, pair)
}

fn ioctl_attempts(request: u64, name: &str, arg: *const libc::c_void) -> Outcome {
    let mut parts = Parts::new();
    let (targets, pair) = tty_targets(&mut parts);
    for (fd, what) in targets {
        // SAFETY: an ioctl on our own descriptor (or fd 0) with a pointer to a local byte.
        let r = ret(unsafe { libc::syscall(libc::SYS_ioctl, fd, request, arg) });
        add_refused(&mut parts, &format!("ioctl({what}, {name})"), r);
    }
    if let Some((m, s)) = pair {
        close(s);
        close(m);
    }
    parts.outcome()
}

pub fn tiocsti(_: &Args) -> Outcome {
    let byte: u8 = b'#';
    ioctl_attempts(libc::TIOCSTI, "TIOCSTI", (&byte as *const u8).cast())
}

/// CVE-2019-7303: the kernel only looks at the low 32 bits of the request.
pub fn tiocsti_high_bits(_: &Args) -> Outcome {
    let byte: u8 = b'#';
    ioctl_attempts(
        libc::TIOCSTI | (1 << 32),
        "TIOCSTI | 1<<32",
        (&byte as *const u8).cast(),
    )
}

pub fn tioclinux(_: &Args) -> Outcome {
    // TIOCL_GETKMSGREDIRECT (17): a read-only subcode.
    let sub: u8 = 17;
    ioctl_attempts(libc::TIOCLINUX, "TIOCLINUX", (&sub as *const u8).cast())
}

fn one_refused(what: &str, r: Result<i64, i32>) -> Outcome {
    let mut parts = Parts::new();
    add_refused(&mut parts, what, r);
    parts.outcome()
}

pub fn keyctl(_: &Args) -> Outcome {
    const KEYCTL_GET_KEYRING_ID: i64 = 0;
    const KEY_SPEC_SESSION_KEYRING: i64 = -3;
    // SAFETY: integer arguments; create = 0.
    let r = ret(unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_GET_KEYRING_ID,
            KEY_SPEC_SESSION_KEYRING,
            0,
        )
    });
    one_refused("keyctl(GET_KEYRING_ID, session)", r)
}

pub fn add_key(_: &Args) -> Outcome {
    const KEY_SPEC_PROCESS_KEYRING: i64 = -2;
    let (t, d) = (c("user"), c("packd-probe"));
    let payload = b"x";
    // SAFETY: valid C strings and buffer; the process keyring goes away with the probe.
    let r = ret(unsafe {
        libc::syscall(
            libc::SYS_add_key,
            t.as_ptr(),
            d.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            KEY_SPEC_PROCESS_KEYRING,
        )
    });
    one_refused("add_key(user, process keyring)", r)
}

pub fn bpf(_: &Args) -> Outcome {
    const BPF_MAP_CREATE: i64 = 0;
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    // union bpf_attr for MAP_CREATE: map_type, key_size, value_size, max_entries, ...
    let mut attr = [0u32; 16];
    attr[..4].copy_from_slice(&[BPF_MAP_TYPE_ARRAY, 4, 4, 1]);
    // SAFETY: a valid attribute buffer of the given size; a resulting map is closed.
    let r = ret(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    });
    if let Ok(fd) = r {
        close(fd);
    }
    one_refused("bpf(BPF_MAP_CREATE, array)", r)
}

pub fn perf_event_open(_: &Args) -> Outcome {
    // struct perf_event_attr: type, size, config, ...; flags at byte 40.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // PERF_TYPE_SOFTWARE
    attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
    // config 0: PERF_COUNT_SW_CPU_CLOCK; disabled | exclude_kernel | exclude_hv.
    let flags: u64 = 1 | (1 << 5) | (1 << 6);
    attr[40..48].copy_from_slice(&flags.to_ne_bytes());
    const PERF_FLAG_FD_CLOEXEC: u64 = 8;
    // SAFETY: a valid attribute buffer; a resulting event is closed.
    let r = ret(unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            0,
            -1,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    });
    if let Ok(fd) = r {
        close(fd);
    }
    one_refused("perf_event_open(software cpu-clock, self)", r)
}

pub fn userfaultfd(_: &Args) -> Outcome {
    const UFFD_USER_MODE_ONLY: i32 = 1;
    // SAFETY: integer flags; a resulting descriptor is closed.
    let r = ret(unsafe {
        libc::syscall(
            libc::SYS_userfaultfd,
            libc::O_CLOEXEC | libc::O_NONBLOCK | UFFD_USER_MODE_ONLY,
        )
    });
    if let Ok(fd) = r {
        close(fd);
    }
    one_refused("userfaultfd(USER_MODE_ONLY)", r)
}

pub fn io_uring_setup(_: &Args) -> Outcome {
    let mut params = [0u8; 120];
    // SAFETY: a zeroed io_uring_params; a resulting ring is closed.
    let r = ret(unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, params.as_mut_ptr()) });
    if let Ok(fd) = r {
        close(fd);
    }
    one_refused("io_uring_setup(1 entry)", r)
}

pub fn init_module(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let empty = c("");
    // SAFETY: an empty image: nothing can be loaded.
    let r = ret(unsafe {
        libc::syscall(
            libc::SYS_init_module,
            std::ptr::null::<u8>(),
            0,
            empty.as_ptr(),
        )
    });
    add_refused(&mut parts, "init_module(empty image)", r);
    // SAFETY: an invalid descriptor: nothing can be loaded.
    let r = ret(unsafe { libc::syscall(libc::SYS_finit_module, -1, empty.as_ptr(), 0) });
    add_refused(&mut parts, "finit_module(fd -1)", r);
    // SAFETY: a module name that does not exist.
    let name = c("packd_probe_no_such_module");
    let r = ret(unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) });
    add_refused(&mut parts, "delete_module(no such module)", r);
    parts.outcome()
}

pub fn kexec_load(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    // More segments than the kernel accepts: nothing can be loaded or unloaded.
    // SAFETY: integer arguments and a NULL segment list.
    let r = ret(unsafe { libc::syscall(libc::SYS_kexec_load, 0, 1000, std::ptr::null::<u8>(), 0) });
    add_refused(&mut parts, "kexec_load(1000 segments)", r);
    let empty = c("");
    // SAFETY: invalid descriptors, flags 0 (not an unload).
    let r = ret(unsafe { libc::syscall(libc::SYS_kexec_file_load, -1, -1, 1, empty.as_ptr(), 0) });
    add_refused(&mut parts, "kexec_file_load(fd -1)", r);
    parts.outcome()
}

pub fn reboot(_: &Args) -> Outcome {
    // Bad magic numbers: the kernel checks the capability first, then refuses the magic.
    // SAFETY: integer arguments.
    let r = ret(unsafe {
        libc::syscall(
            libc::SYS_reboot,
            0x1234_5678,
            0x0bad_0bad,
            libc::LINUX_REBOOT_CMD_CAD_OFF,
            0,
        )
    });
    one_refused("reboot(bad magic, CAD_OFF)", r)
}

pub fn settimeofday(_: &Args) -> Outcome {
    // Neither time nor zone: the capability is checked, nothing is set.
    // SAFETY: NULL arguments.
    let r = ret(unsafe { libc::syscall(libc::SYS_settimeofday, 0, 0) });
    let mut parts = Parts::new();
    add_refused(&mut parts, "settimeofday(NULL, NULL)", r);
    parts.outcome()
}

pub fn swapon(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let p = c("/nonexistent-packd-probe-swap");
    // SAFETY: a path that does not exist.
    let r = ret(unsafe { libc::syscall(libc::SYS_swapon, p.as_ptr(), 0) });
    add_refused(&mut parts, "swapon(nonexistent)", r);
    // SAFETY: as above.
    let r = ret(unsafe { libc::syscall(libc::SYS_swapoff, p.as_ptr()) });
    add_refused(&mut parts, "swapoff(nonexistent)", r);
    parts.outcome()
}

pub fn acct(_: &Args) -> Outcome {
    let p = c("/nonexistent-packd-probe/acct");
    // SAFETY: a path that does not exist.
    let r = ret(unsafe { libc::syscall(libc::SYS_acct, p.as_ptr()) });
    one_refused("acct(nonexistent)", r)
}

/// The "shocker" escape: a file handle opened without a path.
pub fn open_by_handle_at(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    // struct file_handle: handle_bytes, handle_type, f_handle[128].
    let mut h = [0u8; 8 + 128];
    h[0..4].copy_from_slice(&128u32.to_ne_bytes());
    let mut mount_id: libc::c_int = 0;
    let root = c("/");
    // SAFETY: a valid handle buffer and out-parameter.
    let r = ret(unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            root.as_ptr(),
            h.as_mut_ptr(),
            &mut mount_id,
            0,
        )
    });
    add_refused(&mut parts, "name_to_handle_at(\"/\")", r);
    if r.is_err() {
        // A guessed handle: ext4's root directory (inode 2, generation 0).
        h = [0u8; 8 + 128];
        h[0..4].copy_from_slice(&8u32.to_ne_bytes());
        h[4..8].copy_from_slice(&1i32.to_ne_bytes()); // FILEID_INO32_GEN
        h[8..12].copy_from_slice(&2u32.to_ne_bytes());
    }
    match crate::util::open("/", libc::O_RDONLY | libc::O_DIRECTORY, 0) {
        Ok(mfd) => {
            // SAFETY: a valid handle buffer; a resulting descriptor is closed.
            let r = ret(unsafe {
                libc::syscall(
                    libc::SYS_open_by_handle_at,
                    mfd,
                    h.as_ptr(),
                    libc::O_RDONLY | libc::O_CLOEXEC,
                )
            });
            if let Ok(fd) = r {
                close(fd);
            }
            add_refused(&mut parts, "open_by_handle_at(root handle)", r);
            close(mfd);
        }
        Err(e) => parts.add(false, format!("open / to try: {}", en(e))),
    }
    parts.outcome()
}

pub fn syslog(_: &Args) -> Outcome {
    const SYSLOG_ACTION_SIZE_BUFFER: i64 = 10;
    let mut parts = Parts::new();
    // SAFETY: a query without a buffer.
    let r = ret(unsafe {
        libc::syscall(
            libc::SYS_syslog,
            SYSLOG_ACTION_SIZE_BUFFER,
            std::ptr::null::<u8>(),
            0,
        )
    });
    add_refused(&mut parts, "syslog(SIZE_BUFFER)", r);
    parts.outcome()
}

pub fn iopl(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    // SAFETY: raising the I/O privilege level of this process only; undone at once.
    let r = ret(unsafe { libc::syscall(libc::SYS_iopl, 3) });
    if r.is_ok() {
        // SAFETY: as above.
        unsafe { libc::syscall(libc::SYS_iopl, 0) };
    }
    add_refused(&mut parts, "iopl(3)", r);
    // SAFETY: port 0x80 access for this process only; undone at once.
    let r = ret(unsafe { libc::syscall(libc::SYS_ioperm, 0x80, 1, 1) });
    if r.is_ok() {
        // SAFETY: as above.
        unsafe { libc::syscall(libc::SYS_ioperm, 0x80, 1, 0) };
    }
    add_refused(&mut parts, "ioperm(0x80)", r);
    parts.outcome()
}

/// Setting the (sandbox's copy of the) host name to its current value: only inside.
pub fn sethostname(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    // SAFETY: zeroed utsname is a valid out-parameter.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::uname(&mut u) };
    // SAFETY: uname NUL-terminates the field.
    let name = unsafe { std::ffi::CStr::from_ptr(u.nodename.as_ptr()) }.to_owned();
    // SAFETY: a valid buffer and length.
    let r = ret(unsafe { libc::sethostname(name.as_ptr(), name.as_bytes().len()) } as i64);
    add_refused(
        &mut parts,
        &format!("sethostname({:?})", name.to_string_lossy()),
        r,
    );
    // SAFETY: as above.
    let domain = unsafe { std::ffi::CStr::from_ptr(u.domainname.as_ptr()) }.to_owned();
    // SAFETY: a valid buffer and length.
    let r = ret(unsafe { libc::setdomainname(domain.as_ptr(), domain.as_bytes().len()) } as i64);
    add_refused(&mut parts, "setdomainname(same)", r);
    let mut fails = Parts::new();
    add_fails(
        &mut fails,
        "open /proc/sys/kernel/hostname for writing",
        crate::util::try_open("/proc/sys/kernel/hostname", libc::O_WRONLY),
    );
    let o = fails.outcome();
    parts.add(o.blocked, o.detail);
    parts.outcome()
}

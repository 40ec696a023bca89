//! Small helpers: errno names, raw calls, forked attempts, and the outcome of a check.

use std::ffi::CString;
use std::time::{Duration, Instant};

/// What one check found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub blocked: bool,
    pub detail: String,
}

/// A check made of several attempts: blocked only if every attempt was.
#[derive(Default)]
pub struct Parts {
    items: Vec<(bool, String)>,
}

impl Parts {
    pub fn new() -> Parts {
        Parts::default()
    }

    /// One attempt: `blocked` says whether it was refused, `text` what happened.
    pub fn add(&mut self, blocked: bool, text: impl Into<String>) {
        self.items.push((blocked, text.into()));
    }

    /// A remark that is not an attempt (it does not count for or against).
    pub fn note(&mut self, text: impl Into<String>) {
        self.items.push((true, format!("(note) {}", text.into())));
    }

    pub fn outcome(self) -> Outcome {
        let attempts = self
            .items
            .iter()
            .filter(|(_, t)| !t.starts_with("(note)"))
            .count();
        let blocked = attempts > 0 && self.items.iter().all(|(b, _)| *b);
        let mut detail: Vec<String> = self
            .items
            .into_iter()
            .map(|(b, t)| if b { t } else { format!("NOT BLOCKED: {t}") })
            .collect();
        if attempts == 0 {
            detail.push("nothing was attempted (missing argument?)".into());
        }
        Outcome {
            blocked,
            detail: detail.join("; "),
        }
    }
}

pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `EPERM (1)`, `ENOENT (2)`, ...
pub fn en(e: i32) -> String {
    if e < 0 {
        return format!("killed by signal {}", -e);
    }
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::ETXTBSY => "ETXTBSY",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EPIPE => "EPIPE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::ESOCKTNOSUPPORT => "ESOCKTNOSUPPORT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::ESTALE => "ESTALE",
        libc::EKEYREJECTED => "EKEYREJECTED",
        libc::EDQUOT => "EDQUOT",
        libc::EOVERFLOW => "EOVERFLOW",
        _ => "E?",
    };
    format!("{name} ({e})")
}

/// The errors that mean "not allowed" (a capability, Landlock, seccomp, DAC), as opposed to an
/// error about the (deliberately harmless) arguments, which means the call got through every
/// permission check.
pub fn refused(e: i32) -> bool {
    matches!(e, libc::EPERM | libc::EACCES | libc::ENOSYS) || e == -libc::SIGSYS
}

/// The result of a raw call: `Ok(value)` or `Err(errno)`.
pub fn ret(r: i64) -> Result<i64, i32> {
    if r < 0 { Err(errno()) } else { Ok(r) }
}

/// `ok` or the errno's name, for details.
pub fn show(r: &Result<i64, i32>) -> String {
    match r {
        Ok(v) => format!("succeeded ({v})"),
        Err(e) => en(*e),
    }
}

/// A refusal-type attempt: blocked if the call failed with a permission error.
pub fn add_refused(parts: &mut Parts, what: &str, r: Result<i64, i32>) {
    let blocked = matches!(r, Err(e) if refused(e));
    let mut text = format!("{what}: {}", show(&r));
    if let Err(e) = r
        && !refused(e)
    {
        text.push_str(" (past the permission checks: only the harmless arguments failed)");
    }
    parts.add(blocked, text);
}

/// An attempt that is blocked whenever it fails.
pub fn add_fails(parts: &mut Parts, what: &str, r: Result<i64, i32>) {
    parts.add(r.is_err(), format!("{what}: {}", show(&r)));
}

pub fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| CString::new("/nonexistent-nul").expect("no NUL"))
}

pub fn close(fd: i64) {
    if fd >= 0 {
        // SAFETY: closing a descriptor this probe opened.
        unsafe { libc::close(fd as i32) };
    }
}

/// open(2) on a path; a successful descriptor is closed unless `keep`.
pub fn open(path: &str, flags: i32, mode: u32) -> Result<i64, i32> {
    let c = cstr(path);
    // SAFETY: a valid C string.
    ret(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode) } as i64)
}

/// Opens and closes at once: did the open succeed?
pub fn try_open(path: &str, flags: i32) -> Result<i64, i32> {
    let r = open(path, flags, 0o644);
    if let Ok(fd) = r {
        close(fd);
    }
    r
}

/// Creates a new file (O_EXCL) and removes it again if that worked.
pub fn try_create(path: &str) -> Result<i64, i32> {
    let r = open(path, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o644);
    if let Ok(fd) = r {
        close(fd);
        let c = cstr(path);
        // SAFETY: a valid C string.
        unsafe { libc::unlink(c.as_ptr()) };
    }
    r
}

pub fn lstat(path: &str) -> Result<libc::stat, i32> {
    let c = cstr(path);
    // SAFETY: zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    if unsafe { libc::lstat(c.as_ptr(), &mut st) } == 0 {
        Ok(st)
    } else {
        Err(errno())
    }
}

pub fn stat(path: &str) -> Result<libc::stat, i32> {
    let c = cstr(path);
    // SAFETY: zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    if unsafe { libc::stat(c.as_ptr(), &mut st) } == 0 {
        Ok(st)
    } else {
        Err(errno())
    }
}

pub fn readlink(path: &str) -> Result<String, i32> {
    std::fs::read_link(path)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| e.raw_os_error().unwrap_or(0))
}

/// Reads up to `max` bytes of a file.
pub fn read_some(path: &str, max: usize) -> Result<Vec<u8>, i32> {
    let fd = open(path, libc::O_RDONLY, 0)?;
    let mut buf = vec![0u8; max];
    // SAFETY: reading into our own buffer.
    let n = unsafe { libc::read(fd as i32, buf.as_mut_ptr().cast(), max) };
    let e = errno();
    close(fd);
    if n < 0 {
        return Err(e);
    }
    buf.truncate(n as usize);
    Ok(buf)
}

pub fn read_text(path: &str) -> Result<String, i32> {
    std::fs::read_to_string(path).map_err(|e| e.raw_os_error().unwrap_or(0))
}

/// What became of a forked attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    Exited(i32),
    Signaled(i32),
    ForkFailed(i32),
    TimedOut,
}

impl Child {
    pub fn describe(self) -> String {
        match self {
            Child::Exited(c) => format!("child exited with {c}"),
            Child::Signaled(s) => format!("child killed by signal {s}"),
            Child::ForkFailed(e) => format!("fork failed: {}", en(e)),
            Child::TimedOut => "child timed out (killed)".into(),
        }
    }
}

/// Waits for `pid` for at most `timeout`, killing it after that.
pub fn wait_child(pid: i32, timeout: Duration) -> Child {
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            if libc::WIFEXITED(status) {
                return Child::Exited(libc::WEXITSTATUS(status));
            }
            if libc::WIFSIGNALED(status) {
                return Child::Signaled(libc::WTERMSIG(status));
            }
        } else if r < 0 && errno() != libc::EINTR {
            return Child::ForkFailed(errno());
        }
        if Instant::now() > deadline {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Child::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `f` in a forked child and returns how the child ended; `f`'s value is the exit status.
/// A panic in the child exits with 250.
pub fn in_child(timeout: Duration, f: impl FnOnce() -> i32) -> Child {
    // SAFETY: the probe is single-threaded, so the child may run arbitrary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Child::ForkFailed(errno());
    }
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(250);
        // SAFETY: leaving the child without running the parent's destructors or flushing its
        // buffers.
        unsafe { libc::_exit(code) };
    }
    wait_child(pid, timeout)
}

/// A forked attempt of one call: the child exits 0 when the call succeeded, else with the errno.
/// A child killed by a signal is reported as the negative signal number (`-SIGSYS` is a seccomp
/// kill, a refusal).
pub fn call_in_child(f: impl FnOnce() -> i64) -> Result<i64, i32> {
    match in_child(Duration::from_secs(10), || {
        if f() < 0 {
            match errno() {
                0 => 255,
                e => e.min(254),
            }
        } else {
            0
        }
    }) {
        Child::Exited(0) => Ok(0),
        Child::Exited(e) => Err(e),
        Child::Signaled(s) => Err(-s),
        // Anything else is reported as a failure that is not a permission refusal.
        Child::ForkFailed(e) => Err(e),
        Child::TimedOut => Err(libc::ETIMEDOUT),
    }
}

/// The name of the pack this probe belongs to (`$PACK_NAME`), if any.
pub fn pack_name() -> Option<String> {
    std::env::var("PACK_NAME").ok().filter(|s| !s.is_empty())
}

/// The package directory: `$PACK`, or else the directory above the probe's `bin/`.
pub fn pack_dir() -> String {
    if let Ok(p) = std::env::var("PACK")
        && !p.is_empty()
    {
        return p;
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().and_then(|p| p.parent()).map(|p| p.to_path_buf()))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/nonexistent".into())
}

/// A unique scratch path under /tmp for this process.
pub fn scratch(tag: &str) -> String {
    // SAFETY: getpid has no preconditions.
    format!("/tmp/.packd-probe-{tag}-{}", unsafe { libc::getpid() })
}

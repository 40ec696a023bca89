//! cgroups for sandboxes: one cgroup per app instance, in every hierarchy that matters.
//!
//! Three layouts exist and all work:
//!
//! - **unified** (pure v2 at `/sys/fs/cgroup`): memory, pids and cpu limits; devices through a
//!   `BPF_PROG_TYPE_CGROUP_DEVICE` program (v2 has no devices files);
//! - **hybrid** (v1 controllers plus a v2 hierarchy, e.g. at `/sys/fs/cgroup/unified`): limits
//!   through the v1 memory, pids, cpu and devices controllers; the v2 cgroup tracks the
//!   processes (and can kill them all at once) and gets the device program too;
//! - **legacy** (v1 only): v1 controllers, and the freezer to kill reliably.
//!
//! Only cgroups under the parent the caller names are created, changed or removed.
//!
//! (cgroups-rs, the crate the project map names, is not used: it cannot place cgroups in a
//! hybrid system's v2 hierarchy, has no device control on v2, hard-codes the mount points so
//! this logic could not be tested, and panics on unexpected input in places.)

mod bpf;
mod layout;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use layout::{Layout, parse_layout};

/// The v1 controllers a sandbox uses.
pub const V1_CONTROLLERS: [&str; 5] = ["memory", "pids", "cpu", "devices", "freezer"];

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Unavailable(String),
    /// Limits asked for that no hierarchy can enforce here: the controllers they need, and
    /// where delegation stops (the first cgroup on the way that does not offer them).
    #[error("{}", missing_message(controllers, stops_at, offered, *at_root, enable_error))]
    Missing {
        controllers: Vec<&'static str>,
        /// The cgroup whose `cgroup.controllers` lacks them (on v2), if there is a v2 hierarchy.
        stops_at: Option<PathBuf>,
        /// What it offers.
        offered: Vec<String>,
        /// Whether that cgroup is the root of packd's hierarchy (nothing above it to ask).
        at_root: bool,
        /// Why packd could not enable them in its parent, when the parent is packd's own.
        enable_error: Option<String>,
    },
    #[error("cannot install the device filter: {0}")]
    Bpf(String),
}

fn missing_message(
    controllers: &[&str],
    stops_at: &Option<PathBuf>,
    offered: &[String],
    at_root: bool,
    enable_error: &Option<String>,
) -> String {
    let names = controllers.join(", ");
    let (s, them, they, are) = if controllers.len() == 1 {
        ("", "it", "it", "is")
    } else {
        ("s", "them", "they", "are")
    };
    let plus = controllers
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    let Some(dir) = stops_at else {
        return format!(
            "its limits need the cgroup {names} controller{s}, and this system mounts no cgroup \
             hierarchy with {them}"
        );
    };
    let offered = if offered.is_empty() {
        "none of memory, pids, cpu".to_string()
    } else {
        offered.join(" ")
    };
    if at_root {
        format!(
            "its limits need the cgroup {names} controller{s}, which the cgroup2 hierarchy at {} \
             does not offer (it offers: {offered}): {they} {are} bound to a cgroup v1 hierarchy, or \
             whoever made this cgroup namespace kept {them}; boot with a unified hierarchy \
             (systemd.unified_cgroup_hierarchy=1), or have the parent enable {plus} in its \
             cgroup.subtree_control",
            dir.display()
        )
    } else {
        let parent = dir.parent().unwrap_or(dir);
        match enable_error {
            Some(e) => format!(
                "its limits need the cgroup {names} controller{s}, which {} does not offer (it \
                 offers: {offered}): packd could not enable {them} in \
                 {}/cgroup.subtree_control: {e}",
                dir.display(),
                parent.display(),
            ),
            None => format!(
                "its limits need the cgroup {names} controller{s}, which {} does not offer (it \
                 offers: {offered}): {} has not delegated {them}; enable {them} with \
                 `echo {plus} > {}/cgroup.subtree_control`",
                dir.display(),
                parent.display(),
                parent.display(),
            ),
        }
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A device the sandbox may use: `c 1:3 rwm`, `c 136:* rw`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceRule {
    /// 'c' (character) or 'b' (block).
    pub kind: char,
    /// `None` means any.
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// Any of 'r', 'w', 'm'.
    pub access: String,
}

impl DeviceRule {
    pub fn char(major: u32, minor: Option<u32>) -> Self {
        DeviceRule {
            kind: 'c',
            major: Some(major),
            minor,
            access: "rwm".into(),
        }
    }

    /// The v1 `devices.allow` line.
    pub fn v1_line(&self) -> String {
        let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
        format!(
            "{} {}:{} {}",
            self.kind,
            n(self.major),
            n(self.minor),
            self.access
        )
    }
}

/// Limits of one sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Limits {
    pub memory: Option<u64>,
    pub tasks: Option<u32>,
    /// 1–10000, 100 being the default share.
    pub cpu_weight: Option<u32>,
    /// The only devices the sandbox may open or create.
    pub devices: Vec<DeviceRule>,
}

/// One sandbox's cgroup: a directory per hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    /// The v2 directory, if the system has a v2 hierarchy.
    pub v2: Option<PathBuf>,
    /// The v1 directories, by controller name (`cpu` may share a mount with `cpuacct`).
    pub v1: Vec<(String, PathBuf)>,
}

impl Cgroup {
    /// The directories to join, one per hierarchy.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.v1.iter().map(|(_, d)| d.clone()).collect();
        dirs.extend(self.v2.clone());
        dirs.dedup();
        dirs
    }

    /// The cgroup of `rel` (e.g. `packd/system/hello.hello.42`) in `layout`, without creating it.
    pub fn at(layout: &Layout, rel: &Path) -> Cgroup {
        Cgroup {
            v2: layout.v2().map(|root| root.join(rel)),
            v1: V1_CONTROLLERS
                .iter()
                .filter_map(|c| layout.v1(c).map(|root| (c.to_string(), root.join(rel))))
                .collect(),
        }
    }

    /// Creates the cgroup (and its parents under each hierarchy's root) and applies `limits`.
    /// On failure, whatever was created is removed again.
    pub fn create(layout: &Layout, rel: &Path, limits: &Limits) -> Result<Cgroup, CgroupError> {
        let cg = Cgroup::at(layout, rel);
        let mut result = cg.make(layout, rel, limits);
        // Another daemon may have just removed an empty shared ancestor (`packd`): retry.
        for _ in 0..3 {
            match &result {
                Err(CgroupError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    result = cg.make(layout, rel, limits);
                }
                _ => break,
            }
        }
        if result.is_err() {
            let _ = cg.remove(Duration::ZERO);
        }
        result.map(|()| cg)
    }

    /// Writes the memory, task and CPU limits (not the devices, fixed at creation).
    pub fn set_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        let no_devices = Limits {
            devices: Vec::new(),
            ..limits.clone()
        };
        if let Some(dir) = &self.v2 {
            v2_limits(dir, &no_devices)?;
        }
        for (controller, dir) in &self.v1 {
            v1_limits(controller, dir, &no_devices)?;
        }
        Ok(())
    }

    fn make(&self, layout: &Layout, rel: &Path, limits: &Limits) -> Result<(), CgroupError> {
        // The controllers the limits need that no v1 hierarchy carries: v2 must.
        if let Some(root) = layout.v2() {
            make_v2_dirs(root, rel)?;
        }
        check_controllers(layout, rel, limits)?;
        if let Some(dir) = &self.v2 {
            v2_limits(dir, limits)?;
            if !limits.devices.is_empty() {
                bpf::attach_device_filter(dir, &limits.devices).map_err(CgroupError::Bpf)?;
            }
        }
        for (controller, dir) in &self.v1 {
            fs::create_dir_all(dir).map_err(io_err("create", dir))?;
            v1_limits(controller, dir, limits)?;
        }
        Ok(())
    }

    /// The processes in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let file = match (&self.v2, self.v1.first()) {
            (Some(dir), _) => dir.join("cgroup.procs"),
            (None, Some((_, dir))) => dir.join("cgroup.procs"),
            (None, None) => return Vec::new(),
        };
        fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Kills every process in the cgroup: at once through v2's `cgroup.kill`, else by freezing
    /// it (so nothing forks meanwhile), signalling each process and thawing.
    pub fn kill(&self) {
        if let Some(dir) = &self.v2
            && fs::write(dir.join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        let freezer = self
            .v1
            .iter()
            .find(|(c, _)| c == "freezer")
            .map(|(_, d)| d.join("freezer.state"));
        if let Some(f) = &freezer {
            let _ = fs::write(f, "FROZEN");
        }
        for pid in self.pids() {
            // SAFETY: kill with a pid read from our own cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Some(f) = &freezer {
            let _ = fs::write(f, "THAWED");
        }
    }

    /// Removes the cgroup's directories, waiting up to `patience` for exiting processes to
    /// leave. Missing directories are fine.
    pub fn remove(&self, patience: Duration) -> Result<(), CgroupError> {
        let deadline = Instant::now() + patience;
        let mut dirs: Vec<&PathBuf> = self.v1.iter().map(|(_, d)| d).collect();
        dirs.extend(self.v2.iter());
        for dir in dirs {
            loop {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => return Err(io_err("remove", dir)(e)),
                }
            }
        }
        Ok(())
    }
}

/// Creates `rel` under the v2 `root`, enabling memory, pids and cpu for the children of every
/// directory on the way below the root (packd's own subtree: `packd/`, `packd/system/`); the
/// root's own `cgroup.subtree_control` is its owner's to set (the parent's delegation).
fn make_v2_dirs(root: &Path, rel: &Path) -> Result<(), CgroupError> {
    let mut dir = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, part) in parts.iter().enumerate() {
        dir.push(part);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create", &dir)(e)),
        }
        // Intermediate directories hand the controllers on to their children.
        if i + 1 < parts.len() {
            enable_controllers(&dir);
        }
    }
    Ok(())
}

/// Checks that every controller `limits` need reaches the (existing) cgroup `rel`: through a
/// v1 hierarchy of its own, or offered to it on v2. Otherwise [`CgroupError::Missing`] names
/// them and where delegation stopped. (`make` checks a new cgroup; call this before
/// [`Cgroup::set_limits`] on one made with other limits, such as a spare.)
pub fn check_controllers(layout: &Layout, rel: &Path, limits: &Limits) -> Result<(), CgroupError> {
    let needed: Vec<&'static str> = needed_controllers(limits)
        .into_iter()
        .filter(|c| layout.v1(c).is_none())
        .collect();
    if needed.is_empty() {
        return Ok(());
    }
    match layout.v2() {
        Some(root) => check_v2_offers(root, rel, &needed),
        None => Err(CgroupError::Missing {
            controllers: needed,
            stops_at: None,
            offered: Vec::new(),
            at_root: false,
            enable_error: None,
        }),
    }
}

/// The controllers `limits` need (devices need none by name: v1's devices controller or a v2
/// device program, which every v2 cgroup takes).
pub fn needed_controllers(limits: &Limits) -> Vec<&'static str> {
    let mut out = Vec::new();
    if limits.memory.is_some() {
        out.push("memory");
    }
    if limits.tasks.is_some() {
        out.push("pids");
    }
    if limits.cpu_weight.is_some() {
        out.push("cpu");
    }
    out
}

/// Checks that the new cgroup `rel` under the v2 `root` was given every controller of
/// `needed`; otherwise names the first cgroup on the way (from the root down) that does not
/// offer them, which is where delegation stopped.
fn check_v2_offers(root: &Path, rel: &Path, needed: &[&'static str]) -> Result<(), CgroupError> {
    if needed.is_empty() {
        return Ok(());
    }
    let offered = |dir: &Path| -> Vec<String> {
        fs::read_to_string(dir.join("cgroup.controllers"))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let leaf = root.join(rel);
    let missing: Vec<&'static str> = needed
        .iter()
        .copied()
        .filter(|c| !offered(&leaf).iter().any(|o| o == c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // Walk down from the root: the first directory lacking one of them.
    let mut dir = root.to_path_buf();
    let mut chain = vec![dir.clone()];
    for part in rel.components() {
        dir.push(part);
        chain.push(dir.clone());
    }
    let stops = chain
        .into_iter()
        .find(|d| missing.iter().any(|c| !offered(d).iter().any(|o| o == c)))
        .unwrap_or(leaf);
    // Below the root, packd made the parent and enabled what it could there: ask again, for
    // the kernel's reason.
    let enable_error = stops
        .parent()
        .filter(|p| stops != root && *p != root)
        .and_then(|p| {
            missing.iter().find_map(|c| {
                fs::write(p.join("cgroup.subtree_control"), format!("+{c}"))
                    .err()
                    .map(|e| format!("+{c}: {e}"))
            })
        });
    Err(CgroupError::Missing {
        enable_error,
        controllers: missing,
        offered: offered(&stops)
            .into_iter()
            .filter(|c| ["memory", "pids", "cpu", "io", "cpuset"].contains(&c.as_str()))
            .collect(),
        at_root: stops == root,
        stops_at: Some(stops),
    })
}

/// Enables memory, pids and cpu for the children of `dir`, those its parent offers, one by one
/// (one the kernel refuses, cpu with a realtime thread about, costs only itself). A refusal
/// is not an error here: a launch whose limits need that controller is refused, naming it
/// ([`check_controllers`]).
fn enable_controllers(dir: &Path) {
    let offered = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    for c in ["memory", "pids", "cpu"] {
        if offered.split_whitespace().any(|o| o == c) {
            let _ = fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
        }
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    fs::write(&path, value).map_err(io_err("write", &path))
}

/// Writes `file` only if the kernel offers it (e.g. swap accounting may be off).
fn write_if_present(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    if dir.join(file).exists() {
        write(dir, file, value)
    } else {
        Ok(())
    }
}

fn v2_limits(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    let offered = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let has = |c: &str| offered.split_whitespace().any(|o| o == c);
    if let Some(m) = limits.memory
        && has("memory")
    {
        write(dir, "memory.max", &m.to_string())?;
        write_if_present(dir, "memory.swap.max", "0")?;
    }
    if let Some(t) = limits.tasks
        && has("pids")
    {
        write(dir, "pids.max", &t.to_string())?;
    }
    if let Some(w) = limits.cpu_weight
        && has("cpu")
    {
        write(dir, "cpu.weight", &w.to_string())?;
    }
    Ok(())
}

fn v1_limits(controller: &str, dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    match controller {
        "memory" => {
            if let Some(m) = limits.memory {
                write(dir, "memory.limit_in_bytes", &m.to_string())?;
                // Swap counts too, or the limit is only a suggestion.
                write_if_present(dir, "memory.memsw.limit_in_bytes", &m.to_string())?;
            }
        }
        "pids" => {
            if let Some(t) = limits.tasks {
                write(dir, "pids.max", &t.to_string())?;
            }
        }
        "cpu" => {
            if let Some(w) = limits.cpu_weight {
                // v1 shares: 1024 is the default, as 100 is v2's default weight.
                let shares = (u64::from(w) * 1024 / 100).max(2);
                write(dir, "cpu.shares", &shares.to_string())?;
            }
        }
        "devices" if !limits.devices.is_empty() => {
            write(dir, "devices.deny", "a")?;
            for rule in &limits.devices {
                write(dir, "devices.allow", &rule.v1_line())?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Joins the calling process to every directory of `dirs` (used by the sandbox helper first
/// thing, before it forks, so nothing it starts can be outside).
pub fn join(dirs: &[PathBuf]) -> io::Result<()> {
    let pid = std::process::id().to_string();
    for dir in dirs {
        fs::write(dir.join("cgroup.procs"), &pid)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot join {}: {e}", dir.display())))?;
    }
    Ok(())
}

/// Kills and removes every cgroup under `parent` (a daemon's own parent), then `parent`
/// itself, then its ancestors up to the hierarchy root when they are empty (another daemon may
/// still use them: then they stay). Used at daemon stop and by test harnesses.
pub fn remove_tree(layout: &Layout, parent: &Path) -> Result<(), CgroupError> {
    for child in children(layout, parent) {
        let cg = Cgroup::at(layout, &parent.join(child));
        cg.kill();
        cg.remove(Duration::from_secs(2))?;
    }
    let mut rel = parent.to_path_buf();
    loop {
        let mut kept = false;
        for root in layout.roots() {
            let dir = root.join(&rel);
            // A child that just went may keep its parent busy for a moment.
            let deadline = Instant::now() + Duration::from_millis(200);
            loop {
                match fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    // cgroupfs says EBUSY both for a child still going away (worth a short wait)
                    // and for children that stay (someone else's sandboxes: leave it).
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY)
                            && !has_child_cgroups(&dir)
                            && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => {
                        kept = true;
                        break;
                    }
                }
            }
        }
        if kept || !rel.pop() || rel.as_os_str().is_empty() {
            return Ok(());
        }
    }
}

fn has_child_cgroups(dir: &Path) -> bool {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        })
        .unwrap_or(false)
}

/// The sandbox cgroups (direct children) under `parent` in every hierarchy, to find leftovers
/// of a previous run.
pub fn children(layout: &Layout, parent: &Path) -> Vec<String> {
    let mut names: Vec<String> = layout
        .roots()
        .into_iter()
        .flat_map(|root| {
            fs::read_dir(root.join(parent))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests;

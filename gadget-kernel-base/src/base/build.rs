//! Building base packages: `busybox` from Debian's `busybox-static` package, `debianNN` from
//! `debootstrap --variant=minbase`. Both get the skeleton and are packed reproducibly.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use packfmt::image::{SpecialFiles, WriteOptions, write_image};

use super::skeleton;

/// Which base to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseKind {
    /// A static busybox and its applets: tiny, for tests and simple apps.
    Busybox {
        /// A local `busybox-static_*.deb`; fetched with `apt-get download` when absent.
        deb: Option<PathBuf>,
    },
    /// A Debian minbase root filesystem.
    Debian { suite: String, mirror: String },
}

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub kind: BaseKind,
    pub output: PathBuf,
    pub write: WriteOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{command} failed ({status}); {hint}")]
    Command {
        command: String,
        status: String,
        hint: String,
    },
    #[error("unknown Debian suite {0:?}: use bookworm (12), trixie (13) or bullseye (11)")]
    UnknownSuite(String),
    #[error("{0}")]
    Image(#[from] packfmt::ImageError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BuildError {
    let what = what.into();
    move |source| BuildError::Io { what, source }
}

/// The Debian release number of a suite, for the base's name (`debian12`).
pub fn debian_release(suite: &str) -> Option<u32> {
    match suite {
        "bullseye" => Some(11),
        "bookworm" => Some(12),
        "trixie" => Some(13),
        _ => None,
    }
}

/// Builds the base and writes the package to `opts.output`. Returns the base's name.
pub fn build_base(opts: &BuildOptions) -> Result<String, BuildError> {
    let work = tempfile::Builder::new()
        .prefix("pack-base-")
        .tempdir()
        .map_err(io_err("create a work directory"))?;
    let rootfs = work.path().join("rootfs");
    fs::create_dir(&rootfs).map_err(io_err("create the root file system directory"))?;
    let (name, version, summary, special) = match &opts.kind {
        BaseKind::Busybox { deb } => {
            let version = busybox_rootfs(work.path(), deb.as_deref(), &rootfs)?;
            (
                "busybox".to_string(),
                version,
                "A static busybox base: a shell and the usual tools",
                SpecialFiles::Reject,
            )
        }
        BaseKind::Debian { suite, mirror } => {
            let release =
                debian_release(suite).ok_or_else(|| BuildError::UnknownSuite(suite.clone()))?;
            debian_rootfs(suite, mirror, &rootfs)?;
            (
                format!("debian{release}"),
                format!("{release}"),
                "A minimal Debian base (debootstrap minbase)",
                // debootstrap leaves setuid tools (su, mount) and device nodes in /dev; the
                // sandbox mounts nosuid with its own /dev, so strip them.
                SpecialFiles::Strip,
            )
        }
    };
    skeleton::create(&rootfs).map_err(io_err("create the base's mount points"))?;
    let meta = rootfs.join("meta");
    fs::create_dir_all(&meta).map_err(io_err("create meta/"))?;
    // JSON strings are valid YAML scalars: quoting without a hand-written escaper.
    let quote = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    fs::write(
        meta.join("pack.yaml"),
        format!(
            "name: {name}\nversion: {}\ntype: base\nsummary: {}\n",
            quote(&version),
            quote(summary)
        ),
    )
    .map_err(io_err("write meta/pack.yaml"))?;
    let mut write = opts.write.clone();
    write.special_files = special;
    write_image(&rootfs, &opts.output, &write)?;
    Ok(name)
}

/// Unpacks busybox-static into `rootfs` with a symlink per applet; returns the package version.
fn busybox_rootfs(work: &Path, deb: Option<&Path>, rootfs: &Path) -> Result<String, BuildError> {
    let deb = match deb {
        Some(d) => d.to_path_buf(),
        None => {
            run(
                Command::new("apt-get")
                    .args(["download", "-q", "busybox-static"])
                    .current_dir(work),
                "check that apt can reach Debian's archive, or pass --deb busybox-static_*.deb",
            )?;
            find_deb(work, "busybox-static_")?
        }
    };
    let unpacked = work.join("deb");
    run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked),
        "is the file a busybox-static .deb?",
    )?;
    let version = output(
        Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&deb)
            .arg("Version"),
        "is the file a busybox-static .deb?",
    )?;
    let busybox = unpacked.join("bin/busybox");
    fs::create_dir_all(rootfs.join("bin")).map_err(io_err("create bin/"))?;
    fs::copy(&busybox, rootfs.join("bin/busybox"))
        .map_err(io_err(format!("copy {}", busybox.display())))?;
    fs::set_permissions(
        rootfs.join("bin/busybox"),
        fs::Permissions::from_mode(0o755),
    )
    .map_err(io_err("make busybox executable"))?;
    let applets = output(
        Command::new(&busybox).arg("--list-full"),
        "the busybox binary must run on this machine",
    )?;
    for applet in applets.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = rootfs.join(applet);
        if applet == "bin/busybox" || fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(format!("create {}", parent.display())))?;
        }
        symlink("/bin/busybox", &path).map_err(io_err(format!("link {applet}")))?;
    }
    // Debian versions may carry an epoch ("1:1.35.0-4"); pack versions allow ':' too, but keep
    // the upstream part readable.
    Ok(version.trim().to_string())
}

fn debian_rootfs(suite: &str, mirror: &str, rootfs: &Path) -> Result<(), BuildError> {
    run(
        Command::new("debootstrap")
            .args(["--variant=minbase", suite])
            .arg(rootfs)
            .arg(mirror),
        "check that debootstrap is installed and the mirror is reachable",
    )?;
    // Nothing of the build host's or of apt's caches belongs in a base.
    for dir in [
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "dev",
        "run",
        "tmp",
    ] {
        let path = rootfs.join(dir);
        if path.is_dir() {
            for entry in fs::read_dir(&path).map_err(io_err(format!("read {dir}")))? {
                let entry = entry.map_err(io_err(format!("read {dir}")))?;
                let p = entry.path();
                let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
                let r = if is_dir {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                r.map_err(io_err(format!("clean {}", p.display())))?;
            }
        }
    }
    Ok(())
}

fn find_deb(dir: &Path, prefix: &str) -> Result<PathBuf, BuildError> {
    fs::read_dir(dir)
        .map_err(io_err(format!("read {}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".deb"))
        })
        .ok_or_else(|| BuildError::Command {
            command: "apt-get download".into(),
            status: "no .deb was downloaded".into(),
            hint: "check apt's sources".into(),
        })
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn run(cmd: &mut Command, hint: &str) -> Result<(), BuildError> {
    output(cmd, hint).map(|_| ())
}

fn output(cmd: &mut Command, hint: &str) -> Result<String, BuildError> {
    let out = cmd.output().map_err(|e| BuildError::Command {
        command: describe(cmd),
        status: e.to_string(),
        hint: hint.to_string(),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or("").to_string();
        return Err(BuildError::Command {
            command: describe(cmd),
            status: if last.is_empty() {
                out.status.to_string()
            } else {
                format!("{}: {last}", out.status)
            },
            hint: hint.to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_map_to_release_names() {
        assert_eq!(debian_release("bookworm"), Some(12));
        assert_eq!(debian_release("sid"), None);
    }

    #[test]
    fn failing_commands_name_the_command_and_the_hint() {
        let err = run(&mut Command::new("false"), "try again").unwrap_err();
        assert_eq!(err.to_string(), "false failed (exit status: 1); try again");
        let err = run(&mut Command::new("/nonexistent/tool"), "install it").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/tool failed (No such file")
        );
    }
}

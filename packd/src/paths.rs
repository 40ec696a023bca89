//! The on-disk layout. Every path hangs off one root (`--root`, default `/`), so tests run many
//! isolated daemons side by side.

use std::path::{Path, PathBuf};

use packfmt::Revision;

/// The name of a pack's API socket in its directory.
pub const PACK_SOCKET_NAME: &str = "packd.socket";

#[derive(Debug, Clone)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `var/lib/packd`: the daemon's private state (root only).
    pub fn lib_dir(&self) -> PathBuf {
        self.root.join("var/lib/packd")
    }

    pub fn state_file(&self) -> PathBuf {
        self.lib_dir().join("state.json")
    }

    /// Where uploads are staged before they become a change (same file system as `packs/`).
    pub fn upload_dir(&self) -> PathBuf {
        self.lib_dir().join("tmp")
    }

    /// The device's assertions, one directory per remote.
    pub fn assertions_dir(&self) -> PathBuf {
        self.lib_dir().join("assertions")
    }

    /// Downloads from stores while they are incomplete (size-bounded, root's alone).
    pub fn download_cache(&self) -> PathBuf {
        self.root.join("var/cache/packd/downloads")
    }

    /// Remotes provisioned with the image: `etc/packd/remotes/NAME.url` (the store's URL) and
    /// `NAME.assert` (its root), added at start when no remote of that name is known.
    pub fn provisioned_remotes(&self) -> PathBuf {
        self.root.join("etc/packd/remotes")
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.lib_dir().join("packs")
    }

    /// `var/lib/packd/packs/NAME_REV.pack`.
    pub fn blob(&self, name: &str, rev: Revision) -> PathBuf {
        self.blobs_dir().join(format!("{name}_{rev}.pack"))
    }

    pub fn profiles_dir(&self) -> PathBuf {
        self.lib_dir().join("profiles")
    }

    /// `var/lib/packd/profiles/NAME/REV`: the compiled seccomp and generated AppArmor
    /// profiles of a revision's apps.
    pub fn profile_dir(&self, name: &str, rev: Revision) -> PathBuf {
        self.profiles_dir().join(name).join(rev.to_string())
    }

    /// The compiled seccomp profile of app `app`.
    pub fn seccomp_profile(&self, name: &str, rev: Revision, app: &str) -> PathBuf {
        self.profile_dir(name, rev).join(format!("{app}.seccomp"))
    }

    /// The AppArmor profile of app `app`.
    pub fn apparmor_profile(&self, name: &str, rev: Revision, app: &str) -> PathBuf {
        self.profile_dir(name, rev).join(format!("{app}.apparmor"))
    }

    /// `pack/`: mount points and launchers.
    pub fn mount_base(&self) -> PathBuf {
        self.root.join("pack")
    }

    /// `pack/NAME`.
    pub fn pack_dir(&self, name: &str) -> PathBuf {
        self.mount_base().join(name)
    }

    /// `pack/NAME/REV`: the read-only mount.
    pub fn mount_dir(&self, name: &str, rev: Revision) -> PathBuf {
        self.pack_dir(name).join(rev.to_string())
    }

    /// `pack/NAME/current` → REV.
    pub fn current_link(&self, name: &str) -> PathBuf {
        self.pack_dir(name).join("current")
    }

    /// `pack/bin`: launchers for users' PATH.
    pub fn bin_dir(&self) -> PathBuf {
        self.mount_base().join("bin")
    }

    /// `var/pack/NAME`.
    pub fn data_root(&self, name: &str) -> PathBuf {
        self.root.join("var/pack").join(name)
    }

    /// `var/pack/NAME/REV`.
    pub fn data_dir(&self, name: &str, rev: Revision) -> PathBuf {
        self.data_root(name).join(rev.to_string())
    }

    /// `var/pack/NAME/common`.
    pub fn common_dir(&self, name: &str) -> PathBuf {
        self.data_root(name).join("common")
    }

    /// `run/packd`: runtime files (private /tmp of each pack, sockets of sandboxes).
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run/packd")
    }

    /// `run/packd/tmp`: the packs' `/tmp`s, `NAME/UID` (see `launch::tmp`).
    pub fn private_tmps(&self) -> PathBuf {
        self.run_dir().join("tmp")
    }

    /// `run/packd/cgroup-parent`: where this daemon's sandbox cgroups live (relative to each
    /// hierarchy's root), for whoever cleans up after a daemon that was killed.
    pub fn cgroup_parent_file(&self) -> PathBuf {
        self.run_dir().join("cgroup-parent")
    }

    /// `run/packd/api` (root 0700): the API sockets bound into sandboxes, one directory per
    /// pack and access (`NAME.control/packd.socket`, `NAME.shutdown/packd.socket`).
    pub fn pack_sockets_dir(&self) -> PathBuf {
        self.run_dir().join("api")
    }

    /// The directory holding the API socket of `name`'s apps that have `access` (bound into
    /// their sandboxes at `/run/packd`).
    pub fn pack_socket_dir(&self, name: &str, access: interfaces::grants::Socket) -> PathBuf {
        let kind = match access {
            interfaces::grants::Socket::Control => "control",
            interfaces::grants::Socket::Shutdown => "shutdown",
        };
        self.pack_sockets_dir().join(format!("{name}.{kind}"))
    }

    /// The API socket of `name`'s apps that have `access`.
    pub fn pack_socket(&self, name: &str, access: interfaces::grants::Socket) -> PathBuf {
        self.pack_socket_dir(name, access).join(PACK_SOCKET_NAME)
    }

    /// `run/packd/services` (root 0700): each running service's monitor socket
    /// (`PACK.APP.socket`), its record (`PACK.APP.json`), what it left when it ended
    /// (`PACK.APP.exit`) and, for systemd, its monitor's spec (`PACK.APP.spec.json`).
    pub fn services_dir(&self) -> PathBuf {
        self.run_dir().join("services")
    }

    /// `run/packd/netns` (root 0700): each pack's network namespace, pinned by a bind mount
    /// (`NAME`), so a restarted packd, and the services that outlived it, share it still.
    pub fn netns_dir(&self) -> PathBuf {
        self.run_dir().join("netns")
    }

    /// `run/packd/notify/PACK.APP.socket`: a `notify` service's `NOTIFY_SOCKET` on the host.
    pub fn notify_socket(&self, pack: &str, app: &str) -> PathBuf {
        self.run_dir()
            .join("notify")
            .join(format!("{pack}.{app}.socket"))
    }

    /// `var/log/packd/NAME.APP.log`: a service's or hook's output.
    pub fn log_file(&self, pack: &str, app: &str) -> PathBuf {
        self.root
            .join("var/log/packd")
            .join(format!("{pack}.{app}.log"))
    }

    /// The default API socket, `run/packd.socket`.
    pub fn socket(&self) -> PathBuf {
        self.root.join("run/packd.socket")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_design() {
        let p = Paths::new("/r");
        let x1 = Revision::Local(1);
        assert_eq!(p.state_file(), Path::new("/r/var/lib/packd/state.json"));
        assert_eq!(
            p.blob("hello", x1),
            Path::new("/r/var/lib/packd/packs/hello_x1.pack")
        );
        assert_eq!(p.mount_dir("hello", x1), Path::new("/r/pack/hello/x1"));
        assert_eq!(p.current_link("hello"), Path::new("/r/pack/hello/current"));
        assert_eq!(p.data_dir("hello", x1), Path::new("/r/var/pack/hello/x1"));
        assert_eq!(p.common_dir("hello"), Path::new("/r/var/pack/hello/common"));
        assert_eq!(p.bin_dir(), Path::new("/r/pack/bin"));
        assert_eq!(p.socket(), Path::new("/r/run/packd.socket"));
        assert_eq!(p.profiles_dir(), Path::new("/r/var/lib/packd/profiles"));
    }
}

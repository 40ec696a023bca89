//! A real `pack-store` for the tests: made with `pack-store init` in a temporary directory,
//! served on a free loopback port, stopped (by pid) when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::{Env, Run, bin_dir, write_pack_dir};

/// A `hello` pack of `version` (its app prints `hello VERSION`) built by `env` into `dir`,
/// with `hook` (its name and script) when given.
pub fn hello_pack(dir: &Path, env: &Env, version: &str, hook: Option<(&str, &str)>) -> PathBuf {
    let parent = dir.join(format!("src-{version}"));
    std::fs::create_dir_all(&parent).expect("source dir");
    let app = format!("#!/bin/sh\necho hello {version}\n");
    let hook_path = hook.map(|(name, _)| format!("meta/hooks/{name}"));
    let mut files = vec![("bin/hello", app.as_str())];
    if let (Some(path), Some((_, script))) = (&hook_path, hook) {
        files.push((path.as_str(), script));
    }
    let src = write_pack_dir(
        &parent,
        "hello",
        &format!(
            "name: hello\nversion: '{version}'\nsummary: Says hello\nbase: busybox\napps:\n  hello:\n    command: bin/hello\n"
        ),
        &files,
    );
    let built = env.build(&src);
    let kept = dir.join(format!("hello_{version}.pack"));
    std::fs::rename(built, &kept).expect("keep the pack");
    kept
}

pub struct StoreServer {
    pub dir: tempfile::TempDir,
    /// The store's directory (inside `dir`).
    pub store: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The publisher token of `acme`, added at start.
    pub token: String,
    child: Option<Child>,
}

/// `pack-store ARGS` with the environment of `url` and `token` (when given).
pub fn pack_store(url: Option<&str>, token: Option<&str>, args: &[&str]) -> Run {
    let mut c = Command::new(bin_dir().join("pack-store"));
    c.args(args)
        .env_remove("PACK_STORE_URL")
        .env_remove("PACK_STORE_TOKEN")
        .stdin(Stdio::null());
    if let Some(u) = url {
        c.env("PACK_STORE_URL", u);
    }
    if let Some(t) = token {
        c.env("PACK_STORE_TOKEN", t);
    }
    Run::from(c.output().expect("run pack-store"))
}

impl StoreServer {
    /// A new store with one publisher (`acme`), served.
    pub fn start() -> StoreServer {
        let dir = tempfile::Builder::new()
            .prefix("packd-e2e-store-")
            .tempdir()
            .expect("temp dir");
        let store = dir.path().join("store");
        let s = store.to_str().expect("utf-8 path");
        pack_store(None, None, &["init", s]).ok();
        let token = pack_store(None, None, &["publisher", "add", s, "acme"])
            .ok()
            .trim()
            .to_string();
        let mut server = StoreServer {
            dir,
            store,
            url: String::new(),
            token,
            child: None,
        };
        server.serve();
        server
    }

    /// A new store with busybox released to stable and hello registered (the store tests'
    /// usual start).
    pub fn with_base() -> StoreServer {
        let store = StoreServer::start();
        store.publish(&["register", "busybox"]).ok();
        store.publish(&["register", "hello"]).ok();
        let base = crate::busybox_base();
        let base = base.to_str().expect("utf-8 path");
        store.publish(&["upload", base, "--release", "stable"]).ok();
        store
    }

    /// Starts serving (again), on a new port.
    pub fn serve(&mut self) {
        assert!(self.child.is_none(), "the store is being served already");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("store.log"))
            .expect("store log");
        let mut child = Command::new(bin_dir().join("pack-store"))
            .args(["serve"])
            .arg(&self.store)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start pack-store serve");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("first line");
        self.url = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .unwrap_or_else(|| panic!("unexpected first line from pack-store serve: {line:?}"))
            .to_string();
        self.child = Some(child);
    }

    /// Stops serving (the store stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `pack-store ARGS` as publisher `acme` against this store.
    pub fn publish(&self, args: &[&str]) -> Run {
        pack_store(Some(&self.url), Some(&self.token), args)
    }

    pub fn root_assert(&self) -> PathBuf {
        self.store.join("root.assert")
    }

    /// The store's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("store.log")).unwrap_or_default()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        Path::new(&self.store).join(rel)
    }
}

impl Drop for StoreServer {
    fn drop(&mut self) {
        self.stop();
    }
}

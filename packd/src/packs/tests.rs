//! The pack manager's handlers through the real engine, against fake mounts and a root in a
//! temporary directory: no root needed, no kernel touched.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::engine::Engine;
use crate::state::{Change, State, StateError, Status};
use crate::system::fake::FakeMounts;

const BASE: &str = "name: core\nversion: '1'\ntype: base\n";

struct Setup {
    _dir: tempfile::TempDir,
    paths: Paths,
    store: Arc<Store>,
    mounts: Arc<FakeMounts>,
    packs: Arc<PackManager>,
    engine: Engine,
    queue: Queue,
}

fn noop(_: &PackManager, _: &TaskCtx<'_>) -> Result<(), PackError> {
    Ok(())
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::new(dir.path());
    std::fs::create_dir_all(paths.upload_dir()).unwrap();
    let store = Arc::new(Store::open(&paths.state_file()).unwrap());
    let mounts = Arc::new(FakeMounts::default());
    let queue = Queue::default();
    let packs = PackManager::new(PackManagerParts {
        paths: paths.clone(),
        store: store.clone(),
        queue: queue.clone(),
        mounts: mounts.clone(),
        profiles: Profiles {
            paths: paths.clone(),
            apparmor: false,
        },
        pack_binary: "/usr/bin/pack".into(),
        networks: Arc::new(PackNetworks::new(paths.netns_dir())),
    });
    let mut registry = Registry::default();
    packs.register(&mut registry);
    // The connection and service managers' tasks are theirs to test.
    for kind in [
        TaskKind::AutoConnect,
        TaskKind::DisconnectAll,
        TaskKind::StopServices,
    ] {
        registry.register(kind, &packs, noop, noop);
    }
    let engine = Engine::start(store.clone(), registry, queue.clone());
    Setup {
        _dir: dir,
        paths,
        store,
        mounts,
        packs,
        engine,
        queue,
    }
}

impl Setup {
    /// Stages an upload of `yaml` and plans its install (what `PackManager::install` does
    /// after inspecting a real image).
    fn install(&self, yaml: &str) -> u64 {
        let staged = self.paths.upload_dir().join("upload-1.pack");
        std::fs::write(&staged, b"an image").unwrap();
        let meta =
            packfmt::PackMeta::from_yaml(yaml.as_bytes(), packfmt::meta::MetaSource::PackYaml)
                .unwrap();
        let upload = Upload {
            meta,
            staged,
            size: 8,
            sha3_384: String::new(),
            label: "\"core.pack\"".into(),
            from_store: None,
        };
        let id = self.store.update(|s| plan::install(s, upload)).unwrap();
        self.queue.enqueue(id);
        id
    }

    fn wait(&self, id: u64) -> Change {
        for _ in 0..1000 {
            let c = self.store.read(|s| s.changes[&id].clone());
            if c.is_ready() && c.ready_time.is_some() {
                return c;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("change {id} did not finish");
    }

    fn state(&self) -> State {
        self.store.read(State::clone)
    }
}

#[test]
fn an_install_moves_the_upload_mounts_it_and_links_it() {
    let s = setup();
    let c = s.wait(s.install(BASE));
    assert_eq!(c.status(), Status::Done, "{c:?}");
    let blob = s.paths.blob("core", Revision::Local(1));
    assert_eq!(std::fs::read(&blob).unwrap(), b"an image");
    assert!(!s.paths.upload_dir().join("upload-1.pack").exists());
    assert_eq!(
        s.mounts.targets(),
        [s.paths.mount_dir("core", Revision::Local(1))]
    );
    assert_eq!(
        std::fs::read_link(s.paths.current_link("core")).unwrap(),
        std::path::Path::new("x1")
    );
    assert_eq!(s.state().packs["core"].current, Revision::Local(1));
    s.engine.stop();
}

#[test]
fn a_mount_that_fails_undoes_the_install_and_leaves_nothing() {
    let s = setup();
    *s.mounts.fail_under.lock().unwrap() = Some(s.paths.blobs_dir());
    let c = s.wait(s.install(BASE));
    assert_eq!(c.status(), Status::Error);
    assert!(c.err.as_deref().unwrap().contains("cannot mount"), "{c:?}");
    assert!(s.state().packs.is_empty());
    assert!(!s.paths.blob("core", Revision::Local(1)).exists());
    assert!(
        !s.paths.pack_dir("core").exists(),
        "the mount point went too"
    );
    assert!(s.mounts.targets().is_empty());
    s.engine.stop();
}

#[test]
fn a_removal_unmounts_and_forgets_the_pack() {
    let s = setup();
    s.wait(s.install(BASE));
    let id = s.packs.remove("core", false).unwrap();
    let c = s.wait(id);
    assert_eq!(c.status(), Status::Done, "{c:?}");
    assert!(s.state().packs.is_empty());
    assert!(s.mounts.targets().is_empty());
    assert!(
        s.mounts
            .calls()
            .iter()
            .any(|c| c.starts_with("unmount") && c.ends_with("pack/core/x1"))
    );
    assert!(!s.paths.blob("core", Revision::Local(1)).exists());
    s.engine.stop();
}

#[test]
fn boot_mounts_what_is_missing_and_leaves_what_is_mounted() {
    let s = setup();
    s.wait(s.install(BASE));
    s.engine.stop();
    // A reboot: nothing is mounted, and `current` is gone.
    s.mounts
        .unmount(&s.paths.mount_dir("core", Revision::Local(1)))
        .unwrap();
    std::fs::remove_file(s.paths.current_link("core")).unwrap();
    s.packs.boot();
    assert_eq!(
        s.mounts.targets(),
        [s.paths.mount_dir("core", Revision::Local(1))]
    );
    assert!(s.paths.current_link("core").exists());
    let before = s.mounts.calls().len();
    // Mounted already (packd restarted, the system did not): nothing is done.
    s.packs.boot();
    assert_eq!(s.mounts.calls().len(), before);
}

#[test]
fn an_upload_nobody_owns_is_removed_at_start() {
    let s = setup();
    let stray = s.paths.upload_dir().join("upload-stray.pack");
    std::fs::write(&stray, b"x").unwrap();
    s.store
        .update(|st| {
            // An install under way owns its upload.
            with_install(st, s.paths.upload_dir().join("upload-kept.pack"));
            Ok::<_, StateError>(())
        })
        .unwrap();
    std::fs::write(s.paths.upload_dir().join("upload-kept.pack"), b"x").unwrap();
    s.engine.stop();
    s.packs.clean_uploads();
    assert!(!stray.exists());
    assert!(s.paths.upload_dir().join("upload-kept.pack").exists());
}

fn with_install(s: &mut State, staged: std::path::PathBuf) {
    let meta =
        packfmt::PackMeta::from_yaml(BASE.as_bytes(), packfmt::meta::MetaSource::PackYaml).unwrap();
    s.add_change(
        "install-pack",
        "Install".into(),
        Plan::Install {
            name: "core".into(),
            revision: Revision::Local(1),
            meta: Box::new(meta),
            staged,
            size: 1,
            sha3_384: String::new(),
            origin: None,
        },
        vec![(TaskKind::PreparePack, String::new())],
    );
}

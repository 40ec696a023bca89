use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::error::Error;
use crate::state::{Plan, Store, TaskKind};

/// Records every call; fails `do` of the kinds in `fail_do` and `undo` of those in `fail_undo`;
/// aborts the change while `do` of `abort_in` runs (as root would, from the API).
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
    fail_do: Vec<TaskKind>,
    fail_undo: Vec<TaskKind>,
    abort_in: Option<TaskKind>,
}

impl Handlers for Arc<Fake> {
    fn run(&self, mode: Mode, ctx: &TaskCtx<'_>) -> Result<()> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("{:?} {:?}", mode, ctx.kind));
        let fail = match mode {
            Mode::Do => &self.fail_do,
            Mode::Undo => &self.fail_undo,
        };
        if fail.contains(&ctx.kind) {
            return Err(Error::bad(format!("{:?} failed", ctx.kind)));
        }
        if mode == Mode::Do && self.abort_in == Some(ctx.kind) {
            ctx.store().update(|s| {
                s.changes
                    .get_mut(&ctx.change_id)
                    .unwrap()
                    .abort("aborted")
                    .unwrap();
                Ok(())
            })?;
        }
        if mode == Mode::Do {
            ctx.set("ran", &true)?;
        }
        Ok(())
    }
}

const KINDS: [TaskKind; 4] = [
    TaskKind::PreparePack,
    TaskKind::MountPack,
    TaskKind::CopyData,
    TaskKind::LinkPack,
];

fn add_change(store: &Store) -> u64 {
    store
        .update(|s| {
            Ok(s.add_change(
                "install-pack",
                "Install".into(),
                Plan::Remove {
                    name: "x".into(),
                    revisions: vec![],
                    purge: false,
                },
                KINDS.iter().map(|k| (*k, format!("{k:?}"))).collect(),
            ))
        })
        .unwrap()
}

fn wait_ready(store: &Store, id: u64) -> Change {
    for _ in 0..500 {
        let c = store.read(|s| s.changes[&id].clone());
        if c.is_ready() && c.ready_time.is_some() {
            return c;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("change {id} never finished");
}

fn setup(fake: Fake) -> (tempfile::TempDir, Arc<Store>, Arc<Fake>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("state.json")).unwrap());
    (dir, store, Arc::new(fake))
}

#[test]
fn runs_every_task_in_order() {
    let (_d, store, fake) = setup(Fake::default());
    let id = add_change(&store);
    let engine = Engine::start(store.clone(), Box::new(fake.clone()));
    engine.enqueue(id);
    let c = wait_ready(&store, id);
    engine.stop();
    assert_eq!(c.status(), Status::Done);
    assert!(c.tasks.iter().all(|t| t.get::<bool>("ran") == Some(true)));
    assert_eq!(
        *fake.calls.lock().unwrap(),
        [
            "Do PreparePack",
            "Do MountPack",
            "Do CopyData",
            "Do LinkPack"
        ]
    );
}

#[test]
fn failure_undoes_finished_tasks_in_reverse() {
    let (_d, store, fake) = setup(Fake {
        fail_do: vec![TaskKind::CopyData],
        ..Default::default()
    });
    let id = add_change(&store);
    let engine = Engine::start(store.clone(), Box::new(fake.clone()));
    engine.enqueue(id);
    let c = wait_ready(&store, id);
    engine.stop();
    assert_eq!(c.status(), Status::Error);
    assert_eq!(c.err.as_deref(), Some("CopyData failed"));
    let statuses: Vec<Status> = c.tasks.iter().map(|t| t.status).collect();
    assert_eq!(
        statuses,
        [Status::Undone, Status::Undone, Status::Error, Status::Hold]
    );
    assert_eq!(
        *fake.calls.lock().unwrap(),
        [
            "Do PreparePack",
            "Do MountPack",
            "Do CopyData",
            "Undo MountPack",
            "Undo PreparePack"
        ]
    );
    assert!(c.tasks[2].log[0].ends_with("ERROR CopyData failed"));
}

#[test]
fn failed_undo_is_logged_and_undoing_goes_on() {
    let (_d, store, fake) = setup(Fake {
        fail_do: vec![TaskKind::LinkPack],
        fail_undo: vec![TaskKind::MountPack],
        ..Default::default()
    });
    let id = add_change(&store);
    let engine = Engine::start(store.clone(), Box::new(fake.clone()));
    engine.enqueue(id);
    let c = wait_ready(&store, id);
    engine.stop();
    let statuses: Vec<Status> = c.tasks.iter().map(|t| t.status).collect();
    assert_eq!(
        statuses,
        [Status::Undone, Status::Error, Status::Undone, Status::Error]
    );
    assert!(c.tasks[1].log[0].contains("undo failed: MountPack failed"));
}

#[test]
fn a_task_left_doing_by_a_crash_runs_again_on_start() {
    let (_d, store, fake) = setup(Fake::default());
    let id = add_change(&store);
    // As if the daemon died while running the second task.
    store
        .update(|s| {
            let c = s.changes.get_mut(&id).unwrap();
            c.tasks[0].status = Status::Done;
            c.tasks[1].status = Status::Doing;
            Ok(())
        })
        .unwrap();
    let engine = Engine::start(store.clone(), Box::new(fake.clone()));
    let c = wait_ready(&store, id);
    engine.stop();
    assert_eq!(c.status(), Status::Done);
    assert_eq!(
        *fake.calls.lock().unwrap(),
        ["Do MountPack", "Do CopyData", "Do LinkPack"]
    );
}

#[test]
fn a_change_caught_undoing_finishes_undoing() {
    let (_d, store, fake) = setup(Fake::default());
    let id = add_change(&store);
    store
        .update(|s| {
            let c = s.changes.get_mut(&id).unwrap();
            c.tasks[0].status = Status::Undo;
            c.tasks[1].status = Status::Undoing;
            c.tasks[2].status = Status::Error;
            c.tasks[3].status = Status::Hold;
            Ok(())
        })
        .unwrap();
    let engine = Engine::start(store.clone(), Box::new(fake.clone()));
    let c = wait_ready(&store, id);
    engine.stop();
    assert_eq!(c.status(), Status::Error);
    assert_eq!(
        *fake.calls.lock().unwrap(),
        ["Undo MountPack", "Undo PreparePack"]
    );
}

#[test]
fn an_abort_holds_what_has_not_run_and_undoes_what_has() {
    let (_d, store, fake) = setup(Fake {
        abort_in: Some(TaskKind::MountPack),
        ..Default::default()
    });
    let id = add_change(&store);
    let engine = Engine::start(store.clone(), Box::new(fake.clone()));
    engine.enqueue(id);
    let c = wait_ready(&store, id);
    engine.stop();
    assert_eq!(c.err.as_deref(), Some("aborted"));
    let statuses: Vec<Status> = c.tasks.iter().map(|t| t.status).collect();
    // The task under way finished, then was undone with the one before it.
    assert_eq!(
        statuses,
        [Status::Undone, Status::Undone, Status::Hold, Status::Hold]
    );
    assert_eq!(
        *fake.calls.lock().unwrap(),
        [
            "Do PreparePack",
            "Do MountPack",
            "Undo MountPack",
            "Undo PreparePack"
        ]
    );
    // A finished change cannot be aborted.
    assert!(
        store
            .read(|s| s.changes[&id].clone())
            .abort("again")
            .unwrap_err()
            .contains("only unfinished")
    );
}

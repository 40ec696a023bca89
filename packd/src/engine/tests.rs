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

/// What the fake records on a task it ran.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Ran {
    ran: Option<bool>,
}

impl Fake {
    fn do_task(&self, ctx: &TaskCtx<'_>) -> Result<(), Error> {
        self.run(Mode::Do, ctx)
    }

    fn undo_task(&self, ctx: &TaskCtx<'_>) -> Result<(), Error> {
        self.run(Mode::Undo, ctx)
    }

    fn run(&self, mode: Mode, ctx: &TaskCtx<'_>) -> Result<(), Error> {
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
                Ok::<_, StateError>(())
            })?;
        }
        if mode == Mode::Do {
            ctx.save(&Ran { ran: Some(true) })?;
        }
        Ok(())
    }
}

fn start(store: &Arc<Store>, fake: &Arc<Fake>) -> Engine {
    let mut registry = Registry::default();
    for kind in KINDS {
        registry.register(kind, fake, Fake::do_task, Fake::undo_task);
    }
    Engine::start(store.clone(), registry, Queue::default())
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
            Ok::<_, StateError>(s.add_change(
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
    let engine = start(&store, &fake);
    engine.enqueue(id);
    let c = wait_ready(&store, id);
    engine.stop();
    assert_eq!(c.status(), Status::Done);
    assert!(
        c.tasks
            .iter()
            .all(|t| t.data.get("ran") == Some(&serde_json::json!(true)))
    );
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
    let engine = start(&store, &fake);
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
    let engine = start(&store, &fake);
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
            Ok::<_, StateError>(())
        })
        .unwrap();
    let engine = start(&store, &fake);
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
            Ok::<_, StateError>(())
        })
        .unwrap();
    let engine = start(&store, &fake);
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
    let engine = start(&store, &fake);
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

#[test]
fn a_kind_without_a_handler_fails_its_change_with_the_reason() {
    let (_d, store, fake) = setup(Fake::default());
    let id = add_change(&store);
    // Only the first two kinds have handlers.
    let mut registry = Registry::default();
    for kind in &KINDS[..2] {
        registry.register(*kind, &fake, Fake::do_task, Fake::undo_task);
    }
    assert_eq!(registry.missing().len(), TaskKind::ALL.len() - 2);
    let engine = Engine::start(store.clone(), registry, Queue::default());
    engine.enqueue(id);
    let c = wait_ready(&store, id);
    engine.stop();
    assert_eq!(c.status(), Status::Error);
    assert!(
        c.err
            .as_deref()
            .unwrap()
            .contains("no handler for CopyData"),
        "{c:?}"
    );
}

#[test]
fn around_hooks_run_before_and_after_every_task() {
    let (_d, store, fake) = setup(Fake::default());
    let id = add_change(&store);
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut registry = Registry::default();
    for kind in KINDS {
        registry.register(kind, &fake, Fake::do_task, Fake::undo_task);
    }
    let c2 = count.clone();
    registry.around(move || {
        c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    let engine = Engine::start(store.clone(), registry, Queue::default());
    engine.enqueue(id);
    wait_ready(&store, id);
    engine.stop();
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        2 * KINDS.len()
    );
}

#[test]
fn typed_records_survive_and_fields_are_computed_once() {
    #[derive(Default, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Rec {
        old_current: Option<Option<String>>,
        copies: Option<Vec<String>>,
    }
    let (_d, store, _) = setup(Fake::default());
    let id = add_change(&store);
    let task_id = store.read(|s| s.changes[&id].tasks[0].id);
    let ctx = TaskCtx {
        store: &store,
        change_id: id,
        task_id,
        kind: KINDS[0],
        plan: store.read(|s| s.changes[&id].plan.clone()),
    };
    let mut rec: Rec = ctx.data();
    let mut computed = 0;
    let first = ctx
        .once(
            &mut rec,
            |r| &mut r.copies,
            || {
                computed += 1;
                Ok::<_, StateError>(vec!["a".to_string()])
            },
        )
        .unwrap();
    // A re-run (after a crash) reads what was recorded instead of computing it again.
    let mut again: Rec = ctx.data();
    let second = ctx
        .once(
            &mut again,
            |r| &mut r.copies,
            || Ok::<_, StateError>(vec!["b".to_string()]),
        )
        .unwrap();
    assert_eq!(
        (first, second, computed),
        (vec!["a".to_string()], vec!["a".to_string()], 1)
    );
    // An older packd's record (string keys in kebab-case) reads as the same type.
    store
        .update(|s| {
            let t = s.changes.get_mut(&id).unwrap().task_mut(task_id).unwrap();
            t.data.insert("old-current".into(), serde_json::json!("x1"));
            Ok::<_, StateError>(())
        })
        .unwrap();
    assert_eq!(ctx.data::<Rec>().old_current, Some(Some("x1".to_string())));
    assert_eq!(ctx.data_of::<Rec>(KINDS[0]).unwrap().copies.unwrap(), ["a"]);
}

//! The task runner: executes changes one task at a time, persisting the state around every step,
//! and undoes the finished tasks in reverse when one fails.
//!
//! Crash model: a task is marked `Doing` (or `Undoing`) and saved *before* its handler runs, and
//! `Done` (or `Undone`) after. A daemon killed in between finds the task still `Doing` at the next
//! start and runs it again, so every handler must be idempotent. A change in undo mode finishes
//! undoing.

pub mod registry;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use registry::{Registry, TaskHandler};

use crate::error::Error;
use crate::state::{Change, Plan, StateError, Status, Store, TaskKind, now};

/// Finished changes are forgotten after a day…
pub const PRUNE_AFTER: u64 = 24 * 3600;
/// …or beyond the newest 200.
pub const KEEP_FINISHED: usize = 200;

/// Whether a handler is asked to do or to undo its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Do,
    Undo,
}

/// What a handler sees of its task, and how it records data for a later undo.
pub struct TaskCtx<'a> {
    store: &'a Store,
    pub change_id: u64,
    pub task_id: u64,
    pub kind: TaskKind,
    pub plan: Plan,
}

impl TaskCtx<'_> {
    pub fn store(&self) -> &Store {
        self.store
    }

    /// What this task recorded so far, as its handler's own type (the default when nothing
    /// was recorded yet, or when an older packd recorded something else).
    pub fn data<T: DeserializeOwned + Default>(&self) -> T {
        self.data_of_task(self.task_id).unwrap_or_default()
    }

    /// What the task of kind `kind` in this change recorded (another task's record, e.g. what
    /// a refresh's `copy-data` copied, for its `cleanup`).
    pub fn data_of<T: DeserializeOwned>(&self, kind: TaskKind) -> Option<T> {
        let id = self.store.read(|s| {
            s.changes
                .get(&self.change_id)
                .and_then(|c| c.tasks.iter().find(|t| t.kind == kind))
                .map(|t| t.id)
        })?;
        self.data_of_task(id)
    }

    fn data_of_task<T: DeserializeOwned>(&self, task: u64) -> Option<T> {
        self.store.read(|s| {
            let t = s
                .changes
                .get(&self.change_id)
                .and_then(|c| c.tasks.iter().find(|t| t.id == task))?;
            serde_json::from_value(serde_json::Value::Object(t.data.clone())).ok()
        })
    }

    /// Records `data` as this task's, persisted at once: record before acting, so a re-run
    /// after a crash (and the undo) knows what the first run saw.
    pub fn save<T: Serialize>(&self, data: &T) -> Result<(), StateError> {
        let value = serde_json::to_value(data).map_err(StateError::TaskData)?;
        let serde_json::Value::Object(map) = value else {
            return Err(StateError::TaskData(serde::ser::Error::custom(
                "task data must be a JSON object",
            )));
        };
        self.store.update(|s| {
            if let Some(t) = s
                .changes
                .get_mut(&self.change_id)
                .and_then(|c| c.task_mut(self.task_id))
            {
                t.data = map;
            }
            Ok::<_, StateError>(())
        })
    }

    /// The value of one field of this task's record: the one recorded, or `compute`d now and
    /// recorded before it is returned.
    pub fn once<D, T, E>(
        &self,
        record: &mut D,
        field: impl Fn(&mut D) -> &mut Option<T>,
        compute: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E>
    where
        D: Serialize,
        T: Clone,
        E: From<StateError>,
    {
        if let Some(v) = field(record).clone() {
            return Ok(v);
        }
        let v = compute()?;
        *field(record) = Some(v.clone());
        self.save(record)?;
        Ok(v)
    }

    /// Resolves when the change is aborted (or fails elsewhere): long waits in a handler race
    /// with it, so `pack abort` does not wait for them to time out.
    pub async fn aborted(&self) {
        let mut updates = self.store.subscribe();
        loop {
            let gone = self.store.read(|s| {
                s.changes
                    .get(&self.change_id)
                    .is_none_or(|c| c.err.is_some())
            });
            if gone || updates.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Queues changes for the runner; managers hold one to start the changes they plan.
#[derive(Clone, Default)]
pub struct Queue {
    inner: Arc<QueueInner>,
}

#[derive(Default)]
struct QueueInner {
    ids: Mutex<VecDeque<u64>>,
    wake: Condvar,
    stopping: AtomicBool,
}

impl Queue {
    pub fn enqueue(&self, change_id: u64) {
        self.inner
            .ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(change_id);
        self.inner.wake.notify_one();
    }

    /// The next change to run; `None` once stopping.
    fn next(&self) -> Option<u64> {
        let mut q = self
            .inner
            .ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.stopping() {
                return None;
            }
            if let Some(id) = q.pop_front() {
                return Some(id);
            }
            q = self
                .inner
                .wake
                .wait(q)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    fn stop(&self) {
        // Under the queue's lock: the worker checks `stopping` and goes to sleep under it, so
        // the flag cannot be set (and the wake-up sent) between its check and its wait, which
        // would leave it asleep for ever.
        let _q = self
            .inner
            .ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.wake.notify_all();
    }
}

struct Inner {
    store: Arc<Store>,
    registry: Registry,
    queue: Queue,
}

/// Runs changes on one worker thread, in the order they were queued.
pub struct Engine {
    inner: Arc<Inner>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Engine {
    /// Starts the worker on `queue`, with every unfinished change queued first (resuming after
    /// a crash).
    pub fn start(store: Arc<Store>, registry: Registry, queue: Queue) -> Engine {
        let missing = registry.missing();
        if !missing.is_empty() {
            tracing::error!(
                ?missing,
                "task kinds without a handler; changes with them fail"
            );
        }
        let pending: Vec<u64> = store.read(|s| {
            s.changes
                .values()
                .filter(|c| !c.is_ready())
                .map(|c| c.id)
                .collect()
        });
        if !pending.is_empty() {
            tracing::info!(changes = ?pending, "resuming unfinished changes");
        }
        {
            let mut q = queue
                .inner
                .ids
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for id in pending.into_iter().rev() {
                q.push_front(id);
            }
        }
        let inner = Arc::new(Inner {
            store,
            registry,
            queue,
        });
        let worker_inner = inner.clone();
        let worker = std::thread::Builder::new()
            .name("packd-engine".into())
            .spawn(move || worker(&worker_inner))
            .ok();
        if worker.is_none() {
            tracing::error!("cannot start the change runner thread; changes will not run");
        }
        Engine {
            inner,
            worker: Mutex::new(worker),
        }
    }

    pub fn enqueue(&self, change_id: u64) {
        self.inner.queue.enqueue(change_id);
    }

    /// Stops after the task under way; unfinished changes resume at the next start.
    pub fn stop(&self) {
        self.inner.queue.stop();
        let handle = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn worker(inner: &Inner) {
    while let Some(next) = inner.queue.next() {
        if let Err(e) = run_change(inner, next) {
            // Only state-persistence failures get here; the change stays unfinished and
            // resumes at the next start.
            tracing::error!(change = next, error = %e, "change runner stopped on an error");
        }
        let pruned = inner
            .store
            .update(|s| Ok::<_, StateError>(s.prune_changes(now(), PRUNE_AFTER, KEEP_FINISHED)));
        if let Ok(n @ 1..) = pruned {
            tracing::debug!(changes = n, "forgot old finished changes");
        }
    }
}

/// The next step of a change: which task, and whether to do or undo it.
fn next_step(change: &Change) -> Option<(usize, Mode)> {
    let undoing = change
        .tasks
        .iter()
        .any(|t| matches!(t.status, Status::Undo | Status::Undoing));
    if undoing {
        change
            .tasks
            .iter()
            .rposition(|t| matches!(t.status, Status::Undo | Status::Undoing))
            .map(|i| (i, Mode::Undo))
    } else {
        change
            .tasks
            .iter()
            .position(|t| matches!(t.status, Status::Do | Status::Doing))
            .map(|i| (i, Mode::Do))
    }
}

fn run_change(inner: &Inner, change_id: u64) -> Result<(), StateError> {
    loop {
        if inner.queue.stopping() {
            return Ok(());
        }
        // Pick the step and mark it in progress, persisted before the handler runs.
        let picked = inner.store.update(|s| {
            let Some(change) = s.changes.get_mut(&change_id) else {
                return Ok::<_, StateError>(None);
            };
            let Some((i, mode)) = next_step(change) else {
                if change.ready_time.is_none() {
                    change.ready_time = Some(now());
                }
                return Ok(None);
            };
            let task = &mut change.tasks[i];
            task.status = match mode {
                Mode::Do => Status::Doing,
                Mode::Undo => Status::Undoing,
            };
            Ok(Some((task.id, task.kind, mode, change.plan.clone())))
        })?;
        let Some((task_id, kind, mode, plan)) = picked else {
            return Ok(());
        };
        let ctx = TaskCtx {
            store: &inner.store,
            change_id,
            task_id,
            kind,
            plan,
        };
        tracing::debug!(
            change = change_id,
            task = task_id,
            ?kind,
            ?mode,
            "running task"
        );
        crate::testing::crash_point(kind, mode, "before");
        let result = run_task(&inner.registry, mode, &ctx);
        crate::testing::crash_point(kind, mode, "after");
        inner.store.update(|s| {
            let Some(change) = s.changes.get_mut(&change_id) else {
                return Ok::<_, StateError>(());
            };
            finish_step(
                change,
                task_id,
                mode,
                result
                    .as_ref()
                    .err()
                    .map(|e| (e.to_string(), e.private_detail())),
            );
            Ok(())
        })?;
    }
}

fn run_task(registry: &Registry, mode: Mode, ctx: &TaskCtx<'_>) -> Result<(), Error> {
    let Some(handler) = registry.get(ctx.kind) else {
        return Err(Error::bad(format!(
            "this packd has no handler for {:?} tasks (was the change made by another version?)",
            ctx.kind
        )));
    };
    registry.run_around();
    let result = match mode {
        Mode::Do => handler.do_task(ctx),
        Mode::Undo => handler.undo_task(ctx),
    };
    registry.run_around();
    result
}

/// Records a step's outcome. A failed `do` turns every finished task to `Undo` and every waiting
/// one to `Hold`; a failed `undo` is logged and undoing goes on.
fn finish_step(
    change: &mut Change,
    task_id: u64,
    mode: Mode,
    error: Option<(String, Option<String>)>,
) {
    let Some(idx) = change.tasks.iter().position(|t| t.id == task_id) else {
        return;
    };
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    match (mode, error) {
        // Aborted while it ran: undone like the tasks before it.
        (Mode::Do, None) if change.err.is_some() => change.tasks[idx].status = Status::Undo,
        (Mode::Do, None) => change.tasks[idx].status = Status::Done,
        (Mode::Undo, None) => change.tasks[idx].status = Status::Undone,
        (Mode::Do, Some((err, detail))) => {
            tracing::warn!(change = change.id, task = task_id, error = %err, detail = detail.as_deref().unwrap_or(""), "task failed; undoing the change");
            let task = &mut change.tasks[idx];
            task.status = Status::Error;
            task.log.push(format!("{stamp} ERROR {err}"));
            change.err = Some(err);
            change.err_detail = detail;
            for t in &mut change.tasks {
                t.status = match t.status {
                    Status::Done => Status::Undo,
                    Status::Do => Status::Hold,
                    other => other,
                };
            }
        }
        (Mode::Undo, Some((err, _))) => {
            tracing::error!(change = change.id, task = task_id, error = %err, "undo failed");
            let task = &mut change.tasks[idx];
            task.status = Status::Error;
            task.log.push(format!("{stamp} ERROR undo failed: {err}"));
        }
    }
}

#[cfg(test)]
mod tests;

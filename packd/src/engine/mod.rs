//! The task runner: executes changes one task at a time, persisting the state around every step,
//! and undoes the finished tasks in reverse when one fails.
//!
//! Crash model: a task is marked `Doing` (or `Undoing`) and saved *before* its handler runs, and
//! `Done` (or `Undone`) after. A daemon killed in between finds the task still `Doing` at the next
//! start and runs it again, so every handler must be idempotent. A change in undo mode finishes
//! undoing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::state::{Change, Plan, Status, Store, TaskKind, now};

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

    /// A value recorded earlier by this task (e.g. by `do`, for `undo`).
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.store.read(|s| {
            s.changes
                .get(&self.change_id)
                .and_then(|c| c.tasks.iter().find(|t| t.id == self.task_id))
                .and_then(|t| t.get(key))
        })
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

    /// Records a value on the task, persisted at once: record before acting, so a re-run after a
    /// crash still knows what the first run saw.
    pub fn set<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let value = serde_json::to_value(value)
            .map_err(|e| crate::error::Error::Internal(format!("cannot encode task data: {e}")))?;
        self.store.update(|s| {
            if let Some(t) = s
                .changes
                .get_mut(&self.change_id)
                .and_then(|c| c.task_mut(self.task_id))
            {
                t.data.insert(key.to_string(), value);
            }
            Ok(())
        })
    }
}

/// The handlers of every task kind (the managers implement this; tests use fakes).
pub trait Handlers: Send + Sync + 'static {
    fn run(&self, mode: Mode, ctx: &TaskCtx<'_>) -> Result<()>;
}

struct Inner {
    store: Arc<Store>,
    handlers: Box<dyn Handlers>,
    queue: Mutex<VecDeque<u64>>,
    wake: Condvar,
    stopping: AtomicBool,
}

/// Runs changes on one worker thread, in the order they were queued.
pub struct Engine {
    inner: Arc<Inner>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Engine {
    /// Starts the worker and queues every unfinished change (resuming after a crash).
    pub fn start(store: Arc<Store>, handlers: Box<dyn Handlers>) -> Engine {
        let pending: VecDeque<u64> = store.read(|s| {
            s.changes
                .values()
                .filter(|c| !c.is_ready())
                .map(|c| c.id)
                .collect()
        });
        if !pending.is_empty() {
            tracing::info!(changes = ?pending, "resuming unfinished changes");
        }
        let inner = Arc::new(Inner {
            store,
            handlers,
            queue: Mutex::new(pending),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
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
        self.inner
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(change_id);
        self.inner.wake.notify_one();
    }

    /// Stops after the task under way; unfinished changes resume at the next start.
    pub fn stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.wake.notify_all();
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
    loop {
        let next = {
            let mut q = inner.queue.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if inner.stopping.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(id) = q.pop_front() {
                    break id;
                }
                q = inner.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
            }
        };
        if let Err(e) = run_change(inner, next) {
            // Only state-persistence failures get here; the change stays unfinished and
            // resumes at the next start.
            tracing::error!(change = next, error = %e, "change runner stopped on an error");
        }
        let pruned = inner
            .store
            .update(|s| Ok(s.prune_changes(now(), PRUNE_AFTER, KEEP_FINISHED)));
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

fn run_change(inner: &Inner, change_id: u64) -> Result<()> {
    loop {
        if inner.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        // Pick the step and mark it in progress, persisted before the handler runs.
        let picked = inner.store.update(|s| {
            let Some(change) = s.changes.get_mut(&change_id) else {
                return Ok(None);
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
        let result = inner.handlers.run(mode, &ctx);
        crate::testing::crash_point(kind, mode, "after");
        inner.store.update(|s| {
            let Some(change) = s.changes.get_mut(&change_id) else {
                return Ok(());
            };
            finish_step(
                change,
                task_id,
                mode,
                result.as_ref().err().map(|e| e.to_string()),
            );
            Ok(())
        })?;
    }
}

/// Records a step's outcome. A failed `do` turns every finished task to `Undo` and every waiting
/// one to `Hold`; a failed `undo` is logged and undoing goes on.
fn finish_step(change: &mut Change, task_id: u64, mode: Mode, error: Option<String>) {
    let Some(idx) = change.tasks.iter().position(|t| t.id == task_id) else {
        return;
    };
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    match (mode, error) {
        // Aborted while it ran: undone like the tasks before it.
        (Mode::Do, None) if change.err.is_some() => change.tasks[idx].status = Status::Undo,
        (Mode::Do, None) => change.tasks[idx].status = Status::Done,
        (Mode::Undo, None) => change.tasks[idx].status = Status::Undone,
        (Mode::Do, Some(err)) => {
            tracing::warn!(change = change.id, task = task_id, error = %err, "task failed; undoing the change");
            let task = &mut change.tasks[idx];
            task.status = Status::Error;
            task.log.push(format!("{stamp} ERROR {err}"));
            change.err = Some(err);
            for t in &mut change.tasks {
                t.status = match t.status {
                    Status::Done => Status::Undo,
                    Status::Do => Status::Hold,
                    other => other,
                };
            }
        }
        (Mode::Undo, Some(err)) => {
            tracing::error!(change = change.id, task = task_id, error = %err, "undo failed");
            let task = &mut change.tasks[idx];
            task.status = Status::Error;
            task.log.push(format!("{stamp} ERROR undo failed: {err}"));
        }
    }
}

#[cfg(test)]
mod tests;

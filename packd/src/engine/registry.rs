//! Which handler runs which kind of task. Each manager registers the `do` and `undo` of the
//! task kinds it owns ([`Registry::register`]); the runner looks them up and knows nothing of
//! what they do.

use std::collections::HashMap;
use std::sync::Arc;

use super::TaskCtx;
use crate::error::Error;
use crate::state::TaskKind;

/// The `do` and `undo` of one task kind.
pub trait TaskHandler: Send + Sync {
    fn do_task(&self, ctx: &TaskCtx<'_>) -> Result<(), Error>;
    fn undo_task(&self, ctx: &TaskCtx<'_>) -> Result<(), Error>;
}

/// A handler made of two methods of a manager.
struct Methods<M, E> {
    manager: Arc<M>,
    do_: fn(&M, &TaskCtx<'_>) -> Result<(), E>,
    undo: fn(&M, &TaskCtx<'_>) -> Result<(), E>,
}

impl<M, E> TaskHandler for Methods<M, E>
where
    M: Send + Sync,
    E: Into<Error>,
{
    fn do_task(&self, ctx: &TaskCtx<'_>) -> Result<(), Error> {
        (self.do_)(&self.manager, ctx).map_err(Into::into)
    }

    fn undo_task(&self, ctx: &TaskCtx<'_>) -> Result<(), Error> {
        (self.undo)(&self.manager, ctx).map_err(Into::into)
    }
}

/// Run around every task (e.g. the launcher empties its mount templates, which must never
/// show what a change replaces).
pub type Around = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
pub struct Registry {
    handlers: HashMap<TaskKind, Box<dyn TaskHandler>>,
    around: Vec<Around>,
}

impl Registry {
    /// Registers `do_` and `undo` (methods of `manager`) for `kind`. A kind registered twice
    /// is a wiring mistake: the second registration replaces the first, and
    /// [`Registry::missing`] cannot see it, so the composition root's test checks the count.
    pub fn register<M, E>(
        &mut self,
        kind: TaskKind,
        manager: &Arc<M>,
        do_: fn(&M, &TaskCtx<'_>) -> Result<(), E>,
        undo: fn(&M, &TaskCtx<'_>) -> Result<(), E>,
    ) where
        M: Send + Sync + 'static,
        E: Into<Error> + 'static,
    {
        let previous = self.handlers.insert(
            kind,
            Box::new(Methods {
                manager: manager.clone(),
                do_,
                undo,
            }),
        );
        debug_assert!(previous.is_none(), "{kind:?} registered twice");
    }

    /// Runs `f` before and after every task.
    pub fn around(&mut self, f: impl Fn() + Send + Sync + 'static) {
        self.around.push(Box::new(f));
    }

    pub fn get(&self, kind: TaskKind) -> Option<&dyn TaskHandler> {
        self.handlers.get(&kind).map(|h| &**h)
    }

    pub(super) fn run_around(&self) {
        for f in &self.around {
            f();
        }
    }

    /// The task kinds nobody registered (none, once the daemon is wired).
    pub fn missing(&self) -> Vec<TaskKind> {
        TaskKind::ALL
            .iter()
            .copied()
            .filter(|k| !self.handlers.contains_key(k))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.handlers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }
}

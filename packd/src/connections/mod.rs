//! The connection manager: plugs and slots of the installed packs, and the changes that
//! connect and disconnect them.
//!
//! - [`policy`]: pure functions over the state (what is offered, what auto-connects, what a
//!   connection grants an app, through the `interfaces` crate);
//! - [`plan`]: `pack connect` and `pack disconnect` planned as changes (pure);
//! - [`tasks`]: the do and undo of `auto-connect`, `connect`, `disconnect` and
//!   `disconnect-all`, which rewrite the profiles of the packs whose plugs changed and restart
//!   their running services.

mod error;
pub mod plan;
pub mod policy;
mod tasks;

use std::sync::Arc;

use interfaces::PortRef;

pub use error::ConnectionError;

use crate::engine::{Queue, Registry};
use crate::profiles::Profiles;
use crate::services::ServiceManager;
use crate::state::{Store, TaskKind};

pub struct ConnectionManager {
    store: Arc<Store>,
    queue: Queue,
    profiles: Profiles,
    /// Running services restart when their permissions change.
    services: Arc<ServiceManager>,
    /// Task handlers run on the engine's thread; services live on the runtime.
    runtime: tokio::runtime::Handle,
}

impl ConnectionManager {
    pub fn new(
        store: Arc<Store>,
        queue: Queue,
        profiles: Profiles,
        services: Arc<ServiceManager>,
        runtime: tokio::runtime::Handle,
    ) -> Arc<Self> {
        Arc::new(ConnectionManager {
            store,
            queue,
            profiles,
            services,
            runtime,
        })
    }

    /// Registers the handlers of the connection tasks.
    pub fn register(self: &Arc<Self>, r: &mut Registry) {
        r.register(
            TaskKind::AutoConnect,
            self,
            Self::auto_connect,
            Self::undo_auto_connect,
        );
        r.register(
            TaskKind::Connect,
            self,
            Self::connect_task,
            Self::undo_connect,
        );
        r.register(
            TaskKind::Disconnect,
            self,
            Self::disconnect_task,
            Self::undo_disconnect,
        );
        r.register(
            TaskKind::DisconnectAll,
            self,
            Self::disconnect_all,
            Self::undo_disconnect_all,
        );
    }

    /// Plans and starts `pack connect`; the change's id.
    pub fn connect(&self, plug: PortRef, slot: Option<PortRef>) -> Result<u64, ConnectionError> {
        let id = self.store.update(|s| plan::connect(s, plug, slot))?;
        self.queue.enqueue(id);
        Ok(id)
    }

    /// Plans and starts `pack disconnect`; the change's id.
    pub fn disconnect(&self, plug: PortRef, slot: Option<PortRef>) -> Result<u64, ConnectionError> {
        let id = self.store.update(|s| plan::disconnect(s, plug, slot))?;
        self.queue.enqueue(id);
        Ok(id)
    }
}

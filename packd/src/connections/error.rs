//! What the connection manager refuses, and why its tasks fail.

use interfaces::PortRef;
use packd_api::ErrorKind;

use crate::error::Busy;
use crate::policy::PolicyError;
use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("pack {0:?} is not installed; see 'pack list'")]
    PackNotInstalled(String),
    #[error("pack {pack:?} has no plug named {plug:?}{}", hint("plugs", known))]
    NoPlug {
        pack: String,
        plug: String,
        known: Vec<String>,
    },
    #[error("pack {pack:?} has no slot named {slot:?}{}", hint("slots", known))]
    NoSlot {
        pack: String,
        slot: String,
        known: Vec<String>,
    },
    #[error(
        "the system has no slot named {slot:?}; its slots are named after their interfaces: {}",
        known.join(", ")
    )]
    NoSystemSlot { slot: String, known: Vec<String> },
    #[error("plug {plug} has the unknown interface {interface:?}")]
    UnknownInterface { plug: PortRef, interface: String },
    #[error(
        "no slot can take plug {plug} (interface {interface:?}); install a pack that provides one"
    )]
    NoCandidate { plug: PortRef, interface: String },
    #[error(
        "plug {plug} could connect to {}; name the slot: pack connect {plug} PACK:SLOT",
        candidates.join(", ")
    )]
    Ambiguous {
        plug: PortRef,
        candidates: Vec<String>,
    },
    #[error(
        "cannot connect plug {} (interface {:?}) to slot {} (interface {:?}): the interfaces differ",
        .0.plug, .0.plug_interface, .0.slot, .0.slot_interface
    )]
    InterfacesDiffer(Box<Differ>),
    #[error("cannot connect plug {plug} to slot {slot}: their content tags differ")]
    TagsDiffer { plug: PortRef, slot: PortRef },
    #[error("cannot connect plug {0} to a slot of its own pack")]
    OwnPack(PortRef),
    #[error("plug {plug} is already connected to {slot}")]
    AlreadyConnected { plug: PortRef, slot: PortRef },
    #[error("plug {plug} is not connected to {slot}")]
    NotConnectedTo { plug: PortRef, slot: PortRef },
    #[error("plug {0} is not connected")]
    NotConnected(PortRef),
    #[error("plug {plug} is connected to {}; name the slot", slots.join(", "))]
    ConnectedToMany { plug: PortRef, slots: Vec<String> },
    /// The interface refused what the connection would grant (a bad attribute, say).
    #[error("connection {plug} to {slot}: {reason}")]
    Grant {
        plug: PortRef,
        slot: PortRef,
        reason: String,
    },
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error("a {task} task in a change that is not a {expected} change")]
    WrongPlan {
        task: &'static str,
        expected: &'static str,
    },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// A plug and a slot of different interfaces.
#[derive(Debug)]
pub struct Differ {
    pub plug: PortRef,
    pub plug_interface: String,
    pub slot: PortRef,
    pub slot_interface: String,
}

fn hint(what: &str, names: &[String]) -> String {
    if names.is_empty() {
        format!("; it has no {what}")
    } else {
        format!("; its {what} are: {}", names.join(", "))
    }
}

impl ConnectionError {
    pub fn kind(&self) -> ErrorKind {
        use ConnectionError::*;
        match self {
            PackNotInstalled(_) => ErrorKind::PackNotFound,
            NoPlug { .. } | NoSlot { .. } | NoSystemSlot { .. } => ErrorKind::ConnectionNotFound,
            NotConnected(_) | NotConnectedTo { .. } => ErrorKind::ConnectionNotFound,
            UnknownInterface { .. } => ErrorKind::InterfaceNotFound,
            NoCandidate { .. }
            | Ambiguous { .. }
            | InterfacesDiffer(_)
            | TagsDiffer { .. }
            | OwnPack(_)
            | AlreadyConnected { .. }
            | ConnectedToMany { .. }
            | Grant { .. } => ErrorKind::BadRequest,
            Busy(_) => ErrorKind::ChangeConflict,
            WrongPlan { .. } | Policy(_) | State(_) => ErrorKind::InternalError,
        }
    }
}

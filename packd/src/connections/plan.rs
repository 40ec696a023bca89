//! Planning connection changes: pure functions from the state to a change (its tasks added to
//! the state), refusing with the reason what cannot be connected or disconnected.

use interfaces::PortRef;

use super::{ConnectionError, policy};
use crate::error::check_idle;
use crate::state::{Plan, State, TaskKind};

type Result<T> = std::result::Result<T, ConnectionError>;

/// `pack connect PLUG [SLOT]`: one `connect` task; without a slot, the only one that fits.
pub fn connect(s: &mut State, plug_ref: PortRef, slot_ref: Option<PortRef>) -> Result<u64> {
    let plug = policy::plug(s, &plug_ref)?;
    if interfaces::find(&plug.interface).is_none() {
        return Err(ConnectionError::UnknownInterface {
            plug: plug_ref,
            interface: plug.interface,
        });
    }
    let slot_ref = match slot_ref {
        Some(r) => r,
        None => policy::default_slot(s, &plug_ref, &plug)?,
    };
    let slot = policy::slot(s, &slot_ref)?;
    if slot.interface != plug.interface {
        return Err(ConnectionError::InterfacesDiffer(Box::new(
            super::error::Differ {
                plug: plug_ref,
                plug_interface: plug.interface,
                slot: slot_ref,
                slot_interface: slot.interface,
            },
        )));
    }
    if !interfaces::compatible(&plug, &slot) {
        return Err(ConnectionError::TagsDiffer {
            plug: plug_ref,
            slot: slot_ref,
        });
    }
    if plug_ref.pack == slot_ref.pack {
        return Err(ConnectionError::OwnPack(plug_ref));
    }
    if s.connections
        .iter()
        .any(|c| c.plug == plug_ref && c.slot == slot_ref)
    {
        return Err(ConnectionError::AlreadyConnected {
            plug: plug_ref,
            slot: slot_ref,
        });
    }
    check_idle(s, &[&plug_ref.pack, &slot_ref.pack])?;
    let summary = format!("Connect {plug_ref} to {slot_ref}");
    Ok(s.add_change(
        "connect",
        summary.clone(),
        Plan::Connect {
            plug: plug_ref,
            slot: slot_ref,
            interface: plug.interface,
        },
        vec![(TaskKind::Connect, summary)],
    ))
}

/// `pack disconnect PLUG [SLOT]`: one `disconnect` task; without a slot, the only one the
/// plug is connected to.
pub fn disconnect(s: &mut State, plug_ref: PortRef, slot_ref: Option<PortRef>) -> Result<u64> {
    policy::plug(s, &plug_ref)?;
    let existing: Vec<PortRef> = s
        .connections
        .iter()
        .filter(|c| c.plug == plug_ref && slot_ref.as_ref().is_none_or(|r| *r == c.slot))
        .map(|c| c.slot.clone())
        .collect();
    let slot_ref = match (existing.as_slice(), slot_ref) {
        ([], Some(slot)) => {
            return Err(ConnectionError::NotConnectedTo {
                plug: plug_ref,
                slot,
            });
        }
        ([], None) => return Err(ConnectionError::NotConnected(plug_ref)),
        ([only], _) => only.clone(),
        (many, _) => {
            return Err(ConnectionError::ConnectedToMany {
                plug: plug_ref,
                slots: many.iter().map(ToString::to_string).collect(),
            });
        }
    };
    check_idle(s, &[&plug_ref.pack, &slot_ref.pack])?;
    let summary = format!("Disconnect {plug_ref} from {slot_ref}");
    Ok(s.add_change(
        "disconnect",
        summary.clone(),
        Plan::Disconnect {
            plug: plug_ref,
            slot: slot_ref,
        },
        vec![(TaskKind::Disconnect, summary)],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::testing::{with_pack, with_running_change};
    use crate::state::{Connection, Status};

    fn state() -> State {
        let mut s = State::default();
        with_pack(
            &mut s,
            "name: cam\nversion: '1'\nbase: core\nplugs:\n  net: {interface: network}\n  serial: {interface: serial-port}\n  data: {interface: content, content: pics, target: $PACK_DATA/pics}\napps:\n  cam: {command: bin/cam}\n",
        );
        with_pack(
            &mut s,
            "name: lib\nversion: '1'\nbase: core\nslots:\n  pics: {interface: content, content: pics, read: [$PACK_DATA/out]}\n  other: {interface: content, content: docs, read: [$PACK_DATA/docs]}\n",
        );
        s
    }

    fn r(s: &str) -> PortRef {
        s.parse().unwrap()
    }

    #[test]
    fn connect_plans_one_task_and_finds_the_only_slot() {
        let mut s = state();
        let id = connect(&mut s, r("cam:net"), None).unwrap();
        let c = &s.changes[&id];
        assert_eq!(c.kind, "connect");
        assert_eq!(c.summary, "Connect cam:net to system:network");
        assert_eq!(c.tasks.len(), 1);
        assert_eq!(c.tasks[0].kind, TaskKind::Connect);
        assert_eq!(c.tasks[0].status, Status::Do);
    }

    #[test]
    fn connect_refuses_what_cannot_be_connected_and_changes_nothing() {
        let s0 = state();
        let cases: Vec<(PortRef, Option<PortRef>, &str)> = vec![
            (
                r("cam:nope"),
                None,
                "has no plug named \"nope\"; its plugs are: data, net, serial",
            ),
            (r("gone:net"), None, "\"gone\" is not installed"),
            (r("cam:net"), Some(r("lib:pics")), "the interfaces differ"),
            (r("cam:data"), Some(r("lib:other")), "content tags differ"),
            (
                r("cam:data"),
                Some(r("lib:nope")),
                "has no slot named \"nope\"; its slots are: other, pics",
            ),
            (
                r("cam:net"),
                Some(r("system:nope")),
                "the system has no slot named \"nope\"",
            ),
            (r("cam:serial"), None, "no slot can take plug cam:serial"),
        ];
        for (plug, slot, says) in cases {
            let mut s = s0.clone();
            let e = connect(&mut s, plug.clone(), slot).unwrap_err().to_string();
            assert!(e.contains(says), "{plug}: {e}");
            assert_eq!(s, s0, "{plug}: nothing changes");
        }
    }

    #[test]
    fn connect_twice_and_connect_during_a_change_are_refused() {
        let mut s = state();
        s.connections.push(Connection {
            interface: "network".into(),
            plug: r("cam:net"),
            slot: r("system:network"),
            manual: false,
        });
        let e = connect(&mut s, r("cam:net"), None).unwrap_err();
        assert!(e.to_string().contains("already connected"), "{e}");
        let mut s = state();
        let busy = with_running_change(&mut s, "lib");
        let e = connect(&mut s, r("cam:data"), Some(r("lib:pics"))).unwrap_err();
        assert_eq!(e.kind(), packd_api::ErrorKind::ChangeConflict);
        assert!(e.to_string().contains(&format!("change {busy}")), "{e}");
    }

    #[test]
    fn disconnect_needs_a_connection_and_names_the_slot_when_there_are_several() {
        let mut s = state();
        let e = disconnect(&mut s, r("cam:net"), None).unwrap_err();
        assert_eq!(e.to_string(), "plug cam:net is not connected");
        s.connections.push(Connection {
            interface: "content".into(),
            plug: r("cam:data"),
            slot: r("lib:pics"),
            manual: true,
        });
        let id = disconnect(&mut s, r("cam:data"), None).unwrap();
        assert_eq!(s.changes[&id].tasks[0].kind, TaskKind::Disconnect);
        let e = disconnect(&mut s, r("cam:data"), Some(r("lib:other"))).unwrap_err();
        assert_eq!(e.to_string(), "plug cam:data is not connected to lib:other");
    }
}

use packfmt::meta::MetaSource;
use packfmt::{PackMeta, PackType};

use super::*;
use crate::state::{PackState, RevisionState};

fn with_pack(state: &mut State, name: &str, revs: &[u32]) {
    let meta = PackMeta::from_yaml(
        format!("name: {name}\nversion: '1'\n").as_bytes(),
        MetaSource::PackYaml,
    )
    .unwrap();
    state.packs.insert(
        name.into(),
        PackState {
            name: name.into(),
            pack_type: PackType::App,
            sequence: revs
                .iter()
                .map(|n| RevisionState {
                    revision: Revision::Local(*n),
                    meta: meta.clone(),
                    size: 0,
                    sha3_384: String::new(),
                    installed_at: 0,
                })
                .collect(),
            current: Revision::Local(*revs.last().unwrap()),
            active: true,
            disabled_services: Default::default(),
            tracking: None,
        },
    );
}

#[test]
fn boot_mounts_every_installed_revision() {
    let mut s = State::default();
    with_pack(&mut s, "aa", &[1, 2]);
    with_pack(&mut s, "bb", &[1]);
    assert_eq!(
        boot_mounts(&s),
        [
            ("aa".to_string(), Revision::Local(1)),
            ("aa".to_string(), Revision::Local(2)),
            ("bb".to_string(), Revision::Local(1))
        ]
    );
    assert_eq!(active_links(&s).len(), 2);
}

#[test]
fn boot_skips_what_a_removal_unmounted_and_adds_in_flight_installs() {
    let mut s = State::default();
    with_pack(&mut s, "aa", &[1]);
    s.packs.get_mut("aa").unwrap().active = false;
    let rm = s.add_change(
        "remove-pack",
        "Remove aa".into(),
        Plan::Remove {
            name: "aa".into(),
            revisions: vec![Revision::Local(1)],
            purge: false,
        },
        vec![
            (TaskKind::UnlinkPack, String::new()),
            (TaskKind::UnmountPack, String::new()),
            (TaskKind::DiscardData, String::new()),
        ],
    );
    {
        let c = s.changes.get_mut(&rm).unwrap();
        c.tasks[0].status = Status::Done;
        c.tasks[1].status = Status::Done;
    }
    let meta = PackMeta::from_yaml(b"name: nn\nversion: '1'\n", MetaSource::PackYaml).unwrap();
    let inst = s.add_change(
        "install-pack",
        "Install nn".into(),
        Plan::Install {
            name: "nn".into(),
            revision: Revision::Local(1),
            meta: Box::new(meta),
            staged: "/x".into(),
            size: 0,
            sha3_384: String::new(),
            origin: None,
        },
        vec![
            (TaskKind::PreparePack, String::new()),
            (TaskKind::MountPack, String::new()),
            (TaskKind::LinkPack, String::new()),
        ],
    );
    {
        let c = s.changes.get_mut(&inst).unwrap();
        c.tasks[0].status = Status::Done;
        c.tasks[1].status = Status::Done;
    }
    assert_eq!(boot_mounts(&s), [("nn".to_string(), Revision::Local(1))]);
    assert!(active_links(&s).is_empty());
}

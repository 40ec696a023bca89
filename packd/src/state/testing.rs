//! Building states for unit tests: packs installed from YAML, changes under way.

use packfmt::meta::MetaSource;
use packfmt::{PackMeta, Revision};

use super::{PackState, Plan, RevisionState, State, TaskKind};

/// Installs the pack `yaml` describes as revision x1 (or the next local one), current and
/// active.
pub fn with_pack(state: &mut State, yaml: &str) -> Revision {
    let meta = PackMeta::from_yaml(yaml.as_bytes(), MetaSource::PackYaml).expect("test YAML");
    let rev = state.next_local_revision(&meta.name);
    let pack = state
        .packs
        .entry(meta.name.clone())
        .or_insert_with(|| PackState {
            name: meta.name.clone(),
            pack_type: meta.pack_type,
            sequence: Vec::new(),
            current: rev,
            active: true,
            disabled_services: Default::default(),
            tracking: None,
        });
    pack.sequence.push(RevisionState {
        revision: rev,
        meta,
        size: 0,
        sha3_384: String::new(),
        installed_at: 0,
    });
    pack.current = rev;
    rev
}

/// Adds an unfinished change working on `pack`; its id.
pub fn with_running_change(state: &mut State, pack: &str) -> u64 {
    state.add_change(
        "service-control",
        format!("Restart services of {pack}"),
        Plan::Services {
            name: pack.to_string(),
            apps: None,
            enable: None,
        },
        vec![(TaskKind::RestartServices, String::new())],
    )
}

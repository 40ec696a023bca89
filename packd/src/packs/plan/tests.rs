//! The pack planners on states built in memory: which tasks, in which order, and what is
//! refused (with the state left as it was).

use super::*;
use crate::state::testing::{with_pack, with_running_change};
use packd_api::ErrorKind;
use packfmt::meta::MetaSource;

const BASE: &str = "name: core\nversion: '1'\ntype: base\n";

fn meta(yaml: &str) -> PackMeta {
    PackMeta::from_yaml(yaml.as_bytes(), MetaSource::PackYaml).unwrap()
}

fn upload(yaml: &str) -> Upload {
    Upload {
        meta: meta(yaml),
        staged: "/staged/upload-1.pack".into(),
        size: 4096,
        sha3_384: "ab".repeat(48),
        label: "\"app.pack\"".into(),
        from_store: None,
    }
}

fn with_hooks(yaml: &str, hooks: &[&str]) -> Upload {
    let mut u = upload(yaml);
    let names: Vec<String> = hooks.iter().map(|h| h.to_string()).collect();
    u.meta.add_hook_files(&names).unwrap();
    u
}

fn kinds(s: &State, id: u64) -> Vec<TaskKind> {
    s.changes[&id].tasks.iter().map(|t| t.kind).collect()
}

const APP: &str =
    "name: app\nversion: '1'\nbase: core\napps:\n  app: {command: bin/app, daemon: simple}\n";

#[test]
fn a_first_install_mounts_links_connects_and_starts() {
    let mut s = State::default();
    with_pack(&mut s, BASE);
    let id = install(&mut s, with_hooks(APP, &["install", "configure"])).unwrap();
    use TaskKind::*;
    assert_eq!(
        kinds(&s, id),
        [
            PreparePack,
            MountPack,
            StopServices,
            CopyData,
            SetupProfiles,
            LinkPack,
            AutoConnect,
            InstallHook,
            StartServices,
            ConfigureHook
        ]
    );
    let c = &s.changes[&id];
    assert_eq!(c.kind, "install-pack");
    assert_eq!(c.summary, "Install pack \"app\" (x1) from \"app.pack\"");
    assert!(
        matches!(&c.plan, Plan::Install { revision, size: 4096, .. } if *revision == Revision::Local(1))
    );
}

#[test]
fn a_new_revision_is_a_refresh_with_the_old_hooks_and_a_health_window() {
    let mut s = State::default();
    with_pack(&mut s, BASE);
    let mut old = meta(APP);
    old.add_hook_files(&["pre-refresh".to_string()]).unwrap();
    with_pack(&mut s, APP);
    s.packs.get_mut("app").unwrap().sequence[0].meta = old;
    let id = install(
        &mut s,
        with_hooks(APP, &["install", "post-refresh", "check-health"]),
    )
    .unwrap();
    use TaskKind::*;
    assert_eq!(
        kinds(&s, id),
        [
            PreparePack,
            MountPack,
            StopServices,
            PreRefreshHook,
            CopyData,
            SetupProfiles,
            LinkPack,
            AutoConnect,
            StartServices,
            PostRefreshHook,
            CheckHealthHook,
            CheckHealth,
            Cleanup
        ]
    );
    assert!(s.changes[&id].summary.contains("(x2)"));
}

#[test]
fn bases_skip_the_app_tasks() {
    let mut s = State::default();
    let id = install(&mut s, upload(BASE)).unwrap();
    use TaskKind::*;
    assert_eq!(
        kinds(&s, id),
        [PreparePack, MountPack, LinkPack, AutoConnect]
    );
}

#[test]
fn an_install_is_refused_without_its_base_during_a_change_or_over_another_type() {
    let s0 = {
        let mut s = State::default();
        with_pack(&mut s, BASE);
        s
    };
    let mut s = State::default();
    let e = install(&mut s, upload(APP)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BaseNotFound);
    assert!(
        e.to_string().contains("its base \"core\" is not installed"),
        "{e}"
    );
    assert_eq!(s, State::default());

    let mut s = s0.clone();
    with_pack(&mut s, APP);
    let busy = with_running_change(&mut s, "app");
    let before = s.clone();
    let e = install(&mut s, upload(APP)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChangeConflict);
    assert!(e.to_string().contains(&format!("has change {busy}")), "{e}");
    assert_eq!(s, before);

    let mut s = s0.clone();
    let busy = with_running_change(&mut s, "core");
    let e = install(&mut s, upload(APP)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChangeConflict);
    assert!(
        e.to_string()
            .contains(&format!("base \"core\" has change {busy}")),
        "{e}"
    );

    let mut s = s0.clone();
    let e = install(&mut s, upload("name: core\nversion: '2'\nbase: other\n")).unwrap_err();
    assert!(
        e.to_string()
            .contains("a pack of type base named \"core\" is installed"),
        "{e}"
    );
}

#[test]
fn a_revert_goes_to_the_revision_before_or_the_one_asked() {
    let mut s = State::default();
    with_pack(&mut s, BASE);
    for _ in 0..3 {
        with_pack(&mut s, APP);
    }
    let id = revert(&mut s, "app", None).unwrap();
    use TaskKind::*;
    assert_eq!(
        kinds(&s, id),
        [StopServices, SetupProfiles, LinkPack, StartServices]
    );
    assert_eq!(s.changes[&id].summary, "Revert pack \"app\" from x3 to x2");
    let mut s2 = s.clone();
    s2.changes.clear();
    let id = revert(&mut s2, "app", Some(Revision::Local(1))).unwrap();
    assert!(
        matches!(s2.changes[&id].plan, Plan::Revert { revision, from, .. }
        if revision == Revision::Local(1) && from == Revision::Local(3))
    );
}

#[test]
fn a_revert_is_refused_with_the_reason() {
    let mut s = State::default();
    with_pack(&mut s, BASE);
    with_pack(&mut s, APP);
    let cases: Vec<(&str, Option<Revision>, &str)> = vec![
        ("app", None, "app has no revision before x1 to revert to"),
        (
            "app",
            Some(Revision::Local(1)),
            "app is already at revision x1; pick another with --revision (x1)",
        ),
        (
            "app",
            Some(Revision::Local(7)),
            "app has no revision x7; it has x1",
        ),
        (
            "core",
            None,
            "core is a base pack; only app packs can be reverted",
        ),
        ("nope", None, "pack \"nope\" is not installed"),
    ];
    for (name, rev, says) in cases {
        let before = s.clone();
        let e = revert(&mut s, name, rev).unwrap_err();
        assert!(e.to_string().contains(says), "{name} {rev:?}: {e}");
        assert_eq!(s, before);
    }
    with_pack(&mut s, APP);
    with_running_change(&mut s, "app");
    assert_eq!(
        revert(&mut s, "app", None).unwrap_err().kind(),
        ErrorKind::ChangeConflict
    );
}

#[test]
fn a_removal_stops_runs_its_hook_disconnects_and_discards_last() {
    let mut s = State::default();
    with_pack(&mut s, BASE);
    with_pack(&mut s, APP);
    let mut m = meta(APP);
    m.add_hook_files(&["remove".to_string()]).unwrap();
    s.packs.get_mut("app").unwrap().sequence[0].meta = m;
    let id = remove(&mut s, "app", true).unwrap();
    use TaskKind::*;
    assert_eq!(
        kinds(&s, id),
        [
            StopServices,
            RemoveHook,
            DisconnectAll,
            UnlinkPack,
            UnmountPack,
            DiscardData,
            DiscardPack
        ]
    );
    assert!(
        matches!(&s.changes[&id].plan, Plan::Remove { purge: true, revisions, .. } if revisions.len() == 1)
    );
}

#[test]
fn a_base_in_use_is_not_removed_and_neither_is_a_busy_or_missing_pack() {
    let mut s = State::default();
    with_pack(&mut s, BASE);
    with_pack(&mut s, APP);
    let e = remove(&mut s, "core", false).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot remove base \"core\": app uses it; remove it first"
    );
    // An install under way counts as a user too.
    let mut s = State::default();
    with_pack(&mut s, BASE);
    install(&mut s, upload(APP)).unwrap();
    let e = remove(&mut s, "core", false).unwrap_err();
    assert!(e.to_string().contains("app uses it"), "{e}");

    let mut s = State::default();
    with_pack(&mut s, BASE);
    with_pack(&mut s, APP);
    with_running_change(&mut s, "app");
    assert_eq!(
        remove(&mut s, "app", false).unwrap_err().kind(),
        ErrorKind::ChangeConflict
    );
    assert_eq!(
        remove(&mut s, "nope", false).unwrap_err().kind(),
        ErrorKind::PackNotFound
    );
}

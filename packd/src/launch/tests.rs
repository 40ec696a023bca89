use std::collections::BTreeMap;
use std::path::Path;

use confine::{MountOp, SandboxSpec};
use packfmt::meta::{MetaSource, PackMeta};
use packfmt::{PackType, Revision};

use super::*;
use crate::state::{PackState, RevisionState, State};

fn install(state: &mut State, yaml: &str, source: MetaSource, rev: Revision) {
    let meta = PackMeta::from_yaml(yaml.as_bytes(), source).unwrap();
    state.packs.insert(
        meta.name.clone(),
        PackState {
            name: meta.name.clone(),
            pack_type: meta.pack_type,
            sequence: vec![RevisionState {
                revision: rev,
                meta: meta.clone(),
                size: 0,
                sha3_384: String::new(),
                installed_at: 0,
            }],
            current: rev,
            active: true,
            disabled_services: Default::default(),
            tracking: None,
        },
    );
}

fn state() -> State {
    let mut s = State::default();
    install(
        &mut s,
        "name: busybox\nversion: '1'\ntype: base\n",
        MetaSource::PackYaml,
        Revision::Local(1),
    );
    install(
        &mut s,
        "name: hello\nversion: '2.0'\nbase: busybox\nenvironment: {GREETING: hi from $PACK_NAME}\napps:\n  hello: {command: bin/hello --data $PACK_DATA}\n  tool: {command: /bin/sh, environment: {X: '${PACK}/x'}}\n",
        MetaSource::PackYaml,
        Revision::Local(3),
    );
    install(
        &mut s,
        "name: snappy\nversion: '1'\nbase: busybox\napps:\n  snappy: {command: bin/s}\n",
        MetaSource::SnapYaml,
        Revision::Local(1),
    );
    s
}

fn inv() -> Invocation {
    let mut env = BTreeMap::new();
    for (k, v) in [
        ("TERM", "xterm"),
        ("LANG", "C.UTF-8"),
        ("LD_PRELOAD", "/evil.so"),
        ("LD_LIBRARY_PATH", "."),
        ("GLIBC_TUNABLES", "x"),
        ("PATH", "/home/u/bin"),
        ("PACK_DATA", "/etc"),
        ("SNAP", "/x"),
    ] {
        env.insert(k.to_string(), v.to_string());
    }
    Invocation {
        args: vec!["--loud".into()],
        env,
        cwd: "/home/u".into(),
        uid: 0,
        gid: 0,
        groups: vec![],
        rlimits: vec![],
    }
}

fn env_map(spec: &SandboxSpec) -> BTreeMap<String, String> {
    spec.process
        .env
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn context() -> Context {
    Context {
        private_tmp: "/r/run/packd/tmp/hello/tmp".into(),
        hostname: "dev1".into(),
        cgroup: Some(vec!["/sys/fs/cgroup/unified/packd/t/x".into()]),
        seccomp: Some("/r/var/lib/packd/profiles/hello/x3/hello.seccomp".into()),
        granted: Default::default(),
        service: None,
    }
}

fn spec_for(s: &State, target: &str) -> SandboxSpec {
    let r = resolve(s, &target.parse().unwrap()).unwrap();
    build_spec(&Paths::new("/r"), &r, &inv(), &context()).unwrap()
}

#[test]
fn app_refs_parse_and_validate() {
    let r: AppRef = "hello.tool".parse().unwrap();
    assert_eq!((r.pack.as_str(), r.app.as_deref()), ("hello", Some("tool")));
    assert_eq!(r.to_string(), "hello.tool");
    assert!("../x".parse::<AppRef>().is_err());
    assert!("hello.a_b".parse::<AppRef>().is_err());
}

#[test]
fn resolve_names_what_is_missing() {
    let s = state();
    let err = resolve(&s, &"nope".parse().unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pack \"nope\" is not installed; see 'pack list'"
    );
    let err = resolve(&s, &"hello.nope".parse().unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pack \"hello\" has no app named \"nope\"; its apps are: hello.hello, hello.tool"
    );
    let mut s2 = s.clone();
    s2.packs.remove("busybox");
    let err = resolve(&s2, &"hello".parse().unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the base \"busybox\" of pack \"hello\" is not installed; install it first"
    );
    s2.packs.get_mut("hello").unwrap().active = false;
    assert!(
        resolve(&s2, &"hello".parse().unwrap()).is_err(),
        "inactive packs do not run"
    );
    assert_eq!(
        s.packs["busybox"].pack_type,
        PackType::Base,
        "fixture sanity"
    );
}

#[test]
fn command_is_made_absolute_expanded_and_extended() {
    let spec = spec_for(&state(), "hello");
    assert_eq!(
        spec.process.argv,
        [
            "/pack/hello/x3/bin/hello",
            "--data",
            "/var/pack/hello/x3",
            "--loud"
        ]
    );
    assert_eq!(spec.label, "pack.hello.hello");
    assert_eq!(spec.root, Path::new("/r/pack/busybox/x1"));
    assert_eq!(spec.hostname, "dev1");
    let tool = spec_for(&state(), "hello.tool");
    assert_eq!(tool.process.argv[0], "/bin/sh");
}

#[test]
fn environment_is_scrubbed_and_pack_vars_win() {
    let spec = spec_for(&state(), "hello.tool");
    let env = env_map(&spec);
    assert_eq!(env["TERM"], "xterm");
    assert_eq!(env["LANG"], "C.UTF-8");
    for gone in ["LD_PRELOAD", "LD_LIBRARY_PATH", "GLIBC_TUNABLES", "SNAP"] {
        assert!(!env.contains_key(gone), "{gone} leaked");
    }
    assert_eq!(env["PACK"], "/pack/hello/x3");
    assert_eq!(env["PACK_NAME"], "hello");
    assert_eq!(env["PACK_REVISION"], "x3");
    assert_eq!(env["PACK_VERSION"], "2.0");
    assert_eq!(env["PACK_DATA"], "/var/pack/hello/x3");
    assert_eq!(env["PACK_COMMON"], "/var/pack/hello/common");
    assert!(env["PACK_ARCH"].len() > 2);
    assert!(env["PATH"].starts_with("/pack/hello/x3/usr/sbin:"));
    assert!(env["PATH"].ends_with(":/bin"));
    assert_eq!(env["GREETING"], "hi from hello");
    assert_eq!(env["X"], "/pack/hello/x3/x");
}

#[test]
fn snap_yaml_packs_get_snap_twins() {
    let env = env_map(&spec_for(&state(), "snappy"));
    assert_eq!(env["SNAP"], "/pack/snappy/x1");
    assert_eq!(env["SNAP_DATA"], "/var/pack/snappy/x1");
    assert_eq!(env["SNAP_NAME"], "snappy");
    assert_eq!(env["SNAP_INSTANCE_NAME"], "snappy");
    let plain = env_map(&spec_for(&state(), "hello"));
    assert!(!plain.keys().any(|k| k.starts_with("SNAP")));
}

#[test]
fn mounts_expose_only_this_pack() {
    let spec = spec_for(&state(), "hello");
    let binds: Vec<(String, String, bool)> = spec
        .mounts
        .iter()
        .filter_map(|m| match m {
            MountOp::Bind {
                source,
                target,
                readonly,
            } => Some((
                source.display().to_string(),
                target.display().to_string(),
                *readonly,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        binds,
        [
            ("/r/run/packd/tmp/hello/tmp".into(), "/tmp".into(), false),
            ("/r/pack/hello/x3".into(), "/pack/hello/x3".into(), true),
            (
                "/r/var/pack/hello/x3".into(),
                "/var/pack/hello/x3".into(),
                false
            ),
            (
                "/r/var/pack/hello/common".into(),
                "/var/pack/hello/common".into(),
                false
            ),
            (
                "/r/var/pack/hello/users/0/x3".into(),
                "/var/pack/hello/users/0/x3".into(),
                false
            ),
            (
                "/r/var/pack/hello/users/0/common".into(),
                "/var/pack/hello/users/0/common".into(),
                false
            ),
        ]
    );
    let devices: Vec<String> = spec
        .mounts
        .iter()
        .filter_map(|m| match m {
            MountOp::Device { target, .. } => Some(target.display().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        devices,
        [
            "/dev/null",
            "/dev/zero",
            "/dev/full",
            "/dev/random",
            "/dev/urandom",
            "/dev/tty"
        ]
    );
    // Scaffolding tmpfs are made read-only once populated.
    for ro in ["/pack", "/var/pack", "/dev"] {
        assert!(
            spec.mounts
                .contains(&MountOp::RemountReadonly { target: ro.into() }),
            "{ro}"
        );
    }
}

#[test]
fn expansion_rules() {
    let mut env = BTreeMap::new();
    env.insert("A".to_string(), "1".to_string());
    assert_eq!(expand("$A/${A}/$B/x$", &env), "1/1//x$");
    assert_eq!(expand("${A", &env), "${A");
    assert_eq!(expand("$$A", &env), "$1");
}

#[test]
fn proc_is_hardened() {
    let spec = spec_for(&state(), "hello");
    let per_launch = &spec.launch_mounts;
    for ro in ["/proc/sys", "/proc/sysrq-trigger"] {
        assert!(
            per_launch.contains(&MountOp::ReadonlySelf { target: ro.into() }),
            "{ro}"
        );
    }
    assert!(per_launch.contains(&MountOp::MaskFile {
        target: "/proc/kcore".into()
    }));
    assert!(spec.mounts.contains(&MountOp::MaskDir {
        target: "/sys/firmware".into()
    }));
    // /proc is mounted before it is hardened.
    let proc_at = per_launch
        .iter()
        .position(|m| matches!(m, MountOp::Proc { .. }))
        .unwrap();
    let sys_ro = per_launch
        .iter()
        .position(|m| {
            *m == MountOp::ReadonlySelf {
                target: "/proc/sys".into(),
            }
        })
        .unwrap();
    assert!(proc_at < sys_ro);
}

/// The shared part of the plan becomes a mount template that later launches copy: nothing in
/// it may belong to one launch, and what must be fresh each time is in the per-launch part.
#[test]
fn shared_mounts_hold_nothing_of_a_launch() {
    let spec = spec_for(&state(), "hello");
    for op in &spec.mounts {
        assert!(
            !matches!(op, MountOp::Proc { .. } | MountOp::Devpts { .. }),
            "{op:?} belongs to the launch's namespaces"
        );
        // Mount points may be made once; what is mounted on them is the launch's.
        assert!(
            matches!(op, MountOp::Mkdir { .. })
                || !["/run", "/dev/shm", "/dev/pts", "/proc"]
                    .iter()
                    .any(|fresh| op.target().starts_with(fresh)),
            "{op:?} must be fresh for each launch"
        );
    }
    let targets: Vec<_> = spec.launch_mounts.iter().map(MountOp::target).collect();
    for fresh in ["/run", "/dev/shm", "/dev/pts", "/proc"] {
        assert!(targets.contains(&std::path::Path::new(fresh)), "{fresh}");
    }
    // sysfs shows the network namespace that mounts it, the pack's (or the host's, for an
    // app with network: another template): it is shared, so granted binds can go on it.
    assert!(
        spec.mounts
            .iter()
            .any(|op| matches!(op, MountOp::Sysfs { .. }))
    );
    // Two launches of the app by one user share a template; another user gets their own.
    assert_eq!(spec_for(&state(), "hello").mounts, spec.mounts);
    let resolved = resolve(&state(), &"hello".parse().unwrap()).unwrap();
    let other = Invocation {
        uid: 1000,
        gid: 1000,
        ..inv()
    };
    let theirs = build_spec(&Paths::new("/r"), &resolved, &other, &context()).unwrap();
    assert_ne!(theirs.mounts, spec.mounts);
}

#[test]
fn a_packs_tmp_is_as_large_as_its_hungriest_app_asks_in_whole_pages() {
    let meta = |apps: &str| {
        let yaml = format!("name: tt\nversion: '1'\nbase: busybox\napps:\n{apps}");
        PackMeta::from_yaml(yaml.as_bytes(), MetaSource::PackYaml).unwrap()
    };
    let a = "  a:\n    command: bin/a\n";
    assert_eq!(tmp::size_of(&meta(a)), tmp::DEFAULT_SIZE);
    let sized = format!(
        "{a}    limits: {{tmp: 1500000}}\n  b:\n    command: bin/b\n    limits: {{tmp: 2M}}\n"
    );
    assert_eq!(tmp::size_of(&meta(&sized)), 2 << 20);
    let odd = format!("{a}    limits: {{tmp: 3000001}}\n");
    assert_eq!(
        tmp::size_of(&meta(&odd)),
        3_002_368,
        "rounded up to 4 KiB pages"
    );
}

#[test]
fn templates_bound_from_a_path_are_forgotten_with_it() {
    let t = templates::MountTemplates::default();
    let fd = || std::fs::File::open("/dev/null").unwrap().into();
    t.insert(b"a".to_vec(), fd(), vec!["/r/run/packd/tmp/p/1000".into()]);
    t.insert(b"b".to_vec(), fd(), vec!["/r/run/packd/tmp/p/0".into()]);
    t.forget_using(Path::new("/r/run/packd/tmp/p/1000"));
    assert!(t.get(b"a").is_none());
    assert!(t.get(b"b").is_some());
}

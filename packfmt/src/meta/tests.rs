//! Whole-file tests: each rule is checked through `PackMeta::from_yaml`, with the exact message a
//! user sees.

use std::time::Duration;

use super::*;

const HELLO: &str = "
name: hello
version: '1.0'
summary: Says hello
base: busybox
apps:
  hello:
    command: bin/hello
";

fn parse(yaml: &str) -> Result<PackMeta, MetaError> {
    PackMeta::from_yaml(yaml.as_bytes(), MetaSource::PackYaml)
}

fn err(yaml: &str) -> String {
    parse(yaml).unwrap_err().to_string()
}

/// HELLO with `line` appended at the top level.
fn with(line: &str) -> String {
    format!("{HELLO}{line}\n")
}

/// HELLO's app with `line` appended to it (indented under apps.hello).
fn with_app(line: &str) -> String {
    format!("{HELLO}    {line}\n")
}

#[test]
fn minimal_app_parses_with_defaults() {
    let m = parse(HELLO).unwrap();
    assert_eq!(m.name, "hello");
    assert_eq!(m.version, "1.0");
    assert_eq!(m.pack_type, PackType::App);
    assert_eq!(m.confinement, Confinement::Strict);
    assert_eq!(m.grade, Grade::Stable);
    assert_eq!(m.epoch, "0");
    assert_eq!(m.base.as_deref(), Some("busybox"));
    let app = m.app(None).unwrap();
    assert_eq!(app.command, "bin/hello");
    assert!(!app.is_service());
    assert_eq!(m.source, MetaSource::PackYaml);
    assert_eq!(
        m.file_name(),
        format!("hello_1.0_{}.pack", model::host_arch())
    );
}

#[test]
fn snap_yaml_errors_name_that_file() {
    let e = PackMeta::from_yaml(b"name: X\nversion: '1'\n", MetaSource::SnapYaml).unwrap_err();
    assert_eq!(e.file, "meta/snap.yaml");
    assert!(
        e.to_string()
            .starts_with("meta/snap.yaml: invalid pack name \"X\"")
    );
}

#[test]
fn name_rule() {
    assert_eq!(
        err("name: Hello\nversion: '1'\n"),
        "meta/pack.yaml: invalid pack name \"Hello\": \"H\" is not allowed; use only lowercase letters a-z, digits and dashes"
    );
    assert_eq!(
        err("name: ../etc\nversion: '1'\n"),
        "meta/pack.yaml: invalid pack name \"../etc\": \".\" is not allowed; use only lowercase letters a-z, digits and dashes"
    );
    assert_eq!(
        err("version: '1'\n"),
        "meta/pack.yaml: missing required key \"name\""
    );
    assert_eq!(
        err("name: 12\nversion: '1'\n"),
        "meta/pack.yaml: name must be a string, found the number 12"
    );
}

#[test]
fn version_rule() {
    assert_eq!(
        err("name: hello\nversion: 1.10\n"),
        "meta/pack.yaml: version must be a string: quote it, as in version: \"1.1\" (YAML reads 1.10 as the number 1.1)"
    );
    assert_eq!(
        err("name: hello\nversion: '1.0 beta'\n"),
        "meta/pack.yaml: invalid version \"1.0 beta\": a space is not allowed; use only letters, digits and the characters : . + ~ -"
    );
    assert_eq!(
        err("name: hello\n"),
        "meta/pack.yaml: missing required key \"version\""
    );
}

#[test]
fn summary_and_description_lengths() {
    let long = "x".repeat(129);
    assert_eq!(
        err(&format!("name: hello\nversion: '1'\nsummary: {long}\n")),
        "meta/pack.yaml: summary is too long: 129 characters, at most 128 are allowed"
    );
    // Code points, not bytes: 128 two-byte characters are fine.
    let accented = "é".repeat(128);
    assert!(parse(&format!("name: hello\nversion: '1'\nsummary: {accented}\n")).is_ok());
    let long = "x".repeat(4097);
    assert_eq!(
        err(&format!("name: hello\nversion: '1'\ndescription: {long}\n")),
        "meta/pack.yaml: description is too long: 4097 characters, at most 4096 are allowed"
    );
    let long = "x".repeat(41);
    assert_eq!(
        err(&format!("name: hello\nversion: '1'\ntitle: {long}\n")),
        "meta/pack.yaml: title is too long: 41 characters, at most 40 are allowed"
    );
}

#[test]
fn unknown_and_unsupported_top_level_keys() {
    assert_eq!(
        err(&with("colour: blue")),
        "meta/pack.yaml: unknown top-level key \"colour\"; check its spelling (docs/pack-yaml.md lists the supported keys)"
    );
    assert_eq!(
        err(&with("layout: {}")),
        "meta/pack.yaml: top-level key \"layout\" is not supported by packd; remove it (see docs/pack-yaml.md)"
    );
}

#[test]
fn app_name_rule() {
    assert_eq!(
        err(
            "name: hello\nversion: '1'\nbase: busybox\napps:\n  hello_world:\n    command: bin/x\n"
        ),
        "meta/pack.yaml: invalid app name \"hello_world\": use only letters, digits and single dashes, starting and ending with a letter or digit"
    );
}

#[test]
fn command_rule() {
    assert_eq!(
        err(
            "name: hello\nversion: '1'\nbase: busybox\napps:\n  hello:\n    command: bin/x && reboot\n"
        ),
        "meta/pack.yaml: app \"hello\": invalid command \"bin/x && reboot\": \"&\" is not allowed; use only letters, digits, spaces and the characters / . _ # : $ -"
    );
    assert_eq!(
        err("name: hello\nversion: '1'\nbase: busybox\napps:\n  hello:\n    daemon: simple\n"),
        "meta/pack.yaml: app \"hello\": missing required key \"command\""
    );
}

#[test]
fn daemon_rule() {
    assert_eq!(
        err(&with_app("daemon: dbus")),
        "meta/pack.yaml: app \"hello\": invalid daemon \"dbus\": use one of simple, forking, oneshot, notify"
    );
    for (d, want) in Daemon::ALL {
        let m = parse(&with_app(&format!("daemon: {d}"))).unwrap();
        assert_eq!(m.apps["hello"].daemon, Some(want));
    }
}

#[test]
fn service_only_keys_need_a_daemon() {
    assert_eq!(
        err(&with_app("stop-timeout: 5s")),
        "meta/pack.yaml: app \"hello\": \"stop-timeout\" is only valid for services; add daemon: simple (or forking, oneshot, notify)"
    );
}

#[test]
fn service_fields_parse() {
    let yaml = format!(
        "{HELLO}    daemon: notify\n    restart-condition: always\n    restart-delay: 500ms\n    stop-timeout: 1m30s\n    stop-command: bin/stop\n    limits: {{memory: 64M, tasks: 512, cpu-weight: 50, tmp: 256M}}\n"
    );
    let m = parse(&yaml).unwrap();
    let app = &m.apps["hello"];
    assert_eq!(app.daemon, Some(Daemon::Notify));
    assert_eq!(app.restart_condition, RestartCondition::Always);
    assert_eq!(app.restart_delay, Some(Duration::from_millis(500)));
    assert_eq!(app.stop_timeout, Some(Duration::from_secs(90)));
    assert_eq!(app.stop_command.as_deref(), Some("bin/stop"));
    assert_eq!(
        app.limits,
        Limits {
            memory: Some(64 << 20),
            tasks: Some(512),
            cpu_weight: Some(50),
            tmp: Some(256 << 20),
        }
    );
    assert_eq!(m.services().count(), 1);
}

#[test]
fn restart_condition_rule() {
    assert_eq!(
        err(&with_app(
            "daemon: simple\n    restart-condition: sometimes"
        )),
        "meta/pack.yaml: app \"hello\": invalid restart-condition \"sometimes\": use one of never, on-success, on-failure, on-abnormal, on-abort, always"
    );
}

#[test]
fn limits_rules() {
    assert_eq!(
        err(&with_app("limits: {memory: 1M}")),
        "meta/pack.yaml: app \"hello\": limits: memory must be at least 4M (the sandbox itself needs a few megabytes)"
    );
    assert_eq!(
        err(&with_app("limits: {memory: lots}")),
        "meta/pack.yaml: app \"hello\": limits: memory: invalid size \"lots\": write a whole number of bytes with an optional K, M, G or T suffix, such as 64M"
    );
    assert_eq!(
        err(&with_app("limits: {tasks: 2}")),
        "meta/pack.yaml: app \"hello\": limits: tasks must be a whole number from 8 to 4194304"
    );
    assert_eq!(
        err(&with_app("limits: {cpu-weight: 0}")),
        "meta/pack.yaml: app \"hello\": limits: cpu-weight must be a whole number from 1 to 10000"
    );
    assert_eq!(
        err(&with_app("limits: {tmp: 512K}")),
        "meta/pack.yaml: app \"hello\": limits: tmp must be at least 1M (the size of the pack's /tmp)"
    );
    assert_eq!(
        err(&with_app("limits: {tmp: big}")),
        "meta/pack.yaml: app \"hello\": limits: tmp: invalid size \"big\": write a whole number of bytes with an optional K, M, G or T suffix, such as 64M"
    );
    assert_eq!(
        err(&with_app("limits: {disk: 1G}")),
        "meta/pack.yaml: app \"hello\": limits: unknown key \"disk\"; check its spelling (docs/pack-yaml.md lists the supported keys)"
    );
}

#[test]
fn unknown_and_unsupported_app_keys() {
    assert_eq!(
        err(&with_app("comand: bin/x")),
        "meta/pack.yaml: app \"hello\": unknown key \"comand\"; check its spelling (docs/pack-yaml.md lists the supported keys)"
    );
    assert_eq!(
        err(&with_app("command-chain: [bin/wrap]")),
        "meta/pack.yaml: app \"hello\": key \"command-chain\" is not supported by packd; remove it (see docs/pack-yaml.md)"
    );
}

#[test]
fn ordering_must_name_services() {
    let yaml = "name: hello\nversion: '1'\nbase: busybox\napps:\n  a:\n    command: bin/a\n    daemon: simple\n    after: [b]\n  b:\n    command: bin/b\n";
    assert_eq!(
        err(yaml),
        "meta/pack.yaml: app \"a\": after names \"b\", which is not a service of this pack"
    );
}

#[test]
fn app_needs_a_base_and_bases_cannot_have_one() {
    assert_eq!(
        err("name: hello\nversion: '1'\napps:\n  hello:\n    command: bin/hello\n"),
        "meta/pack.yaml: missing \"base\": apps run on a base root filesystem; add for example base: busybox or base: debian12"
    );
    assert_eq!(
        err("name: busybox\nversion: '1'\ntype: base\nbase: other\n"),
        "meta/pack.yaml: a pack of type base cannot have a base"
    );
    assert_eq!(
        err("name: busybox\nversion: '1'\ntype: base\napps:\n  sh:\n    command: bin/sh\n"),
        "meta/pack.yaml: a pack of type base cannot have apps or hooks"
    );
    let base = parse("name: busybox\nversion: '1'\ntype: base\n").unwrap();
    assert_eq!(base.pack_type, PackType::Base);
    // A data-only app pack needs no base.
    assert!(parse("name: data\nversion: '1'\n").is_ok());
}

#[test]
fn type_confinement_grade_rules() {
    assert_eq!(
        err(&with("type: os")),
        "meta/pack.yaml: type \"snapd\", \"os\" and \"core\" are not supported by packd; use app, base, gadget or kernel"
    );
    assert_eq!(
        err(&with("type: game")),
        "meta/pack.yaml: invalid type \"game\": use one of app, base, gadget, kernel"
    );
    assert_eq!(
        err(&with("confinement: classic")),
        "meta/pack.yaml: confinement \"classic\" is not supported: packd never runs an app unconfined; use strict (or devmode while developing)"
    );
    assert_eq!(
        parse(&with("confinement: devmode")).unwrap().confinement,
        Confinement::Devmode
    );
    assert_eq!(
        err(&with("grade: beta")),
        "meta/pack.yaml: invalid grade \"beta\": use stable or devel"
    );
}

#[test]
fn epoch_architectures_assumes() {
    assert_eq!(parse(&with("epoch: 2")).unwrap().epoch, "2");
    assert_eq!(parse(&with("epoch: 2*")).unwrap().epoch, "2*");
    assert_eq!(
        err(&with("epoch: '02'")),
        "meta/pack.yaml: invalid epoch \"02\": use a number such as 1, or 1* to also read the previous epoch's data"
    );
    assert_eq!(
        err(&with("architectures: [amd64, vax]")),
        "meta/pack.yaml: unknown architecture \"vax\": use one of all, amd64, arm64, armhf, i386, ppc64el, riscv64, s390x"
    );
    assert_eq!(
        err(&with("architectures: [all, amd64]")),
        "meta/pack.yaml: architectures: \"all\" cannot be combined with other architectures"
    );
    let m = parse(&with("architectures: [arm64, amd64]")).unwrap();
    assert_eq!(m.file_name(), "hello_1.0_multi.pack");
    let m = parse(&with("architectures: [all]")).unwrap();
    assert_eq!(m.file_name(), "hello_1.0_all.pack");
    assert_eq!(
        err(&with("assumes: [snapd2.60]")),
        "meta/pack.yaml: assumes \"snapd2.60\", which this packd does not provide (it provides: common-data-dir, snap-env, pack-env)"
    );
}

#[test]
fn environment_rules() {
    let m = parse(&with("environment: {LANG: C.UTF-8, DEBUG: 1, FAST: true}")).unwrap();
    assert_eq!(m.environment["LANG"], "C.UTF-8");
    assert_eq!(m.environment["DEBUG"], "1");
    assert_eq!(m.environment["FAST"], "true");
    assert_eq!(
        err(&with("environment: {RATIO: 1.10}")),
        "meta/pack.yaml: environment.RATIO must be a string: quote it, as in \"1.1\""
    );
    assert_eq!(
        err(&with("environment: {1X: a}")),
        "meta/pack.yaml: environment: invalid environment variable name \"1X\": use letters, digits and _, not starting with a digit"
    );
}

#[test]
fn plugs_and_slots() {
    let yaml = format!(
        "{HELLO}    plugs: [network, shared]\nplugs:\n  shared:\n    interface: content\n    target: $PACK_DATA/shared\n  net2: network-bind\nslots:\n  files:\n    interface: content\n    read: [$PACK/share]\n"
    );
    let m = parse(&yaml).unwrap();
    assert_eq!(m.plugs["network"].interface, "network", "implicit plug");
    assert_eq!(m.plugs["shared"].interface, "content");
    assert_eq!(
        m.plugs["shared"].attrs["target"],
        serde_json::json!("$PACK_DATA/shared")
    );
    assert_eq!(m.plugs["net2"].interface, "network-bind");
    assert_eq!(
        m.slots["files"].attrs["read"],
        serde_json::json!(["$PACK/share"])
    );
    assert_eq!(m.apps["hello"].plugs, vec!["network", "shared"]);

    assert_eq!(
        err(&with("plugs: {x: network}\nslots: {x: network}")),
        "meta/pack.yaml: plug and slot cannot share the name \"x\"; rename one of them"
    );
    assert_eq!(
        err(&with("plugs: {Net: network}")),
        "meta/pack.yaml: invalid plug name \"Net\": use only lowercase letters, digits and single dashes, starting with a letter"
    );
    assert_eq!(
        err(&with("plugs: {net: [a]}")),
        "meta/pack.yaml: plug \"net\" must name an interface or be a mapping of attributes, found a list"
    );
}

#[test]
fn hooks_declared_and_discovered() {
    let mut m = parse(&with("hooks:\n  install:\n    plugs: [network]")).unwrap();
    assert!(m.plugs.contains_key("network"));
    assert_eq!(
        m.clone().add_hook_files(&[]).unwrap_err().to_string(),
        "meta/pack.yaml: hook \"install\" is declared but meta/hooks/install does not exist"
    );
    m.add_hook_files(&["install".into(), "configure".into()])
        .unwrap();
    assert!(m.hooks.contains_key("configure"));
    assert_eq!(
        m.add_hook_files(&[
            "install".into(),
            "configure".into(),
            "prepare-plug-x".into()
        ])
        .unwrap_err()
        .to_string(),
        "meta/hooks/prepare-plug-x: unsupported hook \"prepare-plug-x\": packd runs install, remove, pre-refresh, post-refresh, configure, check-health"
    );
    assert_eq!(
        err(&with("hooks: {frobnicate: }")),
        "meta/pack.yaml: unsupported hook \"frobnicate\": packd runs install, remove, pre-refresh, post-refresh, configure, check-health"
    );
}

#[test]
fn hostile_documents() {
    assert_eq!(
        err("name: hel\0lo\nversion: '1'\n"),
        "meta/pack.yaml: contains a NUL byte; metadata must be plain UTF-8 text"
    );
    assert_eq!(
        PackMeta::from_yaml(b"name: \xff\n", MetaSource::PackYaml)
            .unwrap_err()
            .to_string(),
        "meta/pack.yaml: is not valid UTF-8"
    );
    assert_eq!(
        err(""),
        "meta/pack.yaml: is empty; it needs at least name and version"
    );
    assert_eq!(
        err("- a\n- b\n"),
        "meta/pack.yaml: must be a mapping of keys to values"
    );
    assert!(err("name: [unclosed\n").starts_with("meta/pack.yaml: is not valid YAML: "));
    let big = vec![b'#'; MAX_META_SIZE as usize + 1];
    assert_eq!(
        PackMeta::from_yaml(&big, MetaSource::PackYaml)
            .unwrap_err()
            .to_string(),
        format!(
            "meta/pack.yaml: is too large ({} bytes; at most {MAX_META_SIZE} are allowed)",
            MAX_META_SIZE + 1
        )
    );
    // "Billion laughs": alias expansion must fail fast, not exhaust memory.
    let mut bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
    for i in 1..12 {
        let prev = (b'a' + i - 1) as char;
        let cur = (b'a' + i) as char;
        bomb.push_str(&format!(
            "{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
    }
    assert!(parse(&bomb).is_err());
}

#[test]
fn from_dir_refuses_symlinks_size_and_ambiguity() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta");
    fs::create_dir(&meta).unwrap();
    assert_eq!(
        PackMeta::from_dir(dir.path()).unwrap_err().message,
        format!(
            "not found in {}; a package directory needs meta/pack.yaml (or meta/snap.yaml)",
            dir.path().display()
        )
    );
    let real = dir.path().join("real.yaml");
    fs::write(&real, HELLO).unwrap();
    symlink(&real, meta.join("pack.yaml")).unwrap();
    assert_eq!(
        PackMeta::from_dir(dir.path()).unwrap_err().to_string(),
        "meta/pack.yaml: is a symlink; it must be a regular file"
    );
    fs::remove_file(meta.join("pack.yaml")).unwrap();
    fs::write(
        meta.join("pack.yaml"),
        vec![b'#'; MAX_META_SIZE as usize + 10],
    )
    .unwrap();
    assert_eq!(
        PackMeta::from_dir(dir.path()).unwrap_err().to_string(),
        format!(
            "meta/pack.yaml: is too large ({} bytes; at most {MAX_META_SIZE} are allowed)",
            MAX_META_SIZE + 10
        )
    );
    fs::write(meta.join("pack.yaml"), HELLO).unwrap();
    fs::write(meta.join("snap.yaml"), HELLO).unwrap();
    assert_eq!(
        PackMeta::from_dir(dir.path()).unwrap_err().to_string(),
        "meta: has both pack.yaml and snap.yaml; keep only one"
    );
    fs::remove_file(meta.join("snap.yaml")).unwrap();
    fs::create_dir(meta.join("hooks")).unwrap();
    fs::write(meta.join("hooks/install"), "#!/bin/sh\n").unwrap();
    let m = PackMeta::from_dir(dir.path()).unwrap();
    assert!(m.hooks.contains_key("install"));
}

#[test]
fn json_round_trip() {
    let m = parse(&with_app("daemon: simple\n    stop-timeout: 2s")).unwrap();
    let json = serde_json::to_string(&m).unwrap();
    let back: PackMeta = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);
}

#[test]
fn command_executables() {
    let app = |cmd: &str| {
        let m = parse(&format!(
            "name: hello\nversion: '1'\nbase: busybox\napps:\n  hello:\n    command: {cmd}\n"
        ))
        .unwrap();
        m.apps["hello"].command_executable()
    };
    assert_eq!(app("bin/hello --x"), Some("bin/hello".into()));
    assert_eq!(app("$PACK/bin/hello"), Some("bin/hello".into()));
    assert_eq!(app("$SNAP/bin/hello"), Some("bin/hello".into()));
    assert_eq!(app("/bin/sh -c x"), None);
    assert_eq!(app("$PACK_DATA/run.sh"), None);
}

#[test]
fn reserved_pack_names_are_refused() {
    assert_eq!(
        err("name: system\nversion: '1'\n"),
        "meta/pack.yaml: invalid pack name \"system\": packd uses it itself (reserved: system); choose another"
    );
}

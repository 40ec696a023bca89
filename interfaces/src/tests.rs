use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use packfmt::meta::{PackMeta, Port};
use serde_json::json;

use super::*;

fn port(name: &str, iface: &str, attrs: serde_json::Value) -> Port {
    let attrs: BTreeMap<String, serde_json::Value> = serde_json::from_value(attrs).unwrap();
    Port {
        name: name.into(),
        interface: iface.into(),
        attrs,
    }
}

fn side<'a>(pack: &'a str, port: &'a Port) -> Side<'a> {
    Side {
        pack,
        revision: "x1".into(),
        port,
        host_pack: format!("/r/pack/{pack}/x1").into(),
        host_data: format!("/r/var/pack/{pack}/x1").into(),
        host_common: format!("/r/var/pack/{pack}/common").into(),
    }
}

fn grants(plug: &Port, slot_pack: &str, slot: &Port) -> Result<Grants, AttrError> {
    Connection {
        plug: side("app", plug),
        slot: side(slot_pack, slot),
        host_root: Path::new("/r"),
    }
    .grants()
}

fn system(iface: &str) -> Grants {
    let plug = port(iface, iface, json!({}));
    let slot = system_slot(iface).unwrap();
    grants(&plug, SYSTEM, &slot).unwrap()
}

fn meta(yaml: &str) -> PackMeta {
    PackMeta::from_yaml(yaml.as_bytes(), Default::default()).unwrap()
}

/// The auto-connection policy, one row per interface: (interface, connects by itself with one
/// candidate).
#[test]
fn auto_connection_policy_per_interface() {
    let table = [
        ("content", AutoConnect::DefaultProvider),
        ("gpio", AutoConnect::No),
        ("hardware-observe", AutoConnect::No),
        ("home", AutoConnect::No),
        ("i2c", AutoConnect::No),
        ("log-observe", AutoConnect::No),
        ("mount-observe", AutoConnect::No),
        ("network", AutoConnect::Yes),
        ("network-bind", AutoConnect::Yes),
        ("packd-control", AutoConnect::No),
        ("process-control", AutoConnect::No),
        ("removable-media", AutoConnect::No),
        ("serial-port", AutoConnect::No),
        ("shutdown", AutoConnect::No),
        ("system-observe", AutoConnect::No),
    ];
    let names: Vec<&str> = CATALOG.iter().map(|i| i.name).collect();
    assert_eq!(
        names,
        table.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "one row per interface"
    );
    for (name, auto) in table {
        assert_eq!(find(name).unwrap().auto_connect, auto, "{name}");
    }
}

#[test]
fn system_interfaces_auto_connect_to_the_one_system_slot() {
    let slots = system_slots();
    let offered: Vec<Candidate> = slots
        .iter()
        .map(|s| Candidate {
            pack: SYSTEM,
            slot: s,
        })
        .collect();
    for (iface, expect) in [
        ("network", true),
        ("network-bind", true),
        ("home", false),
        ("packd-control", false),
        ("shutdown", false),
        ("removable-media", false),
    ] {
        let plug = port(iface, iface, json!({}));
        let got = auto_connect("app", &plug, &offered);
        assert_eq!(got.is_some(), expect, "{iface}");
        if let Some(c) = got {
            assert_eq!((c.pack, c.slot.name.as_str()), (SYSTEM, iface));
        }
    }
}

#[test]
fn two_candidates_connect_nothing() {
    let a = port("one", "serial-port", json!({"path": "/dev/ttyS0"}));
    let b = port("two", "serial-port", json!({"path": "/dev/ttyS1"}));
    let offered = [
        Candidate {
            pack: "gadget",
            slot: &a,
        },
        Candidate {
            pack: "gadget",
            slot: &b,
        },
    ];
    let plug = port("tty", "serial-port", json!({}));
    assert_eq!(candidates("app", &plug, &offered).len(), 2);
    assert!(auto_connect("app", &plug, &offered).is_none());
}

#[test]
fn content_connects_by_itself_only_to_its_default_provider_with_the_same_tag() {
    let slot = port("themes", "content", json!({"read": ["$PACK/themes"]}));
    let offered = [Candidate {
        pack: "provider",
        slot: &slot,
    }];
    let plug = port(
        "themes",
        "content",
        json!({"target": "$PACK_DATA/themes", "default-provider": "provider"}),
    );
    assert!(auto_connect("app", &plug, &offered).is_some());
    let other = port(
        "themes",
        "content",
        json!({"target": "$PACK_DATA/themes", "default-provider": "elsewhere"}),
    );
    assert!(auto_connect("app", &other, &offered).is_none());
    assert_eq!(
        candidates("app", &other, &offered).len(),
        1,
        "still connectable by hand"
    );
    let tagged = port(
        "themes",
        "content",
        json!({"target": "$PACK_DATA/t", "content": "icons", "default-provider": "provider"}),
    );
    assert!(
        candidates("app", &tagged, &offered).is_empty(),
        "tags differ"
    );
    // A pack's own slot is never a candidate for its plug.
    assert!(candidates("provider", &plug, &offered).is_empty());
}

#[test]
fn network_shares_the_host_network_and_allows_connect_only() {
    let g = system("network");
    assert!(g.host_network && g.connect_any);
    assert!(!g.bind_any && g.bind_tcp.is_empty());
    let calls: Vec<&str> = g
        .seccomp
        .iter()
        .map(|r| r["syscall"].as_str().unwrap())
        .collect();
    assert_eq!(calls, ["bind"]);
}

#[test]
fn network_bind_allows_any_port_or_only_the_listed_ones() {
    let g = system("network-bind");
    assert!(g.host_network && g.bind_any && !g.connect_any);
    let calls: Vec<&str> = g
        .seccomp
        .iter()
        .map(|r| r["syscall"].as_str().unwrap())
        .collect();
    assert_eq!(calls, ["bind", "listen", "accept", "accept4"]);
    let plug = port("web", "network-bind", json!({"ports": [8080, 8443]}));
    let g = grants(&plug, SYSTEM, &system_slot("network-bind").unwrap()).unwrap();
    assert!(!g.bind_any);
    assert_eq!(g.bind_tcp, [8080, 8443]);
}

#[test]
fn home_and_sockets_are_flags_for_packd() {
    assert!(system("home").home);
    assert_eq!(system("packd-control").socket, Some(Socket::Control));
    assert_eq!(system("shutdown").socket, Some(Socket::Shutdown));
    assert!(system("system-observe").host_pid);
    assert_eq!(
        system("hardware-observe").unmask,
        [PathBuf::from("/sys/firmware")]
    );
}

#[test]
fn removable_media_binds_the_hosts_media_under_the_root() {
    let g = system("removable-media");
    let binds: Vec<(&Path, &Path, bool)> = g
        .binds
        .iter()
        .map(|b| (b.source.as_path(), b.target.as_path(), b.readonly))
        .collect();
    assert_eq!(
        binds,
        [
            (Path::new("/r/media"), Path::new("/media"), false),
            (Path::new("/r/mnt"), Path::new("/mnt"), false)
        ]
    );
    assert_eq!(
        g.landlock_write,
        [PathBuf::from("/media"), PathBuf::from("/mnt")]
    );
}

#[test]
fn log_observe_is_read_only_with_dac_read_search() {
    let g = system("log-observe");
    assert!(g.binds[0].readonly && g.binds[0].optional);
    assert_eq!(g.capabilities, ["CAP_DAC_READ_SEARCH"]);
    assert!(g.landlock_write.is_empty());
}

#[test]
fn process_control_grants_its_capabilities() {
    assert_eq!(
        system("process-control").capabilities,
        ["CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_KILL"]
    );
}

#[test]
fn serial_port_exposes_exactly_the_slots_device() {
    let slot = port("uart", "serial-port", json!({"path": "/dev/ttyS3"}));
    let plug = port("tty", "serial-port", json!({}));
    let g = grants(&plug, "gadget", &slot).unwrap();
    assert_eq!(
        g.devices,
        [Device {
            host: "/r/dev/ttyS3".into(),
            inside: "/dev/ttyS3".into()
        }]
    );
    assert_eq!(g.landlock_write, [PathBuf::from("/dev/ttyS3")]);
    assert_eq!(g.apparmor, ["/dev/ttyS3 rwk,"]);
    assert!(!g.host_network);
}

#[test]
fn gpio_binds_its_line() {
    let slot = port("led", "gpio", json!({"number": 17}));
    let plug = port("led", "gpio", json!({}));
    let g = grants(&plug, "gadget", &slot).unwrap();
    assert_eq!(g.binds[0].target, Path::new("/sys/class/gpio/gpio17"));
    assert_eq!(g.binds[0].source, Path::new("/r/sys/class/gpio/gpio17"));
    assert!(!g.binds[0].readonly);
}

#[test]
fn content_binds_the_providers_directories_at_the_target() {
    let slot = port(
        "share",
        "content",
        json!({"read": ["$PACK/themes"], "write": ["$PACK_COMMON/inbox"]}),
    );
    let plug = port("share", "content", json!({"target": "$PACK_DATA/shared"}));
    let g = grants(&plug, "provider", &slot).unwrap();
    let binds: Vec<(&Path, &Path, bool)> = g
        .binds
        .iter()
        .map(|b| (b.source.as_path(), b.target.as_path(), b.readonly))
        .collect();
    assert_eq!(
        binds,
        [
            (
                Path::new("/r/pack/provider/x1/themes"),
                Path::new("/var/pack/app/x1/shared/themes"),
                true
            ),
            (
                Path::new("/r/var/pack/provider/common/inbox"),
                Path::new("/var/pack/app/x1/shared/inbox"),
                false
            ),
        ]
    );
    assert_eq!(
        g.landlock_write,
        [PathBuf::from("/var/pack/app/x1/shared/inbox")]
    );
    // One directory goes at the target itself.
    let slot = port("share", "content", json!({"write": ["$PACK_DATA/out"]}));
    let g = grants(&plug, "provider", &slot).unwrap();
    assert_eq!(g.binds[0].target, Path::new("/var/pack/app/x1/shared"));
    assert_eq!(g.binds[0].source, Path::new("/r/var/pack/provider/x1/out"));
}

#[test]
fn content_cannot_write_into_the_package() {
    let slot = port("share", "content", json!({"write": ["$PACK/lib"]}));
    let plug = port("share", "content", json!({"target": "$PACK_DATA/shared"}));
    assert_eq!(
        grants(&plug, "provider", &slot).unwrap_err().0,
        "slot provider:share: write: \"$PACK/lib\" is in the read-only package; share $PACK_DATA or $PACK_COMMON directories"
    );
}

#[test]
fn merged_grants_keep_the_strongest() {
    let mut g = system("network");
    g.merge(system("network-bind"));
    g.merge(system("process-control"));
    g.merge(system("process-control"));
    assert!(g.connect_any && g.bind_any && g.host_network);
    assert_eq!(g.capabilities.len(), 3);
    let mut s = system("shutdown");
    s.merge(system("packd-control"));
    assert_eq!(s.socket, Some(Socket::Control));
}

#[test]
fn validate_names_unknown_interfaces_and_bad_attributes() {
    let m = meta(
        "name: app\nversion: '1'\nbase: core\nplugs:\n  x:\n    interface: teleport\napps:\n  a:\n    command: bin/a\n",
    );
    let err = validate(&m).unwrap_err().0;
    assert!(
        err.starts_with(
            "plug \"x\": unknown interface \"teleport\"; known interfaces: content, gpio,"
        ),
        "{err}"
    );
    let m = meta(
        "name: app\nversion: '1'\nbase: core\nplugs:\n  web:\n    interface: network-bind\n    ports: [http]\napps:\n  a:\n    command: bin/a\n",
    );
    assert_eq!(
        validate(&m).unwrap_err().0,
        "plug \"web\": ports: \"http\" is not a TCP port (1-65535)"
    );
    let m = meta(
        "name: app\nversion: '1'\nbase: core\nplugs:\n  net:\n    interface: network\n    colour: red\napps:\n  a:\n    command: bin/a\n",
    );
    assert_eq!(
        validate(&m).unwrap_err().0,
        "plug \"net\": unknown attribute \"colour\" (this interface takes no attributes)"
    );
}

#[test]
fn validate_checks_who_may_provide_a_slot() {
    let m = meta(
        "name: app\nversion: '1'\nbase: core\nslots:\n  net:\n    interface: network\napps:\n  a:\n    command: bin/a\n",
    );
    assert_eq!(
        validate(&m).unwrap_err().0,
        "slot \"net\": a app pack cannot provide the \"network\" interface; only the system provides it"
    );
    let m = meta(
        "name: app\nversion: '1'\nbase: core\nslots:\n  tty:\n    interface: serial-port\n    path: /dev/ttyS0\napps:\n  a:\n    command: bin/a\n",
    );
    assert_eq!(
        validate(&m).unwrap_err().0,
        "slot \"tty\": a app pack cannot provide the \"serial-port\" interface; only a gadget pack (type: gadget) provides it"
    );
    let m = meta(
        "name: board\nversion: '1'\ntype: gadget\nslots:\n  tty:\n    interface: serial-port\n    path: /dev/sda\n",
    );
    assert!(
        validate(&m)
            .unwrap_err()
            .0
            .starts_with("slot \"tty\": path: \"/dev/sda\" is not a serial port")
    );
    let m = meta(
        "name: board\nversion: '1'\ntype: gadget\nslots:\n  tty:\n    interface: serial-port\n    path: /dev/ttyS0\n",
    );
    assert_eq!(validate(&m), Ok(()));
}

#[test]
fn port_refs_parse_and_print() {
    let r: PortRef = "app:net".parse().unwrap();
    assert_eq!(r, PortRef::new("app", "net"));
    assert_eq!(r.to_string(), "app:net");
    assert_eq!("system:network".parse::<PortRef>().unwrap().pack, "system");
    assert_eq!(
        "app".parse::<PortRef>().unwrap_err().0,
        "\"app\" is not PACK:NAME: the colon is missing"
    );
    assert!("../x:net".parse::<PortRef>().is_err());
}

#[test]
fn every_interface_documents_its_attributes() {
    for i in CATALOG {
        assert!(!i.summary.is_empty() && !i.grants.is_empty(), "{}", i.name);
        for r in i.plug_attrs.iter().chain(i.slot_attrs) {
            assert!(!r.doc.is_empty(), "{}: {}", i.name, r.name);
        }
    }
}

//! From YAML bytes to a validated [`PackMeta`]. The YAML is read into a generic value first so
//! that every message can name the exact key, then each section is checked and converted
//! (`apps:` and `hooks:` in [`super::apps`]), with the value helpers both share.

use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

use super::apps::{parse_apps, parse_hooks};
use super::model::*;
use super::names::{
    show, validate_env_name, validate_pack_name, validate_port_name, validate_version,
};

pub(super) type Res<T> = Result<T, String>;

/// Names no pack may take: `system` is the pseudo-pack of the system's slots and settings
/// (`pack connect a:p system:s`, `pack set system …`).
pub const RESERVED_PACK_NAMES: &[&str] = &["system"];

/// Top-level keys packd reads.
const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "version",
    "summary",
    "description",
    "title",
    "license",
    "type",
    "base",
    "confinement",
    "grade",
    "epoch",
    "architectures",
    "assumes",
    "environment",
    "apps",
    "hooks",
    "plugs",
    "slots",
];

/// snap.yaml keys that packd recognises but does not implement: refusing them is better than
/// installing a package that silently behaves differently from what its author wrote.
const UNSUPPORTED_TOP_LEVEL_KEYS: &[&str] = &[
    "layout",
    "system-usernames",
    "components",
    "links",
    "provenance",
];

pub const ARCHITECTURES: &[&str] = &[
    "all", "amd64", "arm64", "armhf", "i386", "ppc64el", "riscv64", "s390x",
];

/// Features an `assumes:` entry may name.
pub const PROVIDED_FEATURES: &[&str] = &["common-data-dir", "snap-env", "pack-env"];

pub(super) fn parse(bytes: &[u8], source: MetaSource) -> Res<PackMeta> {
    if bytes.contains(&0) {
        return Err("contains a NUL byte; metadata must be plain UTF-8 text".into());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "is not valid UTF-8".to_string())?;
    let doc: Value = serde_yaml::from_str(text).map_err(|e| format!("is not valid YAML: {e}"))?;
    let top = match doc {
        Value::Mapping(m) => m,
        Value::Null => return Err("is empty; it needs at least name and version".into()),
        _ => return Err("must be a mapping of keys to values".into()),
    };
    check_keys(&top, "", TOP_LEVEL_KEYS, UNSUPPORTED_TOP_LEVEL_KEYS)?;

    let name = required_string(&top, "name")?;
    validate_pack_name(&name)?;
    if RESERVED_PACK_NAMES.contains(&name.as_str()) {
        return Err(format!(
            "invalid pack name {}: packd uses it itself (reserved: {}); choose another",
            show(&name),
            RESERVED_PACK_NAMES.join(", ")
        ));
    }
    let version = match top.get("version") {
        None => return Err(missing("version")),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => {
            return Err(format!(
                "version must be a string: quote it, as in version: \"{n}\" (YAML reads 1.10 as the number 1.1)"
            ));
        }
        Some(_) => return Err("version must be a string such as \"1.0\"".into()),
    };
    validate_version(&version)?;

    let summary = optional_string(&top, "summary")?;
    check_length("summary", summary.as_deref(), 128)?;
    let description = optional_string(&top, "description")?;
    check_length("description", description.as_deref(), 4096)?;
    let title = optional_string(&top, "title")?;
    check_length("title", title.as_deref(), 40)?;
    let license = optional_string(&top, "license")?;

    let pack_type = match optional_string(&top, "type")?.as_deref() {
        None | Some("app") => PackType::App,
        Some("base") => PackType::Base,
        Some("gadget") => PackType::Gadget,
        Some("kernel") => PackType::Kernel,
        Some("snapd") | Some("os") | Some("core") => {
            return Err("type \"snapd\", \"os\" and \"core\" are not supported by packd; use app, base, gadget or kernel".into());
        }
        Some(other) => {
            return Err(format!(
                "invalid type {}: use one of app, base, gadget, kernel",
                show(other)
            ));
        }
    };
    let confinement = match optional_string(&top, "confinement")?.as_deref() {
        None | Some("strict") => Confinement::Strict,
        Some("devmode") => Confinement::Devmode,
        Some("classic") => {
            return Err("confinement \"classic\" is not supported: packd never runs an app unconfined; use strict (or devmode while developing)".into());
        }
        Some(other) => {
            return Err(format!(
                "invalid confinement {}: use strict or devmode",
                show(other)
            ));
        }
    };
    let grade = match optional_string(&top, "grade")?.as_deref() {
        None | Some("stable") => Grade::Stable,
        Some("devel") => Grade::Devel,
        Some(other) => {
            return Err(format!(
                "invalid grade {}: use stable or devel",
                show(other)
            ));
        }
    };
    let epoch = parse_epoch(top.get("epoch"))?;
    let architectures = parse_architectures(top.get("architectures"))?;
    let assumes = string_list(top.get("assumes"), "assumes")?;
    if let Some(missing) = assumes
        .iter()
        .find(|a| !PROVIDED_FEATURES.contains(&a.as_str()))
    {
        return Err(format!(
            "assumes {}, which this packd does not provide (it provides: {})",
            show(missing),
            PROVIDED_FEATURES.join(", ")
        ));
    }
    let environment = parse_environment(top.get("environment"), "environment")?;

    let mut plugs = parse_ports(top.get("plugs"), "plug")?;
    let mut slots = parse_ports(top.get("slots"), "slot")?;
    let apps = parse_apps(top.get("apps"), &mut plugs, &mut slots)?;
    let hooks = parse_hooks(top.get("hooks"), &mut plugs)?;
    if let Some(shared) = plugs.keys().find(|p| slots.contains_key(*p)) {
        return Err(format!(
            "plug and slot cannot share the name {}; rename one of them",
            show(shared)
        ));
    }

    let base = optional_string(&top, "base")?;
    match (pack_type, &base) {
        (PackType::App, None) if !apps.is_empty() || !hooks.is_empty() => {
            return Err("missing \"base\": apps run on a base root filesystem; add for example base: busybox or base: debian12".into());
        }
        (PackType::App, Some(b)) => {
            validate_pack_name(b).map_err(|e| format!("base: {e}"))?;
            if *b == name {
                return Err("base cannot be the pack itself".into());
            }
        }
        (PackType::Base | PackType::Gadget | PackType::Kernel, Some(_)) => {
            return Err(format!(
                "a pack of type {} cannot have a base",
                pack_type.as_str()
            ));
        }
        _ => {}
    }
    if pack_type != PackType::App && (!apps.is_empty() || !hooks.is_empty()) {
        return Err(format!(
            "a pack of type {} cannot have apps or hooks",
            pack_type.as_str()
        ));
    }

    Ok(PackMeta {
        name,
        version,
        summary,
        description,
        title,
        license,
        pack_type,
        base,
        confinement,
        grade,
        epoch,
        architectures,
        assumes,
        environment,
        apps,
        hooks,
        plugs,
        slots,
        source,
    })
}

pub(super) fn missing(key: &str) -> String {
    format!("missing required key {}", show(key))
}

/// Every key must be a string and one we know; `prefix` names the section for the message.
pub(super) fn check_keys(
    map: &Mapping,
    prefix: &str,
    known: &[&str],
    unsupported: &[&str],
) -> Res<()> {
    for key in map.keys() {
        let Value::String(key) = key else {
            return Err(format!(
                "{}keys must be strings, found {}",
                prefix,
                describe(key)
            ));
        };
        if known.contains(&key.as_str()) {
            continue;
        }
        let (unknown, key_word) = if prefix.is_empty() {
            ("unknown top-level key", "top-level key")
        } else {
            ("unknown key", "key")
        };
        return Err(if unsupported.contains(&key.as_str()) {
            format!(
                "{prefix}{key_word} {} is not supported by packd; remove it (see docs/pack-yaml.md)",
                show(key)
            )
        } else {
            format!(
                "{prefix}{unknown} {}; check its spelling (docs/pack-yaml.md lists the supported keys)",
                show(key)
            )
        });
    }
    Ok(())
}

pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {}", show(s)),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(_) => "a tagged value".into(),
    }
}

pub(super) fn as_string(v: &Value, what: &str) -> Res<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!(
            "{what} must be a string, found {}",
            describe(other)
        )),
    }
}

pub(super) fn required_string(map: &Mapping, key: &str) -> Res<String> {
    match map.get(key) {
        None | Some(Value::Null) => Err(missing(key)),
        Some(v) => as_string(v, key),
    }
}

pub(super) fn optional_string(map: &Mapping, key: &str) -> Res<Option<String>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_string(v, key).map(Some),
    }
}

pub(super) fn check_length(what: &str, value: Option<&str>, max: usize) -> Res<()> {
    let Some(value) = value else { return Ok(()) };
    let len = value.chars().count();
    if len > max {
        return Err(format!(
            "{what} is too long: {len} characters, at most {max} are allowed"
        ));
    }
    Ok(())
}

pub(super) fn mapping<'a>(v: Option<&'a Value>, what: &str) -> Res<Option<&'a Mapping>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Mapping(m)) => Ok(Some(m)),
        Some(other) => Err(format!(
            "{what} must be a mapping, found {}",
            describe(other)
        )),
    }
}

pub(super) fn string_list(v: Option<&Value>, what: &str) -> Res<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| as_string(i, &format!("each entry of {what}")))
            .collect(),
        Some(other) => Err(format!("{what} must be a list, found {}", describe(other))),
    }
}

/// A scalar rendered as the string an environment variable would hold. Floats are refused
/// because YAML would have changed them already (`1.10` → `1.1`).
pub(super) fn env_value(v: &Value, what: &str) -> Res<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Value::Number(n) => Err(format!("{what} must be a string: quote it, as in \"{n}\"")),
        other => Err(format!(
            "{what} must be a string, found {}",
            describe(other)
        )),
    }
}

pub(super) fn parse_environment(v: Option<&Value>, what: &str) -> Res<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    let Some(map) = mapping(v, what)? else {
        return Ok(env);
    };
    for (k, val) in map {
        let key = as_string(k, &format!("each key of {what}"))?;
        validate_env_name(&key).map_err(|e| format!("{what}: {e}"))?;
        let value = env_value(val, &format!("{what}.{key}"))?;
        if value.contains('\0') {
            return Err(format!("{what}.{key} contains a NUL byte"));
        }
        env.insert(key, value);
    }
    Ok(env)
}

pub(super) fn parse_epoch(v: Option<&Value>) -> Res<String> {
    let epoch = match v {
        None | Some(Value::Null) => return Ok("0".into()),
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Mapping(_)) => {
            return Err("epoch with read/write lists is not supported by packd; use a single epoch such as 1 or 1*".into());
        }
        Some(other) => {
            return Err(format!(
                "epoch must be a number such as 1 or 1*, found {}",
                describe(other)
            ));
        }
    };
    let digits = epoch.strip_suffix('*').unwrap_or(&epoch);
    let valid = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !valid {
        return Err(format!(
            "invalid epoch {}: use a number such as 1, or 1* to also read the previous epoch's data",
            show(&epoch)
        ));
    }
    Ok(epoch)
}

pub(super) fn parse_architectures(v: Option<&Value>) -> Res<Vec<String>> {
    let archs = string_list(v, "architectures")?;
    for arch in &archs {
        if !ARCHITECTURES.contains(&arch.as_str()) {
            return Err(format!(
                "unknown architecture {}: use one of {}",
                show(arch),
                ARCHITECTURES.join(", ")
            ));
        }
    }
    if archs.len() > 1 && archs.iter().any(|a| a == "all") {
        return Err("architectures: \"all\" cannot be combined with other architectures".into());
    }
    Ok(archs)
}

/// Top-level plugs or slots: `name:` (interface = name), `name: interface`, or
/// `name: {interface: X, attr: value, ...}`.
pub(super) fn parse_ports(v: Option<&Value>, kind: &str) -> Res<BTreeMap<String, Port>> {
    let section = format!("{kind}s");
    let mut ports = BTreeMap::new();
    let Some(map) = mapping(v, &section)? else {
        return Ok(ports);
    };
    for (k, val) in map {
        let name = as_string(k, &format!("each {kind} name"))?;
        validate_port_name(kind, &name)?;
        let (interface, attrs) = match val {
            Value::Null => (name.clone(), BTreeMap::new()),
            Value::String(iface) => (iface.clone(), BTreeMap::new()),
            Value::Mapping(m) => {
                let interface = match m.get("interface") {
                    None | Some(Value::Null) => name.clone(),
                    Some(i) => as_string(i, &format!("{kind} {}: interface", show(&name)))?,
                };
                let mut attrs = BTreeMap::new();
                for (ak, av) in m {
                    let attr = as_string(ak, &format!("{kind} {}: attribute names", show(&name)))?;
                    if attr == "interface" {
                        continue;
                    }
                    validate_port_name("attribute", &attr)
                        .map_err(|e| format!("{kind} {}: {e}", show(&name)))?;
                    attrs.insert(
                        attr,
                        yaml_to_json(av).map_err(|e| {
                            format!(
                                "{kind} {}: attribute {}: {e}",
                                show(&name),
                                show(ak.as_str().unwrap_or_default())
                            )
                        })?,
                    );
                }
                (interface, attrs)
            }
            other => {
                return Err(format!(
                    "{kind} {} must name an interface or be a mapping of attributes, found {}",
                    show(&name),
                    describe(other)
                ));
            }
        };
        validate_port_name("interface", &interface)
            .map_err(|e| format!("{kind} {}: {e}", show(&name)))?;
        ports.insert(
            name.clone(),
            Port {
                name,
                interface,
                attrs,
            },
        );
    }
    Ok(ports)
}

pub(super) fn yaml_to_json(v: &Value) -> Res<serde_json::Value> {
    Ok(match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                return Err(format!(
                    "the number {n} must be quoted or be a whole number"
                ));
            }
        }
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Sequence(items) => items
            .iter()
            .map(yaml_to_json)
            .collect::<Res<Vec<_>>>()?
            .into(),
        Value::Mapping(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                out.insert(as_string(k, "attribute keys")?, yaml_to_json(v)?);
            }
            out.into()
        }
        Value::Tagged(_) => return Err("YAML tags are not allowed".into()),
    })
}

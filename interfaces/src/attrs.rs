//! The grammar of plug and slot attributes. Every attribute is checked here before it reaches
//! a profile: snapd's CVE-2021-4120 injected AppArmor rules through an attribute that was pasted
//! into a profile unchecked. Values that become paths are clean and absolute, never contain
//! `..`, globs or profile metacharacters, and are limited to the places their interface allows.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::AttrError;

/// What an attribute may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A serial device: `/dev/tty{S,USB,ACM,AMA,XRUSB,mxc,O,GS}N` or `/dev/serial-port-NAME`.
    SerialPath,
    /// An I2C bus: `/dev/i2c-N`.
    I2cPath,
    /// A GPIO line number, 0–65535.
    GpioNumber,
    /// TCP ports: a list of numbers 1–65535.
    Ports,
    /// A content tag: letters, digits and `-`, 1–40 characters.
    Word,
    /// A pack name (e.g. content's `default-provider`).
    PackName,
    /// Directories of the providing pack: a list of `$PACK/…`, `$PACK_DATA/…` or
    /// `$PACK_COMMON/…` paths (the `SNAP*` spellings too).
    ProviderDirs,
    /// Where a content plug mounts: one `$PACK_DATA/…` or `$PACK_COMMON/…` path (or `$PACK/…`
    /// naming a directory that exists in the package).
    Target,
}

/// One attribute an interface accepts.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub doc: &'static str,
}

/// Checks `attrs` against `rules`: every attribute known, of its kind, the required ones
/// present. `what` names the port in messages (`plug "tty"`).
pub fn check(what: &str, attrs: &BTreeMap<String, Value>, rules: &[Rule]) -> Result<(), AttrError> {
    for (name, value) in attrs {
        let Some(rule) = rules.iter().find(|r| r.name == name) else {
            let known: Vec<&str> = rules.iter().map(|r| r.name).collect();
            return Err(AttrError(format!(
                "{what}: unknown attribute {name:?} ({})",
                if known.is_empty() {
                    "this interface takes no attributes".to_string()
                } else {
                    format!("known: {}", known.join(", "))
                }
            )));
        };
        check_value(rule.kind, value).map_err(|e| AttrError(format!("{what}: {name}: {e}")))?;
    }
    if let Some(missing) = rules
        .iter()
        .find(|r| r.required && !attrs.contains_key(r.name))
    {
        return Err(AttrError(format!(
            "{what}: the attribute {:?} is required ({})",
            missing.name, missing.doc
        )));
    }
    Ok(())
}

fn check_value(kind: Kind, v: &Value) -> Result<(), String> {
    match kind {
        Kind::SerialPath => {
            let s = string(v)?;
            clean_path(s)?;
            if serial_path(s) {
                Ok(())
            } else {
                Err(format!(
                    "{s:?} is not a serial port; use /dev/ttyS0, /dev/ttyUSB0, /dev/ttyACM0, \
                     /dev/ttyAMA0 (or ttyXRUSB, ttymxc, ttyO, ttyGS with a number) or \
                     /dev/serial-port-NAME"
                ))
            }
        }
        Kind::I2cPath => {
            let s = string(v)?;
            match s.strip_prefix("/dev/i2c-") {
                Some(n) if number(n, 3) => Ok(()),
                _ => Err(format!("{s:?} is not an I2C bus; use /dev/i2c-N")),
            }
        }
        Kind::GpioNumber => match v.as_u64() {
            Some(n) if n <= 65535 => Ok(()),
            _ => Err(format!("{v} is not a GPIO number (0-65535)")),
        },
        Kind::Ports => {
            let list = v
                .as_array()
                .ok_or_else(|| format!("must be a list of TCP ports, found {v}"))?;
            if list.is_empty() {
                return Err("must list at least one port".into());
            }
            for p in list {
                match p.as_u64() {
                    Some(n) if (1..=65535).contains(&n) => {}
                    _ => return Err(format!("{p} is not a TCP port (1-65535)")),
                }
            }
            Ok(())
        }
        Kind::Word => {
            let s = string(v)?;
            if !s.is_empty()
                && s.len() <= 40
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                Ok(())
            } else {
                Err(format!(
                    "{s:?} must be 1-40 lowercase letters, digits or dashes"
                ))
            }
        }
        Kind::PackName => {
            let s = string(v)?;
            packfmt::meta::validate_pack_name(s).map_err(|e| e.to_string())
        }
        Kind::ProviderDirs => {
            let list: Vec<&Value> = match v {
                Value::Array(items) if !items.is_empty() => items.iter().collect(),
                Value::String(_) => vec![v],
                _ => return Err(format!("must be a list of directories, found {v}")),
            };
            for item in list {
                let s = string(item)?;
                split_var(s, &["PACK", "PACK_DATA", "PACK_COMMON"])?;
            }
            Ok(())
        }
        Kind::Target => {
            let s = string(v)?;
            split_var(s, &["PACK", "PACK_DATA", "PACK_COMMON"]).map(|_| ())
        }
    }
}

fn string(v: &Value) -> Result<&str, String> {
    v.as_str()
        .ok_or_else(|| format!("must be a string, found {v}"))
}

fn number(s: &str, max_digits: usize) -> bool {
    !s.is_empty() && s.len() <= max_digits && s.bytes().all(|b| b.is_ascii_digit())
}

fn serial_path(s: &str) -> bool {
    if let Some(name) = s.strip_prefix("/dev/serial-port-") {
        return !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    }
    let Some(rest) = s.strip_prefix("/dev/tty") else {
        return false;
    };
    ["USB", "ACM", "AMA", "XRUSB", "mxc", "S", "O", "GS"]
        .iter()
        .any(|p| rest.strip_prefix(p).is_some_and(|n| number(n, 3)))
}

/// Characters a path may hold: no globs, no AppArmor or shell metacharacters, no spaces or
/// control characters.
fn clean_path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err(format!("{s:?} must be an absolute path"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | '+' | '@')))
    {
        return Err(format!(
            "{s:?} contains {c:?}; paths may hold only letters, digits and / - _ . + @"
        ));
    }
    for part in s.split('/').skip(1) {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!(
                "{s:?} is not a clean path (no empty, \".\" or \"..\" components, no trailing /)"
            ));
        }
    }
    Ok(())
}

/// A `$VAR/rest` path: which variable (`SNAP*` spellings map to `PACK*`) and the clean relative
/// rest.
pub fn split_var<'a>(s: &'a str, allowed: &[&str]) -> Result<(&'static str, &'a str), String> {
    let (var, rest) = s
        .strip_prefix('$')
        .and_then(|v| v.split_once('/'))
        .ok_or_else(|| {
            format!(
                "{s:?} must start with one of {} followed by /",
                allowed
                    .iter()
                    .map(|a| format!("${a}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let var: &'static str = match var {
        "PACK" | "SNAP" => "PACK",
        "PACK_DATA" | "SNAP_DATA" => "PACK_DATA",
        "PACK_COMMON" | "SNAP_COMMON" => "PACK_COMMON",
        other => return Err(format!("${other} is not allowed here")),
    };
    if !allowed.contains(&var) {
        return Err(format!("${var} is not allowed here"));
    }
    clean_path(&format!("/{rest}"))?;
    Ok((var, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(kind: Kind, v: Value) -> Result<(), String> {
        check_value(kind, &v)
    }

    #[test]
    fn serial_paths() {
        for ok in [
            "/dev/ttyS0",
            "/dev/ttyUSB12",
            "/dev/ttyACM0",
            "/dev/ttyAMA3",
            "/dev/serial-port-gps",
        ] {
            assert_eq!(one(Kind::SerialPath, json!(ok)), Ok(()), "{ok}");
        }
        for bad in [
            "/dev/sda",
            "/dev/ttyS",
            "/dev/ttyS0/../sda",
            "/dev/ttyS1234",
            "/dev/tty*",
            "ttyS0",
        ] {
            assert!(one(Kind::SerialPath, json!(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            one(Kind::SerialPath, json!("/dev/ttyS0 rw,\n/** rwx")).unwrap_err(),
            "\"/dev/ttyS0 rw,\\n/** rwx\" contains ' '; paths may hold only letters, digits and / - _ . + @"
        );
    }

    #[test]
    fn i2c_and_gpio() {
        assert_eq!(one(Kind::I2cPath, json!("/dev/i2c-1")), Ok(()));
        assert_eq!(
            one(Kind::I2cPath, json!("/dev/i2c-x")).unwrap_err(),
            "\"/dev/i2c-x\" is not an I2C bus; use /dev/i2c-N"
        );
        assert_eq!(one(Kind::GpioNumber, json!(17)), Ok(()));
        assert_eq!(
            one(Kind::GpioNumber, json!("17")).unwrap_err(),
            "\"17\" is not a GPIO number (0-65535)"
        );
        assert!(one(Kind::GpioNumber, json!(70000)).is_err());
    }

    #[test]
    fn ports() {
        assert_eq!(one(Kind::Ports, json!([80, 8080])), Ok(()));
        assert_eq!(
            one(Kind::Ports, json!([0])).unwrap_err(),
            "0 is not a TCP port (1-65535)"
        );
        assert_eq!(
            one(Kind::Ports, json!([])).unwrap_err(),
            "must list at least one port"
        );
        assert!(one(Kind::Ports, json!(80)).is_err());
    }

    #[test]
    fn content_paths() {
        assert_eq!(
            one(Kind::ProviderDirs, json!(["$PACK_DATA/export"])),
            Ok(())
        );
        assert_eq!(
            one(Kind::ProviderDirs, json!(["$SNAP/lib", "$PACK_COMMON/x"])),
            Ok(())
        );
        assert_eq!(
            one(Kind::ProviderDirs, json!(["$PACK_DATA/../../etc"])).unwrap_err(),
            "\"/../../etc\" is not a clean path (no empty, \".\" or \"..\" components, no trailing /)"
        );
        assert_eq!(
            one(Kind::ProviderDirs, json!(["/etc"])).unwrap_err(),
            "\"/etc\" must start with one of $PACK, $PACK_DATA, $PACK_COMMON followed by /"
        );
        assert_eq!(
            one(Kind::Target, json!("$HOME/x")).unwrap_err(),
            "$HOME is not allowed here"
        );
        assert!(one(Kind::Target, json!("$PACK_DATA/a*")).is_err());
        assert!(one(Kind::Target, json!("$PACK_DATA/a\"{b}")).is_err());
    }

    #[test]
    fn words_and_names() {
        assert_eq!(one(Kind::Word, json!("themes")), Ok(()));
        assert!(one(Kind::Word, json!("Themes!")).is_err());
        assert_eq!(one(Kind::PackName, json!("provider")), Ok(()));
        assert!(one(Kind::PackName, json!("../x")).is_err());
    }

    #[test]
    fn unknown_and_missing_attributes() {
        let rules = [Rule {
            name: "path",
            kind: Kind::SerialPath,
            required: true,
            doc: "the device",
        }];
        let mut attrs = BTreeMap::new();
        assert_eq!(
            check("slot \"tty\"", &attrs, &rules).unwrap_err().0,
            "slot \"tty\": the attribute \"path\" is required (the device)"
        );
        attrs.insert("colour".to_string(), json!("red"));
        assert_eq!(
            check("slot \"tty\"", &attrs, &rules).unwrap_err().0,
            "slot \"tty\": unknown attribute \"colour\" (known: path)"
        );
        assert_eq!(
            check("plug \"x\"", &attrs, &[]).unwrap_err().0,
            "plug \"x\": unknown attribute \"colour\" (this interface takes no attributes)"
        );
    }
}

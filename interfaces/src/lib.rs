//! Interfaces: plugs (consumers) connect to slots (providers), and a connection grants the
//! plug's apps exactly what its interface says. Pure policy: packs' declared ports and the
//! connections in, [`Grants`] (additions to a `SandboxSpec`) out. No I/O; packd stores the
//! connections, resolves host paths and applies the grants.

pub mod attrs;
pub mod catalog;
pub mod grants;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use packfmt::meta::{PackMeta, PackType, Port};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use catalog::{AutoConnect, CATALOG, Interface, Provider, find};
pub use grants::{Bind, Device, Grants, Socket};

/// The pseudo-pack that provides the system's slots.
pub const SYSTEM: &str = "system";

/// A plug or slot attribute that breaks its interface's grammar, or a port that cannot be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AttrError(pub String);

/// `PACK:PORT`, naming a plug or a slot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRef {
    pub pack: String,
    pub name: String,
}

impl PortRef {
    pub fn new(pack: &str, name: &str) -> PortRef {
        PortRef {
            pack: pack.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.pack, self.name)
    }
}

impl FromStr for PortRef {
    type Err = AttrError;

    fn from_str(s: &str) -> Result<Self, AttrError> {
        let bad = |why: String| AttrError(format!("{s:?} is not PACK:NAME: {why}"));
        let (pack, name) = s
            .split_once(':')
            .ok_or_else(|| bad("the colon is missing".into()))?;
        if pack != SYSTEM {
            packfmt::meta::validate_pack_name(pack).map_err(|e| bad(e.to_string()))?;
        }
        packfmt::meta::validate_port_name("plug", name).map_err(|e| bad(e.to_string()))?;
        Ok(PortRef::new(pack, name))
    }
}

impl TryFrom<String> for PortRef {
    type Error = AttrError;
    fn try_from(s: String) -> Result<Self, AttrError> {
        s.parse()
    }
}

impl From<PortRef> for String {
    fn from(r: PortRef) -> String {
        r.to_string()
    }
}

/// One side of a connection, with the host and sandbox paths its grants may need.
#[derive(Debug, Clone)]
pub struct Side<'a> {
    pub pack: &'a str,
    /// The revision as it appears in paths (`x1`, `27`); empty for `system`.
    pub revision: String,
    pub port: &'a Port,
    /// Host directories of the pack: the mounted revision, its data, its common data.
    pub host_pack: PathBuf,
    pub host_data: PathBuf,
    pub host_common: PathBuf,
}

impl Side<'_> {
    fn what(&self, kind: &str) -> String {
        format!("{kind} {}:{}", self.pack, self.port.name)
    }

    fn attr(&self, name: &str) -> Option<&Value> {
        self.port.attrs.get(name)
    }

    fn string(&self, name: &str) -> Result<&str, AttrError> {
        self.attr(name)
            .and_then(Value::as_str)
            .ok_or_else(|| AttrError(format!("{}: {name} must be a string", self.what("port"))))
    }

    fn number(&self, name: &str) -> Result<u64, AttrError> {
        self.attr(name)
            .and_then(Value::as_u64)
            .ok_or_else(|| AttrError(format!("{}: {name} must be a number", self.what("port"))))
    }

    fn strings(&self, name: &str) -> Result<Vec<String>, AttrError> {
        match self.attr(name) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        AttrError(format!("{}: {name} must list strings", self.what("port")))
                    })
                })
                .collect(),
            Some(_) => Err(AttrError(format!(
                "{}: {name} must be a list",
                self.what("port")
            ))),
        }
    }

    fn ports(&self, name: &str) -> Result<Option<Vec<u16>>, AttrError> {
        let Some(v) = self.attr(name) else {
            return Ok(None);
        };
        v.as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|p| p.as_u64().and_then(|n| u16::try_from(n).ok()))
                    .collect()
            })
            .map(Some)
            .ok_or_else(|| AttrError(format!("{}: {name} must list ports", self.what("plug"))))
    }

    /// The sandbox path of `$VAR`.
    fn inside(&self, var: &str) -> PathBuf {
        match var {
            "PACK" => format!("/pack/{}/{}", self.pack, self.revision),
            "PACK_DATA" => format!("/var/pack/{}/{}", self.pack, self.revision),
            _ => format!("/var/pack/{}/common", self.pack),
        }
        .into()
    }

    /// The host path of `$VAR`.
    fn host(&self, var: &str) -> PathBuf {
        match var {
            "PACK" => self.host_pack.clone(),
            "PACK_DATA" => self.host_data.clone(),
            _ => self.host_common.clone(),
        }
    }
}

/// A connection of a plug to a slot, ready to be turned into grants.
#[derive(Debug, Clone)]
pub struct Connection<'a> {
    pub plug: Side<'a>,
    pub slot: Side<'a>,
    /// packd's root: host paths such as `/dev/ttyS0` and `/media` are taken under it.
    pub host_root: &'a Path,
}

impl Connection<'_> {
    /// What this connection grants the plug's apps.
    pub fn grants(&self) -> Result<Grants, AttrError> {
        let iface =
            find(&self.plug.port.interface).ok_or_else(|| unknown(&self.plug.port.interface))?;
        iface.grant(self)
    }
}

fn unknown(name: &str) -> AttrError {
    let known: Vec<&str> = CATALOG.iter().map(|i| i.name).collect();
    AttrError(format!(
        "unknown interface {name:?}; known interfaces: {}",
        known.join(", ")
    ))
}

/// The system's slot of `iface`, when the system provides it.
pub fn system_slot(iface: &str) -> Option<Port> {
    find(iface)
        .filter(|i| i.provider == Provider::System)
        .map(|i| Port {
            name: i.name.into(),
            interface: i.name.into(),
            attrs: BTreeMap::new(),
        })
}

/// Every system slot.
pub fn system_slots() -> Vec<Port> {
    CATALOG.iter().filter_map(|i| system_slot(i.name)).collect()
}

/// Checks every plug and slot a pack declares: a known interface, attributes in its grammar,
/// and a slot this kind of pack may provide. The first problem, named.
pub fn validate(meta: &PackMeta) -> Result<(), AttrError> {
    for plug in meta.plugs.values() {
        let what = format!("plug {:?}", plug.name);
        let iface = find(&plug.interface)
            .ok_or_else(|| AttrError(format!("{what}: {}", unknown(&plug.interface))))?;
        attrs::check(&what, &plug.attrs, iface.plug_attrs)?;
    }
    for slot in meta.slots.values() {
        let what = format!("slot {:?}", slot.name);
        let iface = find(&slot.interface)
            .ok_or_else(|| AttrError(format!("{what}: {}", unknown(&slot.interface))))?;
        let allowed = match iface.provider {
            Provider::System => false,
            Provider::Gadget => meta.pack_type == PackType::Gadget,
            Provider::Pack => meta.pack_type == PackType::App,
        };
        if !allowed {
            let by = match iface.provider {
                Provider::System => "only the system provides it".to_string(),
                Provider::Gadget => "only a gadget pack (type: gadget) provides it".to_string(),
                Provider::Pack => "only app packs provide it".to_string(),
            };
            return Err(AttrError(format!(
                "{what}: a {} pack cannot provide the {:?} interface; {by}",
                meta.pack_type.as_str(),
                iface.name
            )));
        }
        attrs::check(&what, &slot.attrs, iface.slot_attrs)?;
    }
    Ok(())
}

/// The `content` tag of a port: its attribute, else its name.
fn content_tag(port: &Port) -> &str {
    port.attrs
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or(&port.name)
}

/// Whether `plug` may connect to `slot` at all (same interface; for content, the same tag).
pub fn compatible(plug: &Port, slot: &Port) -> bool {
    plug.interface == slot.interface
        && (plug.interface != "content" || content_tag(plug) == content_tag(slot))
}

/// A slot offered for connection: its pack (`system` for the system's) and its port.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub pack: &'a str,
    pub slot: &'a Port,
}

/// The slots `plug` of pack `plug_pack` could connect to, among `offered`.
pub fn candidates<'a>(
    plug_pack: &str,
    plug: &Port,
    offered: &[Candidate<'a>],
) -> Vec<Candidate<'a>> {
    offered
        .iter()
        .filter(|c| c.pack != plug_pack && compatible(plug, c.slot))
        .cloned()
        .collect()
}

/// The slot `plug` connects to by itself at install, if its interface allows it and exactly
/// one candidate exists (snapd's rule).
pub fn auto_connect<'a>(
    plug_pack: &str,
    plug: &Port,
    offered: &[Candidate<'a>],
) -> Option<Candidate<'a>> {
    let iface = find(&plug.interface)?;
    let found = candidates(plug_pack, plug, offered);
    let [only] = found.as_slice() else {
        return None;
    };
    match iface.auto_connect {
        AutoConnect::Yes => Some(only.clone()),
        AutoConnect::DefaultProvider => {
            let provider = plug.attrs.get("default-provider").and_then(Value::as_str);
            (provider == Some(only.pack)).then(|| only.clone())
        }
        AutoConnect::No => None,
    }
}

#[cfg(test)]
mod tests;

//! The interface catalog: what each interface is, who provides its slots, whether it connects
//! by itself, which attributes it takes, and what a connection grants. `pack interface NAME`
//! prints these same entries, so the documentation cannot drift from the policy.

use std::path::PathBuf;

use serde_json::json;

use crate::attrs::{Kind, Rule};
use crate::grants::{Bind, Device, Grants, Socket};
use crate::{AttrError, Connection};

/// Who may provide the slots of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// The pseudo-pack `system` has one slot of it, named like the interface.
    System,
    /// The gadget pack declares slots of it (a device path, a GPIO line).
    Gadget,
    /// An app pack declares slots of it (content).
    Pack,
}

/// When a plug connects without `pack connect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AutoConnect {
    /// At install, when exactly one candidate slot exists.
    Yes,
    /// At install, when exactly one candidate slot exists and its pack is the plug's
    /// `default-provider`.
    DefaultProvider,
    /// Only by root, with `pack connect` (privileged).
    No,
}

/// One interface.
#[derive(Debug, Clone, Copy)]
pub struct Interface {
    pub name: &'static str,
    pub summary: &'static str,
    /// What a connection grants, in the user's words.
    pub grants: &'static str,
    pub provider: Provider,
    pub auto_connect: AutoConnect,
    pub plug_attrs: &'static [Rule],
    pub slot_attrs: &'static [Rule],
    grant: fn(&Connection<'_>, &mut Grants) -> Result<(), AttrError>,
}

impl Interface {
    /// What connecting `conn` grants the plug's side.
    pub fn grant(&self, conn: &Connection<'_>) -> Result<Grants, AttrError> {
        let mut g = Grants::default();
        (self.grant)(conn, &mut g)?;
        Ok(g)
    }
}

const CONTENT_TAG: Rule = Rule {
    name: "content",
    kind: Kind::Word,
    required: false,
    doc: "the kind of content shared; plug and slot must name the same (default: the port's name)",
};

/// The whole catalog, in name order.
/// AppArmor rules for the pack's API socket (packd itself is unconfined).
const PACKD_SOCKET_RULES: &str =
    "/run/packd.socket rw,\nunix (connect, send, receive) type=stream peer=(label=unconfined),";

pub const CATALOG: &[Interface] = &[
    Interface {
        name: "content",
        summary: "share a directory of one pack with another",
        grants: "The provider's `read` directories are mounted read-only, its `write` directories \
                 read-write, at the plug's `target` (one directory at the target itself, several \
                 under it by name). Plug and slot must carry the same `content` tag.",
        provider: Provider::Pack,
        auto_connect: AutoConnect::DefaultProvider,
        plug_attrs: &[
            CONTENT_TAG,
            Rule {
                name: "target",
                kind: Kind::Target,
                required: true,
                doc: "where the content appears: $PACK_DATA/DIR, $PACK_COMMON/DIR, or a directory of the package ($PACK/DIR)",
            },
            Rule {
                name: "default-provider",
                kind: Kind::PackName,
                required: false,
                doc: "the pack expected to provide it; its slot connects by itself",
            },
        ],
        slot_attrs: &[
            CONTENT_TAG,
            Rule {
                name: "read",
                kind: Kind::ProviderDirs,
                required: false,
                doc: "directories shared read-only ($PACK/..., $PACK_DATA/..., $PACK_COMMON/...)",
            },
            Rule {
                name: "write",
                kind: Kind::ProviderDirs,
                required: false,
                doc: "directories shared read-write ($PACK_DATA/... or $PACK_COMMON/...)",
            },
        ],
        grant: crate::grants::content,
    },
    Interface {
        name: "gpio",
        summary: "drive one GPIO line the gadget exports",
        grants: "Read-write access to /sys/class/gpio/gpioN (its value, direction and edge) of the \
                 line the gadget's slot names with `number`.",
        provider: Provider::Gadget,
        auto_connect: AutoConnect::No,
        plug_attrs: &[],
        slot_attrs: &[Rule {
            name: "number",
            kind: Kind::GpioNumber,
            required: true,
            doc: "the GPIO line",
        }],
        grant: |c, g| {
            let n = c.slot.number("number")?;
            let dir = PathBuf::from(format!("/sys/class/gpio/gpio{n}"));
            g.binds.push(Bind::host(c.host_root, &dir, false, false));
            g.landlock_write.push(dir.clone());
            g.apparmor.push(format!("{}/* rw,", dir.display()));
            Ok(())
        },
    },
    Interface {
        name: "hardware-observe",
        summary: "read hardware information",
        grants: "The firmware tables in /sys/firmware (hidden otherwise) and /proc/bus become \
                 readable, as lspci and dmidecode need.",
        provider: Provider::System,
        auto_connect: AutoConnect::No,
        plug_attrs: &[],
        slot_attrs: &[],
        grant: |_, g| {
            g.unmask.push("/sys/firmware".into());
            g.apparmor.push("/sys/firmware/** r,".into());
            Ok(())
        },
    },
    Interface {
        name: "home",
        summary: "the invoking user's files in their home directory",
        grants: "The invoking user's non-hidden files and directories under $HOME, read-write. \
                 Dotfiles and dot-directories (keys, shell start-up files) and ~/bin are never \
                 shown, so an app cannot plant code the user's shell would run (CVE-2024-1724). \
                 New top-level entries cannot be created.",
        provider: Provider::System,
        auto_connect: AutoConnect::No,
        plug_attrs: &[],
        slot_attrs: &[],
        grant: |_, g| {
            g.home = true;
            Ok(())
        },
    },
    Interface {
        name: "i2c",
        summary: "talk to one I2C bus the gadget names",
        grants: "Read-write access to the I2C bus device the gadget's slot names with `path` \
                 (e.g. /dev/i2c-1), and only to it.",
        provider: Provider::Gadget,
        auto_connect: AutoConnect::No,
        plug_attrs: &[],
        slot_attrs: &[Rule {
            name: "path",
            kind: Kind::I2cPath,
            required: true,
            doc: "the bus device, /dev/i2c-N",
        }],
        grant: device_grant,
    },
    Interface {
        name: "log-observe",
        summary: "read the system logs",
        grants: "/var/log read-only, with the capability to read files whatever their owner \
                 (CAP_DAC_READ_SEARCH), as log readers need.",
        provider: Provider::System,
        auto_connect: AutoConnect::No,
        plug_attrs: &[],
        slot_attrs: &[],
        grant: |c, g| {
            g.binds
                .push(Bind::host(c.host_root, "/var/log".as_ref(), true, true));
            g.capabilities.push("CAP_DAC_READ_SEARCH".into());
            g.apparmor
                .push("/var/log/ r,\n/var/log/** r,\ncapability dac_read_search,".into());
            Ok(())
        },
    },
    Interface {
        name: "mount-observe",
        summary: "read the mount table and file system usage",
        grants: "The host's /etc/fstab read-only, and the statmount and listmount system calls \
                 (reading the mount table is otherwise limited to /proc/self/mountinfo).",
        provider: Provider::System,
        auto_connect: AutoConnect::No,
        plug_attrs: &[],
        slot_attrs: &[],
        grant: |c, g| {
            g.binds
                .push(Bind::host(c.host_root, "/etc/fstab".as_ref(), true, true));
            for call in ["statmount", "listmount"] {
                g.seccomp.push(json!({
                    "syscall": call,
                    "comment": "mount-observe: read the mount table"
                }));
            }
            g.apparmor
                .push("/etc/fstab r,\n/proc/*/mountinfo r,".into());
            Ok(())
        },
    },
    Interface {
        name: "network",
        summary: "reach the network as a client",
        grants: "The host's network namespace instead of a private one, and TCP connections to \
                 any port (Landlock's connect rule). Binding TCP ports needs network-bind.",
        provider: Provider::System,
        auto_connect: AutoConnect::Yes,
        plug_attrs: &[],
        slot_attrs: &[],
        grant: |_, g| {
            g.host_network = true;
            g.connect_any = true;
            g.seccomp.push(json!({
                "syscall": "bind",
                "comment": "network: UDP and ephemeral client binds (TCP binds stay denied by Landlock)"
            }));
            g.apparmor
                .push("network inet,\nnetwork inet6,\n/etc/resolv.conf r,\n/etc/hosts r,".into());
            Ok(())
        },
    },
    Interface {
        name: "network-bind",
        summary: "serve on the network",
        grants: "The host's network namespace, and binding, listening and accepting TCP \
                 connections: on any port, or only the plug's `ports`.",
        provider: Provider::System,
        auto_connect: AutoConnect::Yes,
        plug_attrs: &[Rule {
            name: "ports",
            kind: Kind::Ports,
            required: false,
            doc: "the TCP ports the app may bind (default: any)",
        }],
        slot_attrs: &[],
        grant: |c, g| {
            g.host_network = true;
            match c.plug.ports("ports")? {
                Some(ports) => g.bind_tcp.extend(ports),
                None => g.bind_any = true,
            }
            for call in ["bind", "listen", "accept", "accept4"] {
                g.seccomp.push(json!({
                    "syscall": call,
                    "comment": "network-bind: serve"
                }));
            }
            g.apparmor.push("network inet,\nnetwork inet6,".into());
            Ok(())
        },
    },
    Interface {
        name: "packd-control",
        summary: "manage packd (install, remove, connect) from inside a pack",
        grants: "packd's API at /run/packd.socket ($PACKD_SOCKET), with the rights of the \
                 app's user: the pack's own socket, so packd knows which pack asks and stops \
                 answering the moment the plug is disconnected. Privileged: never connected \
                 by itself.",
        provider: Provider::System,
        auto_connect: AutoConnect::No,
        plug_attrs: &[],
        slot_attrs: &[],
        grant: |_, g| {
            g.socket = Some(Socket::Control);
            g.apparmor.push(PACKD_SOCKET_RULES.into());
            Ok(())
        },
    },
    Interface {
        name: "process-control",
        summary: "change priorities and signal processes",
        grants: "Capabilities CAP_SYS_NICE, CAP_SYS_RESOURCE and CAP_KILL inside the app's \
                 sandbox (its own processes, whatever their user), and the scheduling calls.",
        provider: Provider::System,
        auto_connect: AutoConnect::No,
        plug_attrs: &[],
        slot_attrs: &[],
        grant: |_, g| {
            for cap in ["CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_KILL"] {
                g.capabilities.push(cap.into());
            }
            g.apparmor.push(
                "capability sys_nice,\ncapability sys_resource,\ncapability kill,\nsignal (send),"
                    .into(),
            );
            Ok(())
        },
    },
    Interface {
        name: "removable-media",
        summary: "read and write removable media",
        grants: "/media and /mnt of the host, read-write.",
        provider: Provider::System,
        auto_connect: AutoConnect::No,
        plug_attrs: &[],
        slot_attrs: &[],
        grant: |c, g| {
            for dir in ["/media", "/mnt"] {
                g.binds
                    .push(Bind::host(c.host_root, dir.as_ref(), false, true));
                g.landlock_write.push(dir.into());
            }
            g.apparmor
                .push("/{media,mnt}/ r,\n/{media,mnt}/** rwlk,".into());
            Ok(())
        },
    },
    Interface {
        name: "serial-port",
        summary: "talk to one serial port the gadget names",
        grants: "Read-write access to the serial device the gadget's slot names with `path` \
                 (e.g. /dev/ttyS0, /dev/ttyUSB0), and only to it.",
        provider: Provider::Gadget,
        auto_connect: AutoConnect::No,
        plug_attrs: &[],
        slot_attrs: &[Rule {
            name: "path",
            kind: Kind::SerialPath,
            required: true,
            doc: "the device, e.g. /dev/ttyS0",
        }],
        grant: device_grant,
    },
    Interface {
        name: "shutdown",
        summary: "reboot or power off the device through packd",
        grants: "Reboot or power-off requested through packd: POST /v2/system with \
                 {\"action\": \"reboot\"} or {\"action\": \"power-off\"} on /run/packd.socket \
                 ($PACKD_SOCKET), the only request that socket answers. The reboot system \
                 call stays denied.",
        provider: Provider::System,
        auto_connect: AutoConnect::No,
        plug_attrs: &[],
        slot_attrs: &[],
        grant: |_, g| {
            g.socket = Some(Socket::Shutdown);
            g.apparmor.push(PACKD_SOCKET_RULES.into());
            Ok(())
        },
    },
    Interface {
        name: "system-observe",
        summary: "see the system's processes",
        grants: "The host's process list: the app runs in the host's pid namespace, so /proc \
                 shows every process (read-only; signals and tracing stay denied).",
        provider: Provider::System,
        auto_connect: AutoConnect::No,
        plug_attrs: &[],
        slot_attrs: &[],
        grant: |_, g| {
            g.host_pid = true;
            g.apparmor
                .push("/proc/ r,\n/proc/*/{stat,status,cmdline} r,".into());
            Ok(())
        },
    },
];

/// serial-port and i2c: the one device the slot names.
fn device_grant(c: &Connection<'_>, g: &mut Grants) -> Result<(), AttrError> {
    let path = PathBuf::from(c.slot.string("path")?);
    g.devices.push(Device {
        host: crate::grants::under(c.host_root, &path),
        inside: path.clone(),
    });
    g.landlock_write.push(path.clone());
    g.apparmor.push(format!("{} rwk,", path.display()));
    Ok(())
}

/// The interface of that name.
pub fn find(name: &str) -> Option<&'static Interface> {
    CATALOG.iter().find(|i| i.name == name)
}

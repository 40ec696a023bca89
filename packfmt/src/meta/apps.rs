//! The `apps:` and `hooks:` sections of pack.yaml: each app's keys (snap.yaml's, those packd
//! refuses, those only a service may have), its command, limits, ports and service settings;
//! and the hooks packd runs.

use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

use super::model::*;
use super::names::{show, validate_app_name, validate_command, validate_port_name};
use super::parse::{
    Res, as_string, check_keys, describe, mapping, missing, optional_string, parse_environment,
    string_list,
};
use super::units::{parse_duration, parse_size};

const APP_KEYS: &[&str] = &[
    "command",
    "daemon",
    "daemon-scope",
    "stop-command",
    "restart-condition",
    "restart-delay",
    "stop-timeout",
    "after",
    "before",
    "plugs",
    "slots",
    "environment",
    "limits",
];

const UNSUPPORTED_APP_KEYS: &[&str] = &[
    "command-chain",
    "aliases",
    "completer",
    "reload-command",
    "post-stop-command",
    "start-timeout",
    "watchdog-timeout",
    "success-exit-status",
    "refresh-mode",
    "stop-mode",
    "install-mode",
    "sockets",
    "bus-name",
    "activates-on",
    "timer",
    "common-id",
    "autostart",
    "desktop",
    "extensions",
    "adapter",
];

/// Keys only services may carry.
const SERVICE_ONLY_APP_KEYS: &[&str] = &[
    "stop-command",
    "restart-condition",
    "restart-delay",
    "stop-timeout",
    "after",
    "before",
    "daemon-scope",
];

/// Hooks packd runs (see the lifecycle docs).
pub const SUPPORTED_HOOKS: &[&str] = &[
    "install",
    "remove",
    "pre-refresh",
    "post-refresh",
    "configure",
    "check-health",
];

/// App-level `plugs:`/`slots:` lists name top-level ports; a name that is not declared there is
/// an implicit port of the interface of the same name (as snapd does), added to `ports`.
fn app_ports(
    v: Option<&Value>,
    what: &str,
    kind: &str,
    ports: &mut BTreeMap<String, Port>,
) -> Res<Vec<String>> {
    let names = string_list(v, what)?;
    for name in &names {
        validate_port_name(kind, name).map_err(|e| format!("{what}: {e}"))?;
        ports.entry(name.clone()).or_insert_with(|| Port {
            name: name.clone(),
            interface: name.clone(),
            attrs: BTreeMap::new(),
        });
    }
    Ok(names)
}

pub(super) fn parse_apps(
    v: Option<&Value>,
    plugs: &mut BTreeMap<String, Port>,
    slots: &mut BTreeMap<String, Port>,
) -> Res<BTreeMap<String, App>> {
    let mut apps = BTreeMap::new();
    let Some(map) = mapping(v, "apps")? else {
        return Ok(apps);
    };
    for (k, val) in map {
        let name = as_string(k, "each app name")?;
        validate_app_name(&name)?;
        let what = format!("app {}", show(&name));
        let app_map = match val {
            Value::Mapping(m) => m,
            other => {
                return Err(format!(
                    "{what} must be a mapping with at least a command, found {}",
                    describe(other)
                ));
            }
        };
        apps.insert(name.clone(), parse_app(&name, app_map, plugs, slots)?);
    }
    // Ordering references must point at services of this pack.
    for app in apps.values() {
        for (key, targets) in [("after", &app.after), ("before", &app.before)] {
            for target in targets {
                if !apps.get(target).is_some_and(App::is_service) {
                    return Err(format!(
                        "app {}: {key} names {}, which is not a service of this pack",
                        show(&app.name),
                        show(target)
                    ));
                }
            }
        }
    }
    Ok(apps)
}

fn parse_app(
    name: &str,
    map: &Mapping,
    plugs: &mut BTreeMap<String, Port>,
    slots: &mut BTreeMap<String, Port>,
) -> Res<App> {
    let what = format!("app {}", show(name));
    check_keys(map, &format!("{what}: "), APP_KEYS, UNSUPPORTED_APP_KEYS)?;
    let command = match map.get("command") {
        None | Some(Value::Null) => return Err(format!("{what}: {}", missing("command"))),
        Some(v) => as_string(v, &format!("{what}: command"))?,
    };
    validate_command("command", &command).map_err(|e| format!("{what}: {e}"))?;

    let daemon = match map.get("daemon") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let d = as_string(v, &format!("{what}: daemon"))?;
            let found = Daemon::ALL.iter().find(|(s, _)| *s == d).map(|(_, d)| *d);
            Some(found.ok_or_else(|| {
                format!(
                    "{what}: invalid daemon {}: use one of simple, forking, oneshot, notify",
                    show(&d)
                )
            })?)
        }
    };
    if daemon.is_none()
        && let Some(key) = SERVICE_ONLY_APP_KEYS.iter().find(|k| map.contains_key(**k))
    {
        return Err(format!(
            "{what}: {} is only valid for services; add daemon: simple (or forking, oneshot, notify)",
            show(key)
        ));
    }
    if let Some(scope) = optional_string(map, "daemon-scope")?
        && scope != "system"
    {
        return Err(format!(
            "{what}: daemon-scope {} is not supported; packd runs system services only",
            show(&scope)
        ));
    }
    let stop_command = optional_string(map, "stop-command")?;
    if let Some(c) = &stop_command {
        validate_command("stop-command", c).map_err(|e| format!("{what}: {e}"))?;
    }
    let restart_condition = match optional_string(map, "restart-condition")? {
        None => RestartCondition::default(),
        Some(rc) => RestartCondition::ALL
            .iter()
            .find(|(s, _)| *s == rc)
            .map(|(_, r)| *r)
            .ok_or_else(|| {
                format!(
                    "{what}: invalid restart-condition {}: use one of never, on-success, on-failure, on-abnormal, on-abort, always",
                    show(&rc)
                )
            })?,
    };
    let duration = |key: &str| -> Res<Option<std::time::Duration>> {
        optional_string(map, key)?
            .map(|s| parse_duration(&s).map_err(|e| format!("{what}: {key}: {e}")))
            .transpose()
    };
    let restart_delay = duration("restart-delay")?;
    let stop_timeout = duration("stop-timeout")?;
    let after = string_list(map.get("after"), &format!("{what}: after"))?;
    let before = string_list(map.get("before"), &format!("{what}: before"))?;
    let app_plugs = app_ports(map.get("plugs"), &format!("{what}: plugs"), "plug", plugs)?;
    let app_slots = app_ports(map.get("slots"), &format!("{what}: slots"), "slot", slots)?;
    let environment = parse_environment(map.get("environment"), &format!("{what}: environment"))?;
    let limits = parse_limits(map.get("limits"), &what)?;
    Ok(App {
        name: name.to_string(),
        command,
        daemon,
        stop_command,
        restart_condition,
        restart_delay,
        stop_timeout,
        after,
        before,
        plugs: app_plugs,
        slots: app_slots,
        environment,
        limits,
    })
}

fn parse_limits(v: Option<&Value>, what: &str) -> Res<Limits> {
    let mut limits = Limits::default();
    let Some(map) = mapping(v, &format!("{what}: limits"))? else {
        return Ok(limits);
    };
    check_keys(
        map,
        &format!("{what}: limits: "),
        &["memory", "tasks", "cpu-weight", "tmp"],
        &[],
    )?;
    let size = |key: &str, min: u64, why: &str| -> Res<Option<u64>> {
        let Some(v) = map.get(key) else {
            return Ok(None);
        };
        let text = match v {
            Value::Number(n) if n.is_u64() => n.to_string(),
            other => as_string(other, &format!("{what}: limits: {key}"))?,
        };
        let bytes = parse_size(&text).map_err(|e| format!("{what}: limits: {key}: {e}"))?;
        if bytes < min {
            return Err(format!(
                "{what}: limits: {key} must be at least {}M ({why})",
                min >> 20
            ));
        }
        Ok(Some(bytes))
    };
    limits.memory = size(
        "memory",
        4 << 20,
        "the sandbox itself needs a few megabytes",
    )?;
    limits.tmp = size("tmp", 1 << 20, "the size of the pack's /tmp")?;
    let number = |key: &str, min: u64, max: u64| -> Res<Option<u32>> {
        match map.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some_and(|n| (min..=max).contains(&n)) => {
                Ok(n.as_u64().and_then(|n| u32::try_from(n).ok()))
            }
            Some(_) => Err(format!(
                "{what}: limits: {key} must be a whole number from {min} to {max}"
            )),
        }
    };
    // The supervisor and the app itself are two tasks; fewer than 8 leaves nothing to run.
    limits.tasks = number("tasks", 8, 4_194_304)?;
    limits.cpu_weight = number("cpu-weight", 1, 10_000)?;
    Ok(limits)
}

pub(super) fn parse_hooks(
    v: Option<&Value>,
    plugs: &mut BTreeMap<String, Port>,
) -> Res<BTreeMap<String, Hook>> {
    let mut hooks = BTreeMap::new();
    let Some(map) = mapping(v, "hooks")? else {
        return Ok(hooks);
    };
    for (k, val) in map {
        let name = as_string(k, "each hook name")?;
        validate_port_name("hook", &name)?;
        if !SUPPORTED_HOOKS.contains(&name.as_str()) {
            return Err(format!(
                "unsupported hook {}: packd runs {}",
                show(&name),
                SUPPORTED_HOOKS.join(", ")
            ));
        }
        let what = format!("hook {}", show(&name));
        let hook = match val {
            Value::Null => Hook {
                name: name.clone(),
                plugs: Vec::new(),
                environment: BTreeMap::new(),
            },
            Value::Mapping(m) => {
                check_keys(
                    m,
                    &format!("{what}: "),
                    &["plugs", "environment"],
                    &["slots", "command-chain"],
                )?;
                Hook {
                    name: name.clone(),
                    plugs: app_ports(m.get("plugs"), &format!("{what}: plugs"), "plug", plugs)?,
                    environment: parse_environment(
                        m.get("environment"),
                        &format!("{what}: environment"),
                    )?,
                }
            }
            other => {
                return Err(format!(
                    "{what} must be a mapping, found {}",
                    describe(other)
                ));
            }
        };
        hooks.insert(name, hook);
    }
    Ok(hooks)
}

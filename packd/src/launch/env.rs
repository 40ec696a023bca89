//! An app's environment and command line.

use std::collections::BTreeMap;

use packfmt::meta::{App, MetaSource, host_arch};

use super::{Invocation, LaunchError, Resolved};

/// Variables never taken from the caller: the dynamic loader's (CVE-2020-27348 put the cwd in
/// `LD_LIBRARY_PATH`), glibc's tunables, and everything packd itself sets.
fn is_unsafe(key: &str) -> bool {
    key.starts_with("LD_")
        || key == "GLIBC_TUNABLES"
        || key == "MALLOC_CHECK_"
        || key.starts_with("PACK")
        || key.starts_with("SNAP")
        || matches!(
            key,
            "PATH" | "HOME" | "TMPDIR" | "NOTIFY_SOCKET" | "XDG_RUNTIME_DIR" | "PWD" | "OLDPWD"
        )
}

const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The complete environment of an app run: the caller's safe variables, the `PACK_*` ones
/// (and `SNAP_*` twins for packages that came with `meta/snap.yaml`), then the pack's and the
/// app's `environment:` with `$VAR` expanded.
pub fn environment(r: &Resolved, app: &App, inv: &Invocation) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = inv
        .env
        .iter()
        .filter(|(k, _)| !is_unsafe(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let pack = format!("/pack/{}/{}", r.name, r.revision);
    let data = format!("/var/pack/{}/{}", r.name, r.revision);
    let common = format!("/var/pack/{}/common", r.name);
    let user = format!("/var/pack/{}/users/{}", r.name, inv.uid);
    let user_data = format!("{user}/{}", r.revision);
    let user_common = format!("{user}/common");
    let own = [
        ("PACK", pack.clone()),
        ("PACK_NAME", r.name.clone()),
        ("PACK_APP_NAME", r.app.clone()),
        ("PACK_REVISION", r.revision.to_string()),
        ("PACK_VERSION", r.meta.version.clone()),
        ("PACK_ARCH", host_arch().to_string()),
        ("PACK_DATA", data),
        ("PACK_COMMON", common),
        ("PACK_USER_DATA", user_data.clone()),
        ("PACK_USER_COMMON", user_common),
    ];
    for (k, v) in &own {
        env.insert((*k).to_string(), v.clone());
    }
    if r.meta.source == MetaSource::SnapYaml {
        for (k, v) in &own {
            env.insert(k.replacen("PACK", "SNAP", 1), v.clone());
        }
        env.insert("SNAP_INSTANCE_NAME".into(), r.name.clone());
        env.insert("SNAP_INSTANCE_KEY".into(), String::new());
    }
    env.insert(
        "PATH".into(),
        format!("{pack}/usr/sbin:{pack}/usr/bin:{pack}/sbin:{pack}/bin:{SYSTEM_PATH}"),
    );
    // Everyone's home is their own data directory for this revision (as snapd's
    // SNAP_USER_DATA), private and writable.
    env.insert("HOME".into(), user_data);
    env.insert("TMPDIR".into(), "/tmp".into());
    for (k, v) in r.meta.environment.iter().chain(app.environment.iter()) {
        let value = expand(v, &env);
        env.insert(k.clone(), value);
    }
    env
}

/// Expands `$VAR` and `${VAR}` from `env`; unknown variables expand to nothing (as snapd does).
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => {
                    out.push('$');
                    rest = after;
                    continue;
                }
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if name.is_empty() {
            out.push('$');
        } else if let Some(v) = env.get(name) {
            out.push_str(v);
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Splits a command on whitespace (the command charset has no quotes to honour).
pub fn split_command(command: &str) -> Vec<String> {
    command.split_whitespace().map(str::to_string).collect()
}

/// The app's argv: the command's words with variables expanded, the first made absolute under
/// `$PACK` unless it already is absolute.
pub fn command_argv(
    r: &Resolved,
    command: &str,
    env: &BTreeMap<String, String>,
) -> Result<Vec<String>, LaunchError> {
    let mut argv: Vec<String> = split_command(command)
        .iter()
        .map(|w| expand(w, env))
        .collect();
    let Some(first) = argv.first_mut() else {
        return Err(LaunchError::EmptyCommand {
            pack: r.name.clone(),
            app: r.app.clone(),
        });
    };
    if !first.starts_with('/') {
        *first = format!("/pack/{}/{}/{first}", r.name, r.revision);
    }
    Ok(argv)
}

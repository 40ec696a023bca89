//! Which app a launch is for: the pack's current revision and its base, or a clear error
//! saying what is missing.

use std::fmt;
use std::str::FromStr;

use packfmt::meta::{validate_app_name, validate_pack_name};
use packfmt::{PackMeta, Revision};

use super::LaunchError;
use crate::state::State;

type Result<T> = std::result::Result<T, LaunchError>;

/// `NAME` or `NAME.APP`, as `pack run` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRef {
    pub pack: String,
    pub app: Option<String>,
}

impl FromStr for AppRef {
    type Err = LaunchError;

    fn from_str(s: &str) -> Result<Self> {
        let (pack, app) = match s.split_once('.') {
            Some((p, a)) => (p, Some(a)),
            None => (s, None),
        };
        validate_pack_name(pack).map_err(LaunchError::BadTarget)?;
        if let Some(app) = app {
            validate_app_name(app).map_err(LaunchError::BadTarget)?;
        }
        Ok(AppRef {
            pack: pack.to_string(),
            app: app.map(str::to_string),
        })
    }
}

impl fmt::Display for AppRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.app {
            Some(app) => write!(f, "{}.{app}", self.pack),
            None => f.write_str(&self.pack),
        }
    }
}

/// The resolved app: which revision of which pack, on which base.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    pub app: String,
    pub revision: Revision,
    pub meta: PackMeta,
    pub base: String,
    pub base_revision: Revision,
}

impl Resolved {
    /// `PACK` for the app named like its pack, else `PACK.APP` (as `pack run` takes it).
    pub fn label(&self) -> String {
        if self.app == self.name {
            self.name.clone()
        } else {
            format!("{}.{}", self.name, self.app)
        }
    }
}

/// Finds hook `hook` of `pack`'s current revision (run as the app [`hooks::app_name`]).
pub fn resolve_hook(state: &State, pack: &str, hook: &str) -> Result<Resolved> {
    let p = state
        .packs
        .get(pack)
        .filter(|p| p.active)
        .ok_or_else(|| LaunchError::NotInstalled(pack.to_string()))?;
    let rev = p
        .current_revision()
        .ok_or_else(|| LaunchError::NotInstalled(pack.to_string()))?;
    if !rev.meta.hooks.contains_key(hook) {
        return Err(LaunchError::NoHook {
            pack: pack.to_string(),
            revision: rev.revision.to_string(),
            hook: hook.to_string(),
        });
    }
    let (base, base_revision) = base_of(state, pack, &rev.meta)?;
    Ok(Resolved {
        name: pack.to_string(),
        app: crate::policy::hooks::app_name(hook),
        revision: rev.revision,
        meta: crate::policy::hooks::with_hooks(&rev.meta).into_owned(),
        base,
        base_revision,
    })
}

/// The base `meta` runs on, and its current revision.
fn base_of(state: &State, pack: &str, meta: &packfmt::PackMeta) -> Result<(String, Revision)> {
    let base = meta
        .base
        .clone()
        .ok_or_else(|| LaunchError::NoBaseDeclared(pack.to_string()))?;
    let base_revision = state
        .packs
        .get(&base)
        .filter(|b| b.active)
        .map(|b| b.current)
        .ok_or_else(|| LaunchError::NoBase {
            base: base.clone(),
            pack: pack.to_string(),
        })?;
    Ok((base, base_revision))
}

/// Finds the app, its current revision and its base's, or says clearly what is missing.
pub fn resolve(state: &State, target: &AppRef) -> Result<Resolved> {
    let pack = state
        .packs
        .get(&target.pack)
        .filter(|p| p.active)
        .ok_or_else(|| LaunchError::NotInstalled(target.pack.clone()))?;
    let rev = pack
        .current_revision()
        .ok_or_else(|| LaunchError::NotInstalled(target.pack.clone()))?;
    let meta = &rev.meta;
    let app_name = target.app.clone().unwrap_or_else(|| target.pack.clone());
    if !meta.apps.contains_key(&app_name) {
        return Err(LaunchError::NoApp {
            pack: target.pack.clone(),
            app: app_name,
            apps: meta
                .apps
                .keys()
                .map(|a| {
                    AppRef {
                        pack: target.pack.clone(),
                        app: Some(a.to_string()),
                    }
                    .to_string()
                })
                .collect(),
        });
    }
    let (base, base_revision) = base_of(state, &target.pack, meta)?;
    Ok(Resolved {
        name: target.pack.clone(),
        app: app_name,
        revision: rev.revision,
        meta: meta.clone(),
        base,
        base_revision,
    })
}

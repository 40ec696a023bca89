//! Hooks as the launch path sees them: each hook `NAME` of a pack is run like an app named
//! `hook.NAME` (its command `meta/hooks/NAME`, its own plugs and environment), with a seccomp
//! and AppArmor profile of its own. `pack run` never reaches them: apps are looked up in the
//! pack's metadata as written, hooks only through [`with_hooks`].

use std::borrow::Cow;

use packfmt::PackMeta;
use packfmt::meta::App;

/// What a hook's app name starts with (`.` cannot appear in an app's own name).
pub const PREFIX: &str = "hook.";

/// The app name hook `hook` runs as.
pub fn app_name(hook: &str) -> String {
    format!("{PREFIX}{hook}")
}

/// `meta` with one app per hook added (unchanged when it has no hooks).
pub fn with_hooks(meta: &PackMeta) -> Cow<'_, PackMeta> {
    if meta.hooks.is_empty() {
        return Cow::Borrowed(meta);
    }
    let mut out = meta.clone();
    for (name, hook) in &meta.hooks {
        let app = App {
            name: app_name(name),
            command: format!("meta/hooks/{name}"),
            daemon: None,
            stop_command: None,
            restart_condition: Default::default(),
            restart_delay: None,
            stop_timeout: None,
            after: Vec::new(),
            before: Vec::new(),
            plugs: hook.plugs.clone(),
            slots: Vec::new(),
            environment: hook.environment.clone(),
            limits: Default::default(),
        };
        out.apps.insert(app.name.clone(), app);
    }
    Cow::Owned(out)
}

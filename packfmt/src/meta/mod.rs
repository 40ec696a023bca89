//! Package metadata: `meta/pack.yaml` (or snapd's `meta/snap.yaml`), modelled and validated.
//!
//! Validation follows snap.yaml's rules (see `names.rs`) and refuses what packd does not
//! implement, so that a package never installs with a silently different meaning. Every error is
//! one sentence prefixed by the file it is about, e.g.
//! `meta/pack.yaml: invalid pack name "Hello": "H" is not allowed; use only lowercase letters a-z, digits and dashes`.

mod apps;
mod model;
mod names;
mod parse;
mod units;

use std::fs;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub use apps::SUPPORTED_HOOKS;
pub use model::*;
pub use names::{
    validate_app_name, validate_command, validate_env_name, validate_pack_name, validate_port_name,
    validate_version,
};
pub use parse::{ARCHITECTURES, PROVIDED_FEATURES};
pub use units::{parse_duration, parse_size};

/// The largest metadata file packd reads. Real ones are a few KiB; the cap keeps a hostile
/// package from making the daemon allocate without bound.
pub const MAX_META_SIZE: u64 = 256 * 1024;

/// A metadata problem: which file, and one sentence saying what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct MetaError {
    pub file: String,
    pub message: String,
}

impl MetaError {
    pub fn new(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            message: message.into(),
        }
    }
}

impl PackMeta {
    /// Parses and validates metadata bytes that came from `source`.
    pub fn from_yaml(bytes: &[u8], source: MetaSource) -> Result<PackMeta, MetaError> {
        if bytes.len() as u64 > MAX_META_SIZE {
            return Err(MetaError::new(source.path(), too_large(bytes.len() as u64)));
        }
        parse::parse(bytes, source).map_err(|m| MetaError::new(source.path(), m))
    }

    /// Reads the metadata of an unpacked package directory (what `pack pack` packs): exactly
    /// one of `meta/pack.yaml` and `meta/snap.yaml`, a regular file (not a symlink) no larger
    /// than [`MAX_META_SIZE`]. Hooks found in `meta/hooks/` are added; a hook declared in the
    /// YAML without its file is an error.
    pub fn from_dir(dir: &Path) -> Result<PackMeta, MetaError> {
        let source = detect_source(dir)?;
        let path = dir.join(source.path());
        let bytes = read_regular_file(&path, MAX_META_SIZE)
            .map_err(|m| MetaError::new(source.path(), m))?;
        let mut meta = Self::from_yaml(&bytes, source)?;
        let hooks_dir = dir.join("meta/hooks");
        let mut found = Vec::new();
        match fs::symlink_metadata(&hooks_dir) {
            Ok(md) if md.is_dir() => {
                let entries = fs::read_dir(&hooks_dir)
                    .map_err(|e| MetaError::new("meta/hooks", format!("cannot read it: {e}")))?;
                for entry in entries {
                    let entry = entry.map_err(|e| {
                        MetaError::new("meta/hooks", format!("cannot read it: {e}"))
                    })?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let md = entry.metadata().map_err(|e| {
                        MetaError::new(format!("meta/hooks/{name}"), format!("cannot read it: {e}"))
                    })?;
                    if !md.is_file() {
                        return Err(MetaError::new(
                            format!("meta/hooks/{name}"),
                            "a hook must be a regular executable file",
                        ));
                    }
                    found.push(name);
                }
            }
            Ok(_) => {
                return Err(MetaError::new("meta/hooks", "must be a directory"));
            }
            Err(_) => {}
        }
        meta.add_hook_files(&found)?;
        Ok(meta)
    }

    /// Reconciles the YAML's `hooks:` with the executables present in `meta/hooks/`: every file
    /// must be a supported hook, and every declared hook must have its file.
    pub fn add_hook_files(&mut self, files: &[String]) -> Result<(), MetaError> {
        for file in files {
            let path = format!("meta/hooks/{file}");
            validate_port_name("hook", file).map_err(|m| MetaError::new(&path, m))?;
            if !SUPPORTED_HOOKS.contains(&file.as_str()) {
                return Err(MetaError::new(
                    &path,
                    format!(
                        "unsupported hook {file:?}: packd runs {}",
                        SUPPORTED_HOOKS.join(", ")
                    ),
                ));
            }
            self.hooks.entry(file.clone()).or_insert_with(|| Hook {
                name: file.clone(),
                plugs: Vec::new(),
                environment: Default::default(),
            });
        }
        if let Some(missing) = self.hooks.keys().find(|h| !files.contains(h)) {
            return Err(MetaError::new(
                self.source.path(),
                format!("hook {missing:?} is declared but meta/hooks/{missing} does not exist"),
            ));
        }
        if self.pack_type != PackType::App && !self.hooks.is_empty() {
            return Err(MetaError::new(
                "meta/hooks",
                format!(
                    "a pack of type {} cannot have hooks",
                    self.pack_type.as_str()
                ),
            ));
        }
        Ok(())
    }
}

/// Which metadata file a package directory carries; both, or neither, is an error.
pub fn detect_source(dir: &Path) -> Result<MetaSource, MetaError> {
    let has = |s: MetaSource| fs::symlink_metadata(dir.join(s.path())).is_ok();
    match (has(MetaSource::PackYaml), has(MetaSource::SnapYaml)) {
        (true, false) => Ok(MetaSource::PackYaml),
        (false, true) => Ok(MetaSource::SnapYaml),
        (true, true) => Err(MetaError::new(
            "meta",
            "has both pack.yaml and snap.yaml; keep only one",
        )),
        (false, false) => Err(MetaError::new(
            "meta/pack.yaml",
            format!(
                "not found in {}; a package directory needs meta/pack.yaml (or meta/snap.yaml)",
                dir.display()
            ),
        )),
    }
}

fn too_large(size: u64) -> String {
    format!("is too large ({size} bytes; at most {MAX_META_SIZE} are allowed)")
}

/// Opens `path` without following a final symlink and reads at most `max` bytes.
fn read_regular_file(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "is a symlink; it must be a regular file".to_string(),
            _ => format!("cannot open it: {e}"),
        })?;
    let md = file
        .metadata()
        .map_err(|e| format!("cannot read it: {e}"))?;
    if !md.is_file() {
        return Err("must be a regular file".into());
    }
    if md.len() > max {
        return Err(too_large(md.len()));
    }
    let mut bytes = Vec::with_capacity(md.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;

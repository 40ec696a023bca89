//! Checking a package file before anything is done with it (packd before installing it, the
//! store before accepting an upload): a valid image, valid metadata read without following
//! symlinks, hooks that match their files, no setuid/setgid files or device nodes, apps whose
//! commands exist, known interfaces, and for bases the mount points sandboxes need.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use packfmt::image::{EntryKind, Image};
use packfmt::meta::{MAX_META_SIZE, MetaSource};
use packfmt::{ImageError, MetaError, PackMeta, PackType};

/// Why a package is refused.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Its metadata (the message names the file and the key).
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// Anything else about it, said whole.
    #[error("{0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, InspectError>;

/// What an inspected package holds.
#[derive(Debug)]
pub struct Inspected {
    pub meta: PackMeta,
    /// Sum of the file sizes inside.
    pub content_size: u64,
}

/// Inspects the image at `path`. `label` names it in messages (the user's file name).
pub fn inspect(path: &Path, label: &str) -> Result<Inspected> {
    // Errors name the user's file (`label`), never the staging path.
    let image = Image::open_named(path, Path::new(label)).map_err(bad_image)?;
    let meta = read_meta(&image, label)?;
    let summary = image.check_package_contents().map_err(bad_image)?;
    image.verify_data().map_err(bad_image)?;

    // One more walk for what the metadata needs to be checked against.
    let mut hooks = Vec::new();
    let mut dirs = BTreeSet::new();
    let mut executables = BTreeSet::new();
    image
        .walk(&mut |e| {
            let parent = e.path.parent().map(Path::to_path_buf);
            if parent.as_deref() == Some(Path::new("meta/hooks")) {
                if e.kind != EntryKind::File {
                    return Err(ImageError::NotRegularFile {
                        path: e.path.clone(),
                        kind: e.kind.name(),
                    });
                }
                hooks.push(
                    e.path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
            }
            match e.kind {
                EntryKind::Dir => {
                    dirs.insert(e.path.clone());
                }
                EntryKind::File if e.mode & 0o111 != 0 => {
                    executables.insert(e.path.clone());
                }
                EntryKind::Symlink { .. } => {
                    // A command may be a symlink (e.g. to busybox in the base); it is resolved
                    // inside the sandbox.
                    executables.insert(e.path.clone());
                }
                _ => {}
            }
            Ok(())
        })
        .map_err(bad_image)?;

    let mut meta = meta;
    meta.add_hook_files(&hooks)
        .map_err(|e| InspectError::Meta(in_file(label, e)))?;
    for hook in meta.hooks.keys() {
        let p = PathBuf::from(format!("meta/hooks/{hook}"));
        if !executables.contains(&p) {
            return Err(InspectError::Invalid(format!(
                "{label}: meta/hooks/{hook} is not executable; chmod +x it and pack again"
            )));
        }
    }
    for app in meta.apps.values() {
        let Some(exe) = app.command_executable() else {
            continue;
        };
        if !executables.contains(&exe) {
            return Err(InspectError::Invalid(format!(
                "{label}: app {:?}: command {:?} is not an executable file in the package",
                app.name,
                exe.display()
            )));
        }
    }
    // Plugs and slots: known interfaces, attributes in their grammar, slots this type of pack
    // may provide.
    interfaces::validate(&meta).map_err(|e| InspectError::Invalid(format!("{label}: {e}")))?;
    if meta.pack_type == PackType::Base {
        crate::base::check_mount_points(&|d| dirs.contains(Path::new(d)))
            .map_err(|m| InspectError::Invalid(format!("{label}: {m}")))?;
    }
    Ok(Inspected {
        meta,
        content_size: summary.total_size,
    })
}

fn read_meta(image: &Image, label: &str) -> Result<PackMeta> {
    let read = |source: MetaSource| match image.read_file(source.path(), MAX_META_SIZE) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if matches!(e.inner(), ImageError::NotFound { .. }) => Ok(None),
        Err(e) => Err(bad_image(e)),
    };
    let pack = read(MetaSource::PackYaml)?;
    let snap = read(MetaSource::SnapYaml)?;
    let (bytes, source) = match (pack, snap) {
        (Some(b), None) => (b, MetaSource::PackYaml),
        (None, Some(b)) => (b, MetaSource::SnapYaml),
        (Some(_), Some(_)) => {
            return Err(InspectError::Invalid(format!(
                "{label}: has both meta/pack.yaml and meta/snap.yaml; keep only one"
            )));
        }
        (None, None) => {
            return Err(InspectError::Invalid(format!(
                "{label}: has no meta/pack.yaml (nor meta/snap.yaml); is it a package?"
            )));
        }
    };
    PackMeta::from_yaml(&bytes, source).map_err(|e| InspectError::Meta(in_file(label, e)))
}

/// Prefixes a metadata error with the package it came from.
fn in_file(label: &str, e: MetaError) -> MetaError {
    MetaError::new(format!("{label}: {}", e.file), e.message)
}

fn bad_image(e: ImageError) -> InspectError {
    InspectError::Invalid(e.to_string())
}

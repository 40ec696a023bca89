//! Making a revision the live one: the `current` symlink and the launchers in `pack/bin`.

use std::path::{Path, PathBuf};

use packfmt::{PackMeta, Revision};

use crate::error::{IoContext, IoError};

type Result<T> = std::result::Result<T, IoError>;
use crate::fsutil;
use crate::paths::Paths;

/// The launcher names of a pack's apps: `NAME` for the app named like the pack, `NAME.APP`
/// for the others (as snap does in /snap/bin).
pub fn launcher_names(meta: &PackMeta) -> Vec<String> {
    meta.apps
        .keys()
        .map(|app| {
            if *app == meta.name {
                meta.name.clone()
            } else {
                format!("{}.{app}", meta.name)
            }
        })
        .collect()
}

/// Points `pack/NAME/current` at `rev` (atomically).
pub fn set_current(paths: &Paths, name: &str, rev: Revision) -> Result<()> {
    let link = paths.current_link(name);
    fsutil::switch_symlink(&link, Path::new(&rev.to_string())).ctx("switch", &link)
}

pub fn remove_current(paths: &Paths, name: &str) -> Result<()> {
    let link = paths.current_link(name);
    fsutil::remove_file_if_exists(&link).ctx("remove", &link)
}

/// Writes the launchers of `meta` (symlinks to the `pack` binary, which runs the app named by
/// the link) and removes those of `old` that `meta` no longer has.
pub fn write_launchers(
    paths: &Paths,
    pack_binary: &Path,
    meta: &PackMeta,
    old: Option<&PackMeta>,
) -> Result<()> {
    let bin = paths.bin_dir();
    fsutil::ensure_dir(&bin, 0o755).ctx("create", &bin)?;
    let new = launcher_names(meta);
    if let Some(old) = old {
        for stale in launcher_names(old).iter().filter(|n| !new.contains(n)) {
            let p = bin.join(stale);
            fsutil::remove_file_if_exists(&p).ctx("remove", &p)?;
        }
    }
    for name in &new {
        let p: PathBuf = bin.join(name);
        fsutil::switch_symlink(&p, pack_binary).ctx("write the launcher", &p)?;
    }
    Ok(())
}

pub fn remove_launchers(paths: &Paths, meta: &PackMeta) -> Result<()> {
    for name in launcher_names(meta) {
        let p = paths.bin_dir().join(name);
        fsutil::remove_file_if_exists(&p).ctx("remove", &p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use packfmt::meta::MetaSource;

    fn meta(yaml: &str) -> PackMeta {
        PackMeta::from_yaml(yaml.as_bytes(), MetaSource::PackYaml).unwrap()
    }

    #[test]
    fn launchers_follow_snap_naming_and_stale_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let v1 = meta(
            "name: hi\nversion: '1'\nbase: b1\napps:\n  hi: {command: bin/hi}\n  tool: {command: bin/t}\n",
        );
        let v2 = meta("name: hi\nversion: '2'\nbase: b1\napps:\n  hi: {command: bin/hi}\n");
        assert_eq!(launcher_names(&v1), ["hi", "hi.tool"]);
        write_launchers(&paths, Path::new("/usr/bin/pack"), &v1, None).unwrap();
        assert_eq!(
            std::fs::read_link(paths.bin_dir().join("hi.tool")).unwrap(),
            Path::new("/usr/bin/pack")
        );
        write_launchers(&paths, Path::new("/usr/bin/pack"), &v2, Some(&v1)).unwrap();
        assert!(std::fs::symlink_metadata(paths.bin_dir().join("hi.tool")).is_err());
        assert!(std::fs::symlink_metadata(paths.bin_dir().join("hi")).is_ok());
        remove_launchers(&paths, &v2).unwrap();
        assert_eq!(std::fs::read_dir(paths.bin_dir()).unwrap().count(), 0);
    }
}

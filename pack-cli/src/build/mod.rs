//! What `pack-build` does: `pack pack DIR` (validate and build a package) and `pack base
//! build` ([`base`]), no daemon involved.

pub mod base;

use std::path::PathBuf;

use anyhow::{Context, bail};
use packfmt::image::{SpecialFiles, WriteOptions, write_image};
use packfmt::{Compression, PackMeta};

use crate::cli::{Cli, Command, CompressionArg, PackArgs};

/// Runs a building command; any other is refused (it belongs to `pack`).
pub fn dispatch(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Pack(args) => run(args),
        Command::Base { command } => base::run(command),
        _ => bail!("pack-build only runs 'pack pack' and 'pack base build'; use pack"),
    }
}

pub fn compression(c: CompressionArg) -> Compression {
    match c {
        CompressionArg::Zstd => Compression::Zstd,
        CompressionArg::Xz => Compression::Xz,
        CompressionArg::Lzo => Compression::Lzo,
    }
}

pub fn run(args: &PackArgs) -> anyhow::Result<()> {
    if !args.dir.is_dir() {
        bail!(
            "{} is not a directory; pass the directory to pack",
            args.dir.display()
        );
    }
    let meta = PackMeta::from_dir(&args.dir)?;
    // Caught here rather than at install: the same check packd makes.
    interfaces::validate(&meta).map_err(|e| anyhow::anyhow!("{}: {e}", args.dir.display()))?;
    check_commands(&args.dir, &meta)?;
    let output = match &args.output {
        Some(o) => o.clone(),
        None => PathBuf::from(meta.file_name()),
    };
    let mut opts = WriteOptions::from_env()?;
    opts.compression = compression(args.compression);
    opts.special_files = SpecialFiles::Reject;
    write_image(&args.dir, &output, &opts)
        .with_context(|| format!("cannot pack {}", args.dir.display()))?;
    println!("{}", output.display());
    Ok(())
}

/// Every app's command must be an executable in the package (as packd checks at install).
fn check_commands(dir: &std::path::Path, meta: &PackMeta) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for app in meta.apps.values() {
        let Some(exe) = app.command_executable() else {
            continue;
        };
        let path = dir.join(&exe);
        let ok = match std::fs::symlink_metadata(&path) {
            Ok(md) if md.file_type().is_symlink() => true,
            Ok(md) => md.is_file() && md.permissions().mode() & 0o111 != 0,
            Err(_) => false,
        };
        if !ok {
            bail!(
                "app {:?}: command {:?} is not an executable file in {}; create it or chmod +x it",
                app.name,
                exe.display(),
                dir.display()
            );
        }
    }
    for hook in meta.hooks.keys() {
        let path = dir.join("meta/hooks").join(hook);
        let md = std::fs::metadata(&path)?;
        if md.permissions().mode() & 0o111 == 0 {
            bail!("meta/hooks/{hook} is not executable; chmod +x it");
        }
    }
    Ok(())
}

//! `pack base build busybox|debian OUT.pack`.

use anyhow::Context;
use gadget_kernel_base::base::{BaseKind, BuildOptions, build_base};
use packfmt::WriteOptions;

use super::compression;
use crate::cli::{BaseCommand, BaseKindArg};

pub fn run(cmd: &BaseCommand) -> anyhow::Result<()> {
    let BaseCommand::Build(args) = cmd;
    let kind = match args.kind {
        BaseKindArg::Busybox => BaseKind::Busybox {
            deb: args.deb.clone(),
        },
        BaseKindArg::Debian => BaseKind::Debian {
            suite: args.suite.clone(),
            mirror: args.mirror.clone(),
        },
    };
    let mut write = WriteOptions::from_env()?;
    write.compression = compression(args.compression);
    let spinner = crate::output::spinner("building the base");
    let result = build_base(&BuildOptions {
        kind,
        output: args.output.clone(),
        write,
    });
    spinner.finish_and_clear();
    let name = result.context("cannot build the base")?;
    eprintln!("base {name:?} written");
    println!("{}", args.output.display());
    Ok(())
}

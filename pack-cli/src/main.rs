//! `pack`: the packd command-line tool. Also the target of the launchers in `pack/bin`: run as
//! `hello` or `hello.tool`, it runs that app (`pack run hello.tool ARGS…`).

mod client;
mod commands;

use pack_cli::{cli, output};

use std::ffi::OsString;
use std::path::Path;

use clap::Parser;

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let args = launcher_args(args);
    let cli = cli::Cli::parse_from(args);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(commands::dispatch(cli));
    std::process::exit(code);
}

/// When invoked through a launcher (`argv[0]` is an app name rather than `pack`), rewrite the
/// arguments to `pack run APP -- ARGS…`.
fn launcher_args(mut args: Vec<OsString>) -> Vec<OsString> {
    let Some(argv0) = args.first() else {
        return args;
    };
    let name = Path::new(argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name == "pack" || name.is_empty() {
        return args;
    }
    let rest = args.split_off(1);
    let mut out = vec![
        OsString::from("pack"),
        "run".into(),
        name.into(),
        "--".into(),
    ];
    out.extend(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launchers_become_pack_run() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            launcher_args(args(&["/r/pack/bin/hello.tool", "-v", "x"])),
            args(&["pack", "run", "hello.tool", "--", "-v", "x"])
        );
        assert_eq!(
            launcher_args(args(&["/usr/bin/pack", "list"])),
            args(&["/usr/bin/pack", "list"])
        );
        cli::Cli::parse_from(launcher_args(args(&["hello", "--help"])));
    }
}

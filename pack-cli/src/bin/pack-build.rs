//! `pack-build`: what `pack pack` and `pack base build` run (see the crate's documentation).
//! `pack` execs it with its own arguments, so it parses the same command line.

use clap::Parser;
use pack_cli::cli::Cli;

fn main() {
    let cli = Cli::parse();
    if let Err(e) = pack_cli::build::dispatch(&cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

//! One module per command; each returns the process exit status.

mod assertions;
mod change;
mod changes;
mod config;
mod connections;
mod debug;
mod find;
mod info;
mod install;
mod list;
mod query;
mod refresh;
mod remote;
mod remove;
mod run;
mod services;
mod store_events;

use crate::cli::{Cli, Command};
use crate::client::Client;

/// Exit status of a refused request or a failed change.
pub const EXIT_FAILURE: i32 = 1;

pub async fn dispatch(cli: Cli) -> i32 {
    let client = Client::new(&cli.socket);
    let result = match cli.command {
        // Building links libsquashfs, which `pack` does not: `pack-build` does it.
        Command::Pack(_) | Command::Base { .. } => build_helper(),
        Command::Install(args) => install::run(&client, &args).await,
        Command::Refresh(args) => refresh::run(&client, &args).await,
        Command::Switch(args) => refresh::switch(&client, &args).await,
        Command::Find(args) => find::run(&client, &args).await,
        Command::Remote { command } => remote::run(&client, &command).await,
        Command::Known(args) => assertions::known(&client, &args).await,
        Command::Ack(args) => assertions::ack(&client, &args).await,
        Command::Remove(args) => remove::run(&client, &args).await,
        Command::List(args) => list::run(&client, &args).await,
        Command::Info(args) => info::run(&client, &args).await,
        Command::Debug { command } => debug::run(&client, &command).await,
        Command::Connections(args) => connections::list(&client, &args).await,
        Command::Connect(args) => connections::change(&client, "connect", &args).await,
        Command::Disconnect(args) => connections::change(&client, "disconnect", &args).await,
        Command::Interfaces(args) => connections::interfaces(&client, &args).await,
        Command::Interface(args) => connections::interface(&client, &args).await,
        Command::Run(args) => return run::run(&client, &args).await,
        Command::Services(args) => services::list(&client, &args).await,
        Command::Start(args) => services::change(&client, "start", &args).await,
        Command::Stop(args) => services::change(&client, "stop", &args).await,
        Command::Restart(args) => services::change(&client, "restart", &args).await,
        Command::Logs(args) => services::logs(&client, &args).await,
        Command::Changes(args) => changes::list(&client, &args).await,
        Command::Tasks(args) => changes::tasks(&client, &args).await,
        Command::Watch(args) => change::follow(&client, &args.id).await.map(|_| ()),
        Command::Abort(args) => changes::abort(&client, &args.id).await,
        Command::Set(args) => config::set(&client, &args).await,
        Command::Revert(args) => remove::revert(&client, &args).await,
        Command::Get(args) => config::get(&client, &args).await,
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_FAILURE
        }
    }
}

/// Replaces this process with `pack-build` (installed next to `pack`), given the same
/// arguments; returns only when it cannot.
fn build_helper() -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot find where pack is installed")?;
    let helper = exe.with_file_name("pack-build");
    let err = std::process::Command::new(&helper)
        .arg0("pack")
        .args(std::env::args_os().skip(1))
        .exec();
    Err(err).with_context(|| {
        format!(
            "cannot start {} (pack pack and pack base build need it beside pack; reinstall packd)",
            helper.display()
        )
    })
}

//! One module per command; each returns the process exit status.

mod base;
mod build;
mod change;
mod connections;
mod debug;
mod info;
mod install;
mod list;
mod remove;
mod run;

use crate::cli::{Cli, Command};
use crate::client::Client;

/// Exit status of a refused request or a failed change.
pub const EXIT_FAILURE: i32 = 1;

pub async fn dispatch(cli: Cli) -> i32 {
    let client = Client::new(&cli.socket);
    let result = match cli.command {
        Command::Pack(args) => build::run(&args),
        Command::Base { command } => base::run(&command),
        Command::Install(args) => install::run(&client, &args).await,
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
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_FAILURE
        }
    }
}

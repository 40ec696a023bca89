//! `pack debug sandbox|apparmor NAME.APP`.

use packd_api::debug::{AppArmorReport, SandboxReport};

use crate::cli::DebugCommand;
use crate::client::Client;

pub async fn run(client: &Client, cmd: &DebugCommand) -> anyhow::Result<()> {
    match cmd {
        DebugCommand::Sandbox { app } => {
            let report: SandboxReport = client.get(&format!("/v2/debug/sandbox?app={app}")).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        DebugCommand::Apparmor { app } => {
            let report: AppArmorReport =
                client.get(&format!("/v2/debug/apparmor?app={app}")).await?;
            eprintln!("# {}: {}", report.label, report.kernel);
            print!("{}", report.profile);
        }
    }
    Ok(())
}

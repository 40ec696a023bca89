//! `pack remote add|remove|list`: the stores the device trusts and installs from.

use anyhow::Context;
use packd_api::store::{RemoteInfo, RemoteRequest};

use crate::cli::{JsonArgs, RemoteAddArgs, RemoteCommand, RemoteRemoveArgs};
use crate::client::Client;

pub async fn run(client: &Client, command: &RemoteCommand) -> anyhow::Result<()> {
    match command {
        RemoteCommand::Add(args) => add(client, args).await,
        RemoteCommand::Remove(args) => remove(client, args).await,
        RemoteCommand::List(args) => list(client, args).await,
    }
}

async fn add(client: &Client, args: &RemoteAddArgs) -> anyhow::Result<()> {
    let trust = std::fs::read_to_string(&args.trust).with_context(|| {
        format!(
            "cannot read the store's root assertion {}; pass the root.assert its operator gave you",
            args.trust.display()
        )
    })?;
    let env = client
        .post_json(
            "/v2/remotes",
            &RemoteRequest {
                action: "add".into(),
                name: args.name.clone(),
                url: Some(args.url.clone()),
                trust: Some(trust),
            },
        )
        .await?;
    let remote: RemoteInfo = serde_json::from_value(env.result)
        .context("packd added the remote but its answer is not a remote; see 'pack remote list'")?;
    println!("remote {} added (store {})", remote.name, remote.authority);
    Ok(())
}

async fn remove(client: &Client, args: &RemoteRemoveArgs) -> anyhow::Result<()> {
    client
        .post_json(
            "/v2/remotes",
            &RemoteRequest {
                action: "remove".into(),
                name: args.name.clone(),
                url: None,
                trust: None,
            },
        )
        .await?;
    println!("remote {} removed", args.name);
    Ok(())
}

async fn list(client: &Client, args: &JsonArgs) -> anyhow::Result<()> {
    let remotes: Vec<RemoteInfo> = client.get("/v2/remotes").await?;
    if crate::output::json_or_empty(
        args.json,
        &remotes,
        "No remotes yet. Add one with 'sudo pack remote add NAME URL --trust ROOT.assert'.",
    )? {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = remotes
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.url.clone(),
                r.authority.clone(),
                if r.packs.is_empty() {
                    "-".into()
                } else {
                    r.packs.join(",")
                },
            ]
        })
        .collect();
    crate::output::table(&["Name", "URL", "Store", "Packs"], &rows);
    Ok(())
}

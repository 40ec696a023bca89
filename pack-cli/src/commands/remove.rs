//! `pack remove NAME…` and `pack revert NAME`.

use super::change::{change_id, follow, wait_or_print};
use crate::cli::{RemoveArgs, RevertArgs};
use crate::client::Client;
use packd_api::types::PackAction;

pub async fn run(client: &Client, args: &RemoveArgs) -> anyhow::Result<()> {
    for name in &args.names {
        let env = client
            .post_json(
                &format!("/v2/packs/{name}"),
                &PackAction {
                    action: "remove".into(),
                    purge: args.purge,
                    ..Default::default()
                },
            )
            .await?;
        let id = change_id(&env)?;
        if args.no_wait {
            println!("{id}");
            continue;
        }
        follow(client, &id).await?;
        println!("{name} removed");
    }
    Ok(())
}

pub async fn revert(client: &Client, args: &RevertArgs) -> anyhow::Result<()> {
    let env = client
        .post_json(
            &format!("/v2/packs/{}", args.name),
            &PackAction {
                action: "revert".into(),
                revision: args.revision.clone(),
                ..Default::default()
            },
        )
        .await?;
    if args.no_wait {
        return wait_or_print(client, &env, true).await;
    }
    follow(client, &change_id(&env)?).await?;
    let info: packd_api::types::PackInfo = client.get(&format!("/v2/packs/{}", args.name)).await?;
    println!("{} reverted to {}", args.name, info.revision);
    Ok(())
}

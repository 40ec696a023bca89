//! `pack remove NAME…`.

use super::change::{change_id, follow};
use crate::cli::RemoveArgs;
use crate::client::Client;
use packd_api::types::PackAction;

pub async fn run(client: &Client, args: &RemoveArgs) -> anyhow::Result<()> {
    for name in &args.names {
        let env = client
            .post_json(
                &format!("/v2/packs/{name}"),
                &PackAction {
                    action: "remove".into(),
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

//! `pack changes|tasks|abort` (`pack watch` is [`super::change::follow`]).

use packd_api::types::ChangeInfo;

use crate::cli::{ChangeArgs, JsonArgs};
use crate::client::Client;

pub async fn list(client: &Client, args: &JsonArgs) -> anyhow::Result<()> {
    let changes: Vec<ChangeInfo> = client.get("/v2/changes").await?;
    if crate::output::json_or_empty(args.json, &changes, "No changes yet.")? {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = changes
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.status.clone(),
                c.spawn_time.clone(),
                c.ready_time.clone().unwrap_or_else(|| "-".into()),
                c.summary.clone(),
            ]
        })
        .collect();
    crate::output::table(&["ID", "Status", "Spawn", "Ready", "Summary"], &rows);
    Ok(())
}

pub async fn tasks(client: &Client, args: &ChangeArgs) -> anyhow::Result<()> {
    let change: ChangeInfo = client.get(&format!("/v2/changes/{}", args.id)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&change.tasks)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = change
        .tasks
        .iter()
        .map(|t| vec![t.status.clone(), t.summary.clone()])
        .collect();
    crate::output::table(&["Status", "Summary"], &rows);
    for t in change.tasks.iter().filter(|t| !t.log.is_empty()) {
        println!("\n{}:", t.summary);
        for line in &t.log {
            println!("  {line}");
        }
    }
    Ok(())
}

pub async fn abort(client: &Client, id: &str) -> anyhow::Result<()> {
    client
        .post_json(
            &format!("/v2/changes/{id}"),
            &serde_json::json!({"action": "abort"}),
        )
        .await?;
    eprintln!("change {id} aborted; what it did is being undone ('pack watch {id}')");
    Ok(())
}

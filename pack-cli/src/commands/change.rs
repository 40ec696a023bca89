//! Following a change to its end, with a spinner naming the task under way.

use anyhow::bail;
use packd_api::types::{ChangeInfo, Envelope};

use crate::client::Client;

/// The change id of an async answer.
pub fn change_id(env: &Envelope) -> anyhow::Result<String> {
    match &env.change {
        Some(id) => Ok(id.clone()),
        None => bail!("packd did not start a change"),
    }
}

/// An async answer's change: its id printed with `--no-wait`, else followed to its end.
pub async fn wait_or_print(client: &Client, env: &Envelope, no_wait: bool) -> anyhow::Result<()> {
    let id = change_id(env)?;
    if no_wait {
        println!("{id}");
        return Ok(());
    }
    follow(client, &id).await?;
    Ok(())
}

/// Waits for the change; a failed change becomes an error with the failing task's message.
pub async fn follow(client: &Client, id: &str) -> anyhow::Result<ChangeInfo> {
    let bar = crate::output::tasks_bar();
    let change = client
        .wait_change(id, |c| {
            let finished = c
                .tasks
                .iter()
                .filter(|t| matches!(t.status.as_str(), "Done" | "Undone" | "Hold" | "Error"))
                .count();
            bar.set_length(c.tasks.len() as u64);
            bar.set_position(finished as u64);
            if let Some(t) = c
                .tasks
                .iter()
                .find(|t| t.status == "Doing" || t.status == "Undoing")
            {
                let undoing = if t.status == "Undoing" {
                    "Undoing: "
                } else {
                    ""
                };
                bar.set_message(format!("{undoing}{}", t.summary));
            }
        })
        .await;
    bar.finish_and_clear();
    let change = change?;
    if change.status != "Done" {
        let err = change
            .err
            .clone()
            .unwrap_or_else(|| format!("change {id} ended {}", change.status));
        bail!("{} failed: {err}", change.summary);
    }
    Ok(change)
}

//! `pack list [--json]`.

use packd_api::types::PackInfo;

use crate::cli::ListArgs;
use crate::client::Client;

pub async fn run(client: &Client, args: &ListArgs) -> anyhow::Result<()> {
    let packs: Vec<PackInfo> = client.get("/v2/packs").await?;
    if crate::output::json_or_empty(
        args.json,
        &packs,
        "No packs are installed yet. Try 'pack install NAME' (see 'pack find') or 'pack install FILE --dangerous'.",
    )? {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = packs
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.version.clone(),
                p.revision.to_string(),
                // snap list's Tracking, with the remote: REMOTE:CHANNEL.
                match (&p.tracking, &p.remote) {
                    (Some(t), Some(r)) => format!("{r}:{t}"),
                    _ => "-".into(),
                },
                p.pack_type.clone(),
                p.base.clone().unwrap_or_else(|| "-".into()),
                if p.notes.is_empty() {
                    "-".into()
                } else {
                    p.notes.join(",")
                },
            ]
        })
        .collect();
    crate::output::table(
        &[
            "Name", "Version", "Rev", "Tracking", "Type", "Base", "Notes",
        ],
        &rows,
    );
    Ok(())
}

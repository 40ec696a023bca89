//! `pack info NAME [--json]`.

use packd_api::types::PackInfo;

use crate::cli::InfoArgs;
use crate::client::Client;

pub async fn run(client: &Client, args: &InfoArgs) -> anyhow::Result<()> {
    let info: PackInfo = client.get(&format!("/v2/packs/{}", args.name)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    println!("name:        {}", info.name);
    if let Some(s) = &info.summary {
        println!("summary:     {s}");
    }
    println!("version:     {}", info.version);
    println!("revision:    {}", info.revision);
    println!("type:        {}", info.pack_type);
    if let Some(b) = &info.base {
        println!("base:        {b}");
    }
    println!("confinement: {}", info.confinement);
    println!("grade:       {}", info.grade);
    println!(
        "installed:   {} ({} bytes)",
        info.install_date, info.installed_size
    );
    println!("mounted at:  {}", info.mount.display());
    println!("sha3-384:    {}", info.sha3_384);
    if let Some(d) = &info.description {
        println!("description: |");
        for line in d.lines() {
            println!("  {line}");
        }
    }
    if !info.apps.is_empty() {
        println!("apps:");
        for app in &info.apps {
            let kind = app
                .daemon
                .as_deref()
                .map(|d| format!(" (service: {d})"))
                .unwrap_or_default();
            println!("  {}: {}{kind}", app.launcher, app.command);
        }
    }
    println!("revisions:");
    for r in &info.revisions {
        let mark = if r.current { "*" } else { " " };
        println!(
            "  {mark} {:<6} {:<20} {}",
            r.revision.to_string(),
            r.version,
            r.install_date
        );
    }
    Ok(())
}

//! `pack install FILE --dangerous`.

use anyhow::{Context, bail};
use packd_api::types::PackInfo;

use super::change::{change_id, follow};
use crate::cli::InstallArgs;
use crate::client::Client;

/// Percent-encodes a query value (file names may hold anything).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn run(client: &Client, args: &InstallArgs) -> anyhow::Result<()> {
    let file_name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !args.dangerous {
        bail!(
            "cannot install {file_name:?}: local packages carry no store signature; pass --dangerous to install it anyway"
        );
    }
    let md = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    if !md.is_file() {
        bail!("{} is not a file; pass a .pack file", args.file.display());
    }
    let query = format!("dangerous=true&filename={}", encode(&file_name));
    // Ask first: a refusal (not root, say) must not arrive while the file is being sent.
    client
        .post_json(
            &format!("/v2/packs?{query}&preflight=true"),
            &serde_json::Value::Null,
        )
        .await?;
    let bar = crate::output::bytes_bar(md.len(), &format!("uploading {file_name}"));
    let progress = bar.clone();
    let env = client
        .upload(&format!("/v2/packs?{query}"), &args.file, move |n| {
            progress.inc(n)
        })
        .await;
    bar.finish_and_clear();
    let id = change_id(&env?)?;
    if args.no_wait {
        println!("{id}");
        return Ok(());
    }
    let change = follow(client, &id).await?;
    for name in &change.pack_names {
        let info: PackInfo = client.get(&format!("/v2/packs/{name}")).await?;
        println!(
            "{} {} ({}) installed",
            info.name, info.version, info.revision
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_encoded() {
        assert_eq!(super::encode("a b&c=d.pack"), "a%20b%26c%3Dd.pack");
    }
}

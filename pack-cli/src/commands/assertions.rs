//! `pack known TYPE [HEADER=VALUE…]` and `pack ack FILE`: the device's assertions.

use anyhow::Context;
use packd_api::store::KnownAssertion;
use serde::Deserialize;

use super::query::{encode, with_query};
use crate::cli::{AckArgs, KnownArgs};
use crate::client::Client;

/// The media type of assertion text.
const ASSERTION_TYPE: &str = "application/x.pack-assertion";

pub async fn known(client: &Client, args: &KnownArgs) -> anyhow::Result<()> {
    let found: Vec<KnownAssertion> = client.get(&known_path(args)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(());
    }
    if found.is_empty() {
        eprintln!("No {} assertions match.", args.kind);
    }
    for (i, a) in found.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{}", a.text.trim_end_matches('\n'));
    }
    Ok(())
}

/// `/v2/assertions/TYPE?HEADER=VALUE&…[&remote=R]`.
fn known_path(args: &KnownArgs) -> String {
    let mut pairs: Vec<(&str, &str)> = args
        .filters
        .iter()
        .map(|(h, v)| (h.as_str(), v.as_str()))
        .collect();
    if let Some(r) = &args.remote {
        pairs.push(("remote", r));
    }
    with_query(&format!("/v2/assertions/{}", encode(&args.kind)), &pairs)
}

/// The answer to `POST /v2/assertions`.
#[derive(Debug, Deserialize)]
struct Added {
    added: u64,
}

pub async fn ack(client: &Client, args: &AckArgs) -> anyhow::Result<()> {
    let text = std::fs::read(&args.file)
        .with_context(|| format!("cannot read assertions from {}", args.file.display()))?;
    let env = client
        .post_bytes("/v2/assertions", ASSERTION_TYPE, text)
        .await?;
    let added: Added = serde_json::from_value(env.result)
        .context("packd took the assertions but its answer does not say how many")?;
    let noun = if added.added == 1 {
        "assertion"
    } else {
        "assertions"
    };
    println!("{} {noun} added", added.added);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_the_query() {
        let args = KnownArgs {
            kind: "pack-revision".into(),
            filters: vec![
                ("pack-id".into(), "a b".into()),
                ("pack-revision".into(), "3".into()),
            ],
            remote: Some("mystore".into()),
            json: false,
        };
        assert_eq!(
            known_path(&args),
            "/v2/assertions/pack-revision?pack-id=a%20b&pack-revision=3&remote=mystore"
        );
    }
}

//! `pack set|get system`.

use std::collections::BTreeMap;

use anyhow::bail;

use crate::cli::{GetArgs, SetArgs};
use crate::client::Client;

pub async fn set(client: &Client, args: &SetArgs) -> anyhow::Result<()> {
    let mut values = BTreeMap::new();
    for pair in &args.values {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("{pair:?} is not KEY=VALUE; for example refresh.retain=3");
        };
        values.insert(k.to_string(), v.to_string());
    }
    client
        .put_json(&format!("/v2/packs/{}/conf", args.name), &values)
        .await?;
    Ok(())
}

pub async fn get(client: &Client, args: &GetArgs) -> anyhow::Result<()> {
    let mut path = format!("/v2/packs/{}/conf", args.name);
    if let Some(k) = &args.key {
        path.push_str(&format!("?keys={k}"));
    }
    let values: BTreeMap<String, String> = client.get(&path).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&values)?);
    } else if let (Some(_), Some(v)) = (&args.key, values.values().next()) {
        println!("{v}");
    } else {
        let rows: Vec<Vec<String>> = values.into_iter().map(|(k, v)| vec![k, v]).collect();
        crate::output::table(&["Key", "Value"], &rows);
    }
    Ok(())
}

//! `pack connections|connect|disconnect|interfaces|interface`.

use packd_api::types::{ConnectRequest, ConnectionInfo, InterfaceInfo};

use super::change::wait_or_print;
use crate::cli::{ConnectArgs, ConnectionsArgs, InterfaceArgs, JsonArgs};
use crate::client::Client;

pub async fn list(client: &Client, args: &ConnectionsArgs) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(name) = &args.name {
        query.push(format!("pack={name}"));
    }
    if args.all {
        query.push("all=true".into());
    }
    let path = if query.is_empty() {
        "/v2/connections".to_string()
    } else {
        format!("/v2/connections?{}", query.join("&"))
    };
    let conns: Vec<ConnectionInfo> = client.get(&path).await?;
    if crate::output::json_or_empty(
        args.json,
        &conns,
        "No connections. 'pack connections --all' also lists unconnected plugs.",
    )? {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = conns
        .iter()
        .map(|c| {
            vec![
                c.interface.clone(),
                c.plug.clone(),
                c.slot.clone().unwrap_or_else(|| "-".into()),
                if c.slot.is_none() {
                    "-".into()
                } else if c.manual {
                    "manual".into()
                } else {
                    "auto".into()
                },
            ]
        })
        .collect();
    crate::output::table(&["Interface", "Plug", "Slot", "Notes"], &rows);
    Ok(())
}

pub async fn change(client: &Client, action: &str, args: &ConnectArgs) -> anyhow::Result<()> {
    let env = client
        .post_json(
            "/v2/connections",
            &ConnectRequest {
                action: action.into(),
                plug: args.plug.clone(),
                slot: args.slot.clone(),
            },
        )
        .await?;
    wait_or_print(client, &env, args.no_wait).await
}

pub async fn interfaces(client: &Client, args: &JsonArgs) -> anyhow::Result<()> {
    let all: Vec<InterfaceInfo> = client.get("/v2/interfaces").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                i.summary.clone(),
                i.auto_connect.clone(),
                i.plugs.len().to_string(),
            ]
        })
        .collect();
    crate::output::table(&["Interface", "Summary", "Auto-connect", "Plugs"], &rows);
    Ok(())
}

pub async fn interface(client: &Client, args: &InterfaceArgs) -> anyhow::Result<()> {
    let i: InterfaceInfo = client.get(&format!("/v2/interfaces/{}", args.name)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&i)?);
        return Ok(());
    }
    println!("name:          {}", i.name);
    println!("summary:       {}", i.summary);
    println!("provided by:   {}", i.provider);
    println!("auto-connect:  {}", i.auto_connect);
    println!("grants: |");
    for line in textwrap(&i.grants, 76) {
        println!("  {line}");
    }
    for (what, attrs) in [
        ("plug attributes", &i.plug_attrs),
        ("slot attributes", &i.slot_attrs),
    ] {
        if !attrs.is_empty() {
            println!("{what}:");
            for a in attrs {
                let req = if a.required { " (required)" } else { "" };
                println!("  {}{req}: {}", a.name, a.doc);
            }
        }
    }
    println!("plugs:         {}", joined(&i.plugs));
    println!("slots:         {}", joined(&i.slots));
    Ok(())
}

fn joined(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(", ")
    }
}

fn textwrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

//! `pack refresh [NAME…] [--channel C]` (streamed, like a store install), its views
//! `--list` and `--time`, its holds `--hold[=DURATION]` and `--unhold`; and
//! `pack switch NAME --channel C`.

use std::collections::BTreeMap;

use packd_api::store::{PendingRefresh, RefreshAction, RefreshTime};
use packd_api::types::PackAction;
use serde::Deserialize;

use super::change::{change_id, follow};
use super::query::{encode, name_list};
use super::store_events;
use crate::cli::{RefreshArgs, SwitchArgs};
use crate::client::Client;

pub async fn run(client: &Client, args: &RefreshArgs) -> anyhow::Result<()> {
    if args.list {
        return list(client, args).await;
    }
    if args.time {
        return time(client, args.json).await;
    }
    if let Some(duration) = &args.hold {
        return hold(client, &args.names, duration).await;
    }
    if args.unhold {
        return unhold(client, &args.names).await;
    }
    refresh(client, args).await
}

async fn refresh(client: &Client, args: &RefreshArgs) -> anyhow::Result<()> {
    let action = RefreshAction {
        action: "refresh".into(),
        names: args.names.clone(),
        channel: args.channel.clone(),
        ..Default::default()
    };
    let resp = client.post_stream("/v2/refresh", &action).await?;
    let streamed = store_events::read(resp).await;
    if !args.names.is_empty() {
        for n in &streamed.unchanged {
            eprintln!("{n} is up to date");
        }
    } else if streamed.quiet() {
        eprintln!("All packs up to date.");
    }
    store_events::finish(client, streamed, "refreshed", args.no_wait).await
}

async fn list(client: &Client, args: &RefreshArgs) -> anyhow::Result<()> {
    let path = if args.names.is_empty() {
        "/v2/refresh".to_string()
    } else {
        format!("/v2/refresh?names={}", name_list(&args.names))
    };
    let pending: Vec<PendingRefresh> = client.get(&path).await?;
    if crate::output::json_or_empty(args.json, &pending, "All packs up to date.")? {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = pending
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.version.clone(),
                p.revision.to_string(),
                crate::output::human_size(p.size),
                p.channel.clone(),
                notes(p),
            ]
        })
        .collect();
    crate::output::table(
        &["Name", "Version", "Rev", "Size", "Channel", "Notes"],
        &rows,
    );
    Ok(())
}

/// The Notes column of `--list`: held (until when) and skipped.
fn notes(p: &PendingRefresh) -> String {
    let mut notes = Vec::new();
    match p.held.as_deref() {
        None => {}
        Some(FOREVER) => notes.push("held".to_string()),
        Some(until) => notes.push(format!("held until {until}")),
    }
    if p.skipped {
        notes.push("skipped".into());
    }
    if notes.is_empty() {
        "-".into()
    } else {
        notes.join(",")
    }
}

/// How a hold without an end is spelled on the wire.
const FOREVER: &str = "forever";

/// A hold's pack as a person reads it (`*` is every pack).
fn holder(name: &str) -> &str {
    if name == "*" { "all packs" } else { name }
}

/// A hold's end as a person reads it: `until X` or `forever`.
fn hold_end(until: &str) -> String {
    if until == FOREVER {
        FOREVER.into()
    } else {
        format!("until {until}")
    }
}

async fn time(client: &Client, json: bool) -> anyhow::Result<()> {
    let t: RefreshTime = client.get("/v2/refresh/time").await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&t)?);
        return Ok(());
    }
    for line in time_lines(&t) {
        println!("{line}");
    }
    Ok(())
}

fn time_lines(t: &RefreshTime) -> Vec<String> {
    let na = |v: &Option<String>| v.clone().unwrap_or_else(|| "n/a".into());
    let mut lines = vec![
        format!("timer:   {}", t.timer),
        format!("last:    {}", na(&t.last)),
        format!("next:    {}", na(&t.next)),
    ];
    for (name, until) in &t.holds {
        lines.push(format!("hold:    {} {}", holder(name), hold_end(until)));
    }
    lines.push(format!("metered: {}", t.metered));
    lines
}

/// The answer to `hold`: the holds now in force, by pack (`*`: all), until when.
#[derive(Debug, Deserialize)]
struct Holds {
    holds: BTreeMap<String, String>,
}

async fn hold(client: &Client, names: &[String], duration: &str) -> anyhow::Result<()> {
    let env = client
        .post_json(
            "/v2/refresh",
            &RefreshAction {
                action: "hold".into(),
                names: names.to_vec(),
                duration: Some(duration.into()),
                ..Default::default()
            },
        )
        .await?;
    match serde_json::from_value::<Holds>(env.result) {
        Ok(h) => {
            for (name, until) in &h.holds {
                println!("{} held {}", holder(name), hold_end(until));
            }
        }
        // Held, but packd did not say until when.
        Err(_) if names.is_empty() => println!("all packs held"),
        Err(_) => names.iter().for_each(|n| println!("{n} held")),
    }
    Ok(())
}

async fn unhold(client: &Client, names: &[String]) -> anyhow::Result<()> {
    client
        .post_json(
            "/v2/refresh",
            &RefreshAction {
                action: "unhold".into(),
                names: names.to_vec(),
                ..Default::default()
            },
        )
        .await?;
    if names.is_empty() {
        println!("auto-refresh no longer held");
    }
    for n in names {
        println!("{n} no longer held");
    }
    Ok(())
}

pub async fn switch(client: &Client, args: &SwitchArgs) -> anyhow::Result<()> {
    let env = client
        .post_json(
            &format!("/v2/packs/{}", encode(&args.name)),
            &PackAction {
                action: "switch".into(),
                channel: Some(args.channel.clone()),
                ..Default::default()
            },
        )
        .await?;
    if env.change.is_some() {
        follow(client, &change_id(&env)?).await?;
    }
    // packd answers with the channel the pack now tracks.
    let tracked = match &env.result {
        serde_json::Value::String(c) => c.as_str(),
        serde_json::Value::Object(o) => o
            .get("channel")
            .and_then(|c| c.as_str())
            .unwrap_or(&args.channel),
        _ => &args.channel,
    };
    println!("{} now tracks {tracked}", args.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use packfmt::Revision;

    #[test]
    fn notes_say_held_and_skipped() {
        let mut p = PendingRefresh {
            name: "hello".into(),
            remote: "mystore".into(),
            channel: "latest/stable".into(),
            current: Revision::Store(2),
            revision: 3,
            version: "1.1".into(),
            size: 10,
            held: None,
            skipped: false,
        };
        assert_eq!(notes(&p), "-");
        p.held = Some("forever".into());
        assert_eq!(notes(&p), "held");
        p.held = Some("2030-01-01T00:00:00Z".into());
        p.skipped = true;
        assert_eq!(notes(&p), "held until 2030-01-01T00:00:00Z,skipped");
    }

    #[test]
    fn time_shows_every_hold_and_what_is_unknown() {
        let t = RefreshTime {
            timer: "00:00~24:00/4".into(),
            last: None,
            next: Some("2030-01-01T06:00:00Z".into()),
            holds: [
                ("*".to_string(), "forever".to_string()),
                ("hello".to_string(), "2030-01-02T00:00:00Z".to_string()),
            ]
            .into(),
            metered: "unknown".into(),
        };
        assert_eq!(
            time_lines(&t),
            [
                "timer:   00:00~24:00/4",
                "last:    n/a",
                "next:    2030-01-01T06:00:00Z",
                "hold:    all packs forever",
                "hold:    hello until 2030-01-02T00:00:00Z",
                "metered: unknown",
            ]
        );
    }
}

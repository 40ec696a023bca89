//! `pack info NAME [--json]`: the installed pack (if it is), and the store's view of it (if it
//! comes from a store or is not installed): publisher and channel map.

use packd_api::ErrorKind;
use packd_api::store::{ChannelEntry, StorePackInfo};
use packd_api::types::PackInfo;

use super::query::{encode, with_query};
use crate::cli::InfoArgs;
use crate::client::{Client, ClientError};

/// `--json`: the installed pack's object as before (`{"name"}` alone when it is not
/// installed), with the store's view as its `store` member when there is one.
fn json_view(
    name: &str,
    installed: Option<PackInfo>,
    store: Option<StorePackInfo>,
) -> anyhow::Result<serde_json::Value> {
    let mut v = match installed {
        Some(i) => serde_json::to_value(i)?,
        None => serde_json::json!({ "name": name }),
    };
    if let (Some(obj), Some(s)) = (v.as_object_mut(), store) {
        obj.insert("store".into(), serde_json::to_value(s)?);
    }
    Ok(v)
}

pub async fn run(client: &Client, args: &InfoArgs) -> anyhow::Result<()> {
    let name = encode(&args.name);
    let installed = match client.get::<PackInfo>(&format!("/v2/packs/{name}")).await {
        Ok(info) => Some(info),
        Err(ClientError::Api { kind, .. }) if kind == ErrorKind::PackNotFound.as_str() => None,
        Err(e) => return Err(e.into()),
    };
    // A pack installed from a file has no store to ask.
    let ask_store = installed.as_ref().is_none_or(|i| i.remote.is_some());
    let (store, unreachable) = if ask_store {
        let remote = installed.as_ref().and_then(|i| i.remote.as_deref());
        let pairs: Vec<(&str, &str)> = remote.map(|r| ("remote", r)).into_iter().collect();
        let path = with_query(&format!("/v2/store/packs/{name}"), &pairs);
        match client.get::<StorePackInfo>(&path).await {
            Ok(s) => (Some(s), None),
            // Not installed, and the store does not have it (or cannot say): that is the answer.
            Err(e) if installed.is_none() => return Err(e.into()),
            Err(e) => (None, Some(store_problem(&e))),
        }
    } else {
        (None, None)
    };
    if args.json {
        if let Some(message) = &unreachable {
            eprintln!("warning: store: {message}");
        }
        let info = json_view(&args.name, installed, store)?;
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    match &installed {
        Some(info) => print_installed(info, store.as_ref()),
        None => {
            if let Some(s) = &store {
                print_store_only(s);
            }
        }
    }
    if let Some(s) = &store {
        println!("channels:");
        for row in channel_rows(&s.channels) {
            println!("  {row}");
        }
    }
    if let Some(message) = unreachable {
        println!("store:       {message}");
    }
    Ok(())
}

/// Why the store could not say, for an installed pack: `unreachable (…)` when it could not be
/// asked, else its answer.
fn store_problem(e: &ClientError) -> String {
    match e {
        ClientError::Api { kind, message, .. } if kind != ErrorKind::StoreUnavailable.as_str() => {
            message.clone()
        }
        e => format!("unreachable ({e})"),
    }
}

fn print_installed(info: &PackInfo, store: Option<&StorePackInfo>) {
    println!("name:        {}", info.name);
    if let Some(s) = &info.summary {
        println!("summary:     {s}");
    }
    if let Some(s) = store {
        println!("publisher:   {}", s.publisher);
    }
    if let Some(r) = &info.remote {
        println!("remote:      {r}");
    }
    if let Some(t) = &info.tracking {
        println!("tracking:    {t}");
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
        print_description(d);
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
}

fn print_store_only(s: &StorePackInfo) {
    println!("name:        {}", s.name);
    println!("summary:     {}", s.summary);
    println!("publisher:   {}", s.publisher);
    println!("remote:      {}", s.remote);
    if let Some(t) = &s.tracking {
        println!("tracking:    {t}");
    }
    println!("pack-id:     {}", s.pack_id);
    if !s.description.is_empty() {
        print_description(&s.description);
    }
}

fn print_description(d: &str) {
    println!("description: |");
    for line in d.lines() {
        println!("  {line}");
    }
}

/// The channel map as `snap info` shows it: `CHANNEL: VERSION REV SIZE` in aligned columns,
/// `^` for a channel that offers what the channel it follows does, `--` for one that offers
/// nothing.
fn channel_rows(channels: &[ChannelEntry]) -> Vec<String> {
    let offered = |c: &str| {
        channels
            .iter()
            .find(|e| e.channel == c)
            .and_then(|e| e.revision)
    };
    let cells: Vec<(String, Option<[String; 3]>, &str)> = channels
        .iter()
        .map(|e| {
            let label = format!("{}:", e.channel);
            match (e.revision, &e.follows) {
                (None, _) => (label, None, "--"),
                (Some(rev), Some(f)) if offered(f) == Some(rev) => (label, None, "^"),
                (Some(rev), _) => (
                    label,
                    Some([
                        e.version.clone().unwrap_or_else(|| "-".into()),
                        rev.to_string(),
                        e.size
                            .map(crate::output::human_size)
                            .unwrap_or_else(|| "-".into()),
                    ]),
                    "",
                ),
            }
        })
        .collect();
    let label_w = cells.iter().map(|c| c.0.chars().count()).max().unwrap_or(0);
    let mut widths = [0usize; 3];
    for cols in cells.iter().filter_map(|c| c.1.as_ref()) {
        for (w, col) in widths.iter_mut().zip(cols) {
            *w = (*w).max(col.chars().count());
        }
    }
    cells
        .into_iter()
        .map(|(label, cols, mark)| {
            let rest = match cols {
                Some([v, r, s]) => {
                    format!("{v:<w0$}  {r:<w1$}  {s}", w0 = widths[0], w1 = widths[1])
                }
                None => mark.to_string(),
            };
            format!("{label:<label_w$} {rest}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(channel: &str, revision: Option<u32>, follows: Option<&str>) -> ChannelEntry {
        ChannelEntry {
            channel: channel.into(),
            revision,
            version: revision.map(|r| format!("1.{r}")),
            size: revision.map(|r| u64::from(r) * 1_500_000),
            follows: follows.map(String::from),
            released_at: None,
        }
    }

    #[test]
    fn channels_show_versions_followers_and_gaps() {
        let rows = channel_rows(&[
            entry("latest/stable", Some(3), None),
            entry("latest/candidate", Some(3), Some("latest/stable")),
            entry("latest/beta", Some(12), None),
            entry("latest/edge", None, None),
        ]);
        assert_eq!(
            rows,
            [
                "latest/stable:    1.3   3   4MB",
                "latest/candidate: ^",
                "latest/beta:      1.12  12  18MB",
                "latest/edge:      --",
            ]
        );
    }
}

//! `pack services|start|stop|restart|logs`.

use http_body_util::BodyExt;
use packd_api::types::{LogLine, ServiceInfo, ServiceRequest};

use super::change::wait_or_print;
use crate::cli::{LogsArgs, ServiceArgs, ServicesArgs};
use crate::client::Client;

pub async fn list(client: &Client, args: &ServicesArgs) -> anyhow::Result<()> {
    let mut path = "/v2/apps?select=service".to_string();
    if !args.names.is_empty() {
        path.push_str(&format!("&names={}", args.names.join(",")));
    }
    let services: Vec<ServiceInfo> = client.get(&path).await?;
    if crate::output::json_or_empty(args.json, &services, "There are no services.")? {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            vec![
                format!("{}.{}", s.pack, s.name),
                if s.enabled { "enabled" } else { "disabled" }.into(),
                s.active.clone(),
                s.daemon.clone(),
            ]
        })
        .collect();
    crate::output::table(&["Service", "Startup", "Current", "Notes"], &rows);
    Ok(())
}

pub async fn change(client: &Client, action: &str, args: &ServiceArgs) -> anyhow::Result<()> {
    let env = client
        .post_json(
            "/v2/apps",
            &ServiceRequest {
                action: action.into(),
                names: args.names.clone(),
                enable: args.enable,
                disable: args.disable,
            },
        )
        .await?;
    wait_or_print(client, &env, args.no_wait).await
}

pub async fn logs(client: &Client, args: &LogsArgs) -> anyhow::Result<()> {
    let path = format!(
        "/v2/logs?names={}&n={}&follow={}",
        args.names.join(","),
        args.lines,
        args.follow
    );
    let mut body = client.get_stream(&path).await?.into_body();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let Ok(l) = serde_json::from_slice::<LogLine>(&line) else {
                continue;
            };
            println!("{} {}: {}", l.timestamp, l.app, l.message);
        }
    }
    Ok(())
}

//! `POST /v2/system`: reboot or power off the device. Root may ask; so may an app whose pack
//! has a `shutdown` (or `packd-control`) connection, through its own socket ([`super::sockets`]
//! has already checked that connection). The reboot system call itself stays denied to every
//! sandbox: this is the only way, and packd does it with the configured command.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};

use super::Api;
use super::Peer;
use super::response::{ApiError, ApiResult, sync};
use super::types::SystemRequest;

pub async fn action(
    State(d): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    Json(req): Json<SystemRequest>,
) -> ApiResult {
    let (arg, default) = match req.action.as_str() {
        "reboot" => ("reboot", "reboot"),
        "power-off" => ("power-off", "poweroff"),
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown system action {other:?}; use reboot or power-off"
            )));
        }
    };
    if peer.origin.is_none() {
        peer.require_root("rebooting or powering off")?;
    }
    let who = match &peer.origin {
        Some(o) => format!("pack {}", o.pack),
        None => format!("uid {}", peer.uid),
    };
    tracing::warn!(action = arg, by = %who, "system action requested");
    // On its own task: the request may come from a service, whose connection goes when the
    // services stop; the reboot must not go with it.
    let command = d.system_command.clone();
    let d = d.clone();
    tokio::spawn(async move {
        // Services stop first, gracefully (stop-command, SIGTERM), before the system goes
        // down; what ran comes back if it does not.
        let ran = d.services.stop_all().await;
        let mut cmd = match &command {
            Some(c) => {
                let mut cmd = tokio::process::Command::new(c);
                cmd.arg(arg);
                cmd
            }
            None => tokio::process::Command::new(default),
        };
        let status = cmd.stdin(std::process::Stdio::null()).status().await;
        let failure = match status {
            Ok(s) if s.success() => return,
            Ok(s) => format!("the {arg} command failed ({s})"),
            Err(e) => format!("cannot run the {arg} command: {e}"),
        };
        tracing::error!(error = %failure, "system action failed; starting the services again");
        d.services.resume();
        for (pack, apps) in ran {
            if let Err(e) = d.services.start(&pack, Some(&apps)).await {
                tracing::error!(pack, error = %e, "cannot start a service again");
            }
        }
    });
    Ok(sync(serde_json::json!({ "action": arg })))
}

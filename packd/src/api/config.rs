//! `/v2/packs/system/conf`: the system's settings (`pack get|set system`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use serde::Deserialize;

use super::Api;
use super::Peer;
use super::response::{ApiError, ApiResult, sync};
use crate::state::config;

fn only_system(name: &str) -> Result<(), ApiError> {
    if name == "system" {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "packs have no settings of their own yet; only 'system' has ({name:?} given)"
        )))
    }
}

/// The device's id (read-only; stores know the device by it).
const DEVICE_ID: &str = "device.id";

#[derive(Debug, Deserialize)]
pub struct Keys {
    #[serde(default)]
    keys: Option<String>,
}

/// `GET /v2/packs/system/conf[?keys=a,b]`: values (defaults where unset).
pub async fn get(
    State(d): State<Arc<Api>>,
    Path(name): Path<String>,
    Query(q): Query<Keys>,
) -> ApiResult {
    only_system(&name)?;
    let wanted: Vec<String> = match q.keys.as_deref() {
        Some(k) => k.split(',').map(str::to_string).collect(),
        None => config::KEYS
            .iter()
            .map(|k| k.name.to_string())
            .chain([DEVICE_ID.to_string()])
            .collect(),
    };
    let out = d.store.read(|s| {
        wanted
            .iter()
            .map(|k| {
                if k == DEVICE_ID {
                    return Ok((k.clone(), s.device_id.clone().unwrap_or_default()));
                }
                config::check(k, config::get(&s.config, k))?;
                Ok((k.clone(), config::get(&s.config, k).to_string()))
            })
            .collect::<Result<BTreeMap<String, String>, crate::error::ConfigError>>()
    })?;
    Ok(sync(out))
}

/// `PUT /v2/packs/system/conf` with `{"KEY": "VALUE", …}` (root): all or nothing.
pub async fn set(
    State(d): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    Path(name): Path<String>,
    Json(values): Json<BTreeMap<String, String>>,
) -> ApiResult {
    only_system(&name)?;
    peer.require_root("changing system settings")?;
    if values.contains_key(DEVICE_ID) {
        return Err(ApiError::bad_request(
            "device.id is read-only: packd made it at its first start, and stores know the device by it",
        ));
    }
    for (k, v) in &values {
        config::check(k, v)?;
    }
    d.store.update(|s| {
        s.config.extend(values.clone());
        Ok::<_, crate::error::Error>(())
    })?;
    d.stores.settings_changed();
    Ok(sync(values))
}

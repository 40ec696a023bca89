//! The publisher's side of the store's API, for the `pack-store` commands: one call per
//! command, errors as the store words them.

use std::path::Path;

use packfmt::store::ErrorBody;
use serde_json::Value;

/// A store at `url`, with a publisher token when there is one.
pub struct Client {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl Client {
    pub fn new(url: &str, token: Option<String>) -> anyhow::Result<Client> {
        let url = url.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("invalid store URL {url:?}: write http://HOST:PORT or https://HOST");
        }
        Ok(Client {
            http: reqwest::Client::builder().build()?,
            url,
            token,
        })
    }

    fn token(&self) -> anyhow::Result<&str> {
        self.token.as_deref().ok_or_else(|| {
            anyhow::anyhow!("this needs a publisher token: pass --token or set PACK_STORE_TOKEN")
        })
    }

    async fn answer(&self, r: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = r
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the store at {}: {e}", self.url))?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            if let Ok(e) = serde_json::from_slice::<ErrorBody>(&bytes) {
                anyhow::bail!("{}", e.error.message);
            }
            anyhow::bail!("the store answered {status}");
        }
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn post(&self, path: &str) -> anyhow::Result<reqwest::RequestBuilder> {
        Ok(self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(self.token()?))
    }

    pub async fn register(&self, name: &str) -> anyhow::Result<Value> {
        self.answer(
            self.post("/v1/packs")?
                .json(&serde_json::json!({"name": name})),
        )
        .await
    }

    /// Uploads the pack at `file` (its name read from the file's metadata by the store).
    pub async fn upload(
        &self,
        file: &Path,
        name: &str,
        release: &[String],
    ) -> anyhow::Result<Value> {
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", file.display()))?;
        let len = f.metadata().await?.len();
        let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 << 10);
        let path = format!("/v1/packs/{name}/revisions?release={}", release.join(","));
        self.answer(
            self.post(&path)?
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(reqwest::Body::wrap_stream(stream)),
        )
        .await
    }

    pub async fn release(
        &self,
        name: &str,
        revision: u32,
        channels: &[String],
    ) -> anyhow::Result<Value> {
        self.answer(
            self.post(&format!("/v1/packs/{name}/releases"))?
                .json(&serde_json::json!({"revision": revision, "channels": channels})),
        )
        .await
    }

    /// A progressive release of `revision` to `channel`; the rollout's id.
    pub async fn release_progressive(
        &self,
        name: &str,
        revision: u32,
        channel: &str,
        plan: &crate::rollouts::Progressive,
    ) -> anyhow::Result<Value> {
        self.answer(
            self.post(&format!("/v1/packs/{name}/releases"))?
                .json(&serde_json::json!({
                    "revision": revision, "channels": [channel], "progressive": plan
                })),
        )
        .await
    }

    pub async fn rollouts(&self, name: &str) -> anyhow::Result<Value> {
        self.answer(
            self.http
                .get(format!("{}/v1/packs/{name}/rollouts", self.url))
                .bearer_auth(self.token()?),
        )
        .await
    }

    pub async fn control_rollout(
        &self,
        name: &str,
        action: &str,
        channel: Option<&str>,
    ) -> anyhow::Result<Value> {
        self.answer(
            self.post(&format!("/v1/packs/{name}/rollouts"))?
                .json(&serde_json::json!({ "action": action, "channel": channel })),
        )
        .await
    }

    pub async fn close(&self, name: &str, channels: &[String]) -> anyhow::Result<Value> {
        self.answer(
            self.post(&format!("/v1/packs/{name}/close"))?
                .json(&serde_json::json!({"channels": channels})),
        )
        .await
    }

    pub async fn revoke(&self, name: &str, revision: u32) -> anyhow::Result<Value> {
        self.answer(self.post(&format!("/v1/packs/{name}/revisions/{revision}/revoke"))?)
            .await
    }

    pub async fn status(&self, name: &str) -> anyhow::Result<Value> {
        self.answer(
            self.http
                .get(format!("{}/v1/packs/{name}/status", self.url))
                .bearer_auth(self.token()?),
        )
        .await
    }
}

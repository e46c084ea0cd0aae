//! A typed client of the admin API, for tests (plus helpers that seed secret sets through the
//! real `/v1` API).

use std::time::Duration;

use anyhow::Context as _;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::admin::{ConfigUpdate, ResetOptions, RuntimeConfig, SessionInfo, Stats};
use super::faults::{ActiveFault, Fault};
use super::journal::{Counts, JournalEntry, JournalFilter};

/// How long [`AdminClient::create_secret_set`] waits for a set to be ready.
const SECRET_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of the emulator's admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    root: String,
    http: reqwest::Client,
}

#[derive(serde::Deserialize)]
struct Entries {
    entries: Vec<JournalEntry>,
}

#[derive(serde::Deserialize)]
struct FaultList {
    faults: Vec<ActiveFault>,
}

#[derive(serde::Deserialize)]
struct Ended {
    ended: usize,
}

#[derive(serde::Deserialize)]
struct Sessions {
    sessions: Vec<SessionInfo>,
}

impl AdminClient {
    /// A client of the emulator at `root_url` (`http://HOST:PORT`; a trailing `/v1` is
    /// ignored).
    pub fn new(root_url: impl Into<String>) -> Self {
        let mut root: String = root_url.into();
        while root.ends_with('/') {
            root.pop();
        }
        if let Some(stripped) = root.strip_suffix("/v1") {
            root = stripped.to_owned();
        }
        Self {
            root,
            http: reqwest::Client::new(),
        }
    }

    /// `http://HOST:PORT`.
    pub fn root_url(&self) -> &str {
        &self.root
    }

    fn admin(&self, path: &str) -> String {
        format!("{}/_emulator{path}", self.root)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = request
            .send()
            .await
            .with_context(|| format!("failed to {what}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("failed to read the answer to {what}"))?;
        if !status.is_success() {
            anyhow::bail!("failed to {what}: the emulator answered {status}: {text}");
        }
        serde_json::from_str(&text)
            .with_context(|| format!("failed to parse the answer to {what}: {text}"))
    }

    /// Whether the emulator answers.
    pub async fn health(&self) -> anyhow::Result<()> {
        self.send::<Value>("check health", self.http.get(self.admin("/health")))
            .await
            .map(drop)
    }

    /// Journal entries matching `filter`, oldest first.
    pub async fn journal(&self, filter: &JournalFilter) -> anyhow::Result<Vec<JournalEntry>> {
        let request = self.http.get(self.admin("/journal")).query(filter);
        Ok(self
            .send::<Entries>("read the journal", request)
            .await?
            .entries)
    }

    /// Strict mode's findings: the journal entries with a contract violation, oldest first.
    pub async fn violations(&self) -> anyhow::Result<Vec<JournalEntry>> {
        #[derive(serde::Deserialize)]
        struct Violations {
            violations: Vec<JournalEntry>,
        }
        Ok(self
            .send::<Violations>(
                "read the violations",
                self.http.get(self.admin("/violations")),
            )
            .await?
            .violations)
    }

    /// Fails, listing them, when strict mode journaled any contract violation since the last
    /// reset (evicted entries counted too).
    pub async fn check_contract(&self) -> anyhow::Result<()> {
        let count = self.counts().await?.violations;
        if count == 0 {
            return Ok(());
        }
        super::journal::violation_report(count, &self.violations().await?)
    }

    /// Request counts by operation and status since the last reset.
    pub async fn counts(&self) -> anyhow::Result<Counts> {
        self.send(
            "read the counts",
            self.http.get(self.admin("/journal/counts")),
        )
        .await
    }

    /// Injects a fault.
    pub async fn inject_fault(&self, fault: Fault) -> anyhow::Result<ActiveFault> {
        let request = self.http.post(self.admin("/faults")).json(&fault);
        self.send("inject a fault", request).await
    }

    /// The active faults.
    pub async fn faults(&self) -> anyhow::Result<Vec<ActiveFault>> {
        let list: FaultList = self
            .send("list faults", self.http.get(self.admin("/faults")))
            .await?;
        Ok(list.faults)
    }

    /// Removes every fault; how many there were.
    pub async fn clear_faults(&self) -> anyhow::Result<usize> {
        #[derive(serde::Deserialize)]
        struct Cleared {
            cleared: usize,
        }
        let cleared: Cleared = self
            .send("clear faults", self.http.delete(self.admin("/faults")))
            .await?;
        Ok(cleared.cleared)
    }

    /// Clears the journal, and faults and/or state as asked.
    pub async fn reset(&self, options: ResetOptions) -> anyhow::Result<()> {
        let request = self.http.post(self.admin("/reset")).json(&options);
        self.send::<Value>("reset the emulator", request)
            .await
            .map(drop)
    }

    /// The delays and failure patterns in force.
    pub async fn config(&self) -> anyhow::Result<RuntimeConfig> {
        self.send("read the config", self.http.get(self.admin("/config")))
            .await
    }

    /// Changes delays and failure patterns; returns the result.
    pub async fn set_config(&self, update: ConfigUpdate) -> anyhow::Result<RuntimeConfig> {
        let request = self.http.put(self.admin("/config")).json(&update);
        self.send("change the config", request).await
    }

    /// The agent as stored, with every field whatever the response profile; `None` when
    /// there is no such agent.
    pub async fn agent(&self, key: &str, agent: &str) -> anyhow::Result<Option<Value>> {
        let response = self
            .http
            .get(self.admin(&format!("/agents/{agent}")))
            .bearer_auth(key)
            .send()
            .await
            .context("failed to read the stored agent")?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = response
            .error_for_status()
            .context("failed to read the stored agent")?;
        Ok(Some(
            response
                .json()
                .await
                .context("failed to read the stored agent")?,
        ))
    }

    /// Changes an agent as if someone used the dashboard (a new deployment when something
    /// changes); returns the agent as the API would show it.
    pub async fn drift(&self, key: &str, agent: &str, patch: Value) -> anyhow::Result<Value> {
        let request = self
            .http
            .patch(self.admin(&format!("/agents/{agent}")))
            .bearer_auth(key)
            .json(&patch);
        self.send("change the agent out of band", request).await
    }

    /// Live sessions of an agent.
    pub async fn sessions(&self, key: &str, agent: &str) -> anyhow::Result<Vec<SessionInfo>> {
        let request = self
            .http
            .get(self.admin(&format!("/agents/{agent}/sessions")))
            .bearer_auth(key);
        Ok(self
            .send::<Sessions>("list sessions", request)
            .await?
            .sessions)
    }

    /// Ends every session of an agent; how many were live.
    pub async fn end_sessions(&self, key: &str, agent: &str) -> anyhow::Result<usize> {
        let request = self
            .http
            .delete(self.admin(&format!("/agents/{agent}/sessions")))
            .bearer_auth(key);
        Ok(self.send::<Ended>("end sessions", request).await?.ended)
    }

    /// Ends one session.
    pub async fn end_session(&self, key: &str, session_id: &str) -> anyhow::Result<()> {
        let request = self
            .http
            .delete(self.admin(&format!("/sessions/{session_id}")))
            .bearer_auth(key);
        self.send::<Ended>("end a session", request).await.map(drop)
    }

    /// Totals over the whole emulator.
    pub async fn stats(&self) -> anyhow::Result<Stats> {
        self.send("read stats", self.http.get(self.admin("/stats")))
            .await
    }

    /// Creates or extends a secret set through `PUT /v1/secrets/{name}` and waits until it is
    /// ready.
    pub async fn create_secret_set(
        &self,
        key: &str,
        name: &str,
        secrets: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let items: Vec<Value> = secrets
            .iter()
            .map(|(k, v)| json!({"secretKey": k, "secretValue": v}))
            .collect();
        self.put_secret_set(key, name, json!({ "secrets": items }))
            .await?;
        self.wait_secret_set_ready(key, name, SECRET_READY_TIMEOUT)
            .await
    }

    /// Creates an image-pull secret set through `PUT /v1/secrets/{name}` and waits until it is
    /// ready.
    pub async fn create_image_pull_secret_set(
        &self,
        key: &str,
        name: &str,
        host: &str,
        credentials: &str,
    ) -> anyhow::Result<()> {
        let body = json!({"isImagePullSecret": true, "host": host, "secretValue": credentials});
        self.put_secret_set(key, name, body).await?;
        self.wait_secret_set_ready(key, name, SECRET_READY_TIMEOUT)
            .await
    }

    async fn put_secret_set(&self, key: &str, name: &str, body: Value) -> anyhow::Result<()> {
        let request = self
            .http
            .put(format!("{}/v1/secrets/{name}", self.root))
            .bearer_auth(key)
            .json(&body);
        self.send::<Value>("put the secret set", request)
            .await
            .map(drop)
    }

    /// Polls `GET /v1/secrets` until the set's status is `ready` (error on `failed` or
    /// timeout). The list, not `GET /v1/secrets/{name}`: in the seed profile a set's own answer
    /// lists field names only.
    pub async fn wait_secret_set_ready(
        &self,
        key: &str,
        name: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let request = self
                .http
                .get(format!("{}/v1/secrets", self.root))
                .bearer_auth(key);
            let list: Value = self.send("list the secret sets", request).await?;
            let set = list["sets"]
                .as_array()
                .and_then(|sets| sets.iter().find(|s| s["name"] == name))
                .cloned()
                .unwrap_or(Value::Null);
            match set["status"].as_str() {
                Some("ready") => return Ok(()),
                Some("failed") => anyhow::bail!(
                    "secret set {name} failed to provision: {}",
                    set["errorMessage"]
                ),
                _ if tokio::time::Instant::now() >= deadline => {
                    anyhow::bail!("secret set {name} was not ready after {timeout:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

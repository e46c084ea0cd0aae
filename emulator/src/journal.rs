//! The journal: every `/v1` request with its outcome, so tests can assert what a client did.

use std::collections::{BTreeMap, VecDeque};

use axum::http::Method;
use serde::{Deserialize, Serialize};

/// A bounded name for what a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// `GET /v1/agents`.
    ListAgents,
    /// `GET /v1/agents/{name}`.
    GetAgent,
    /// `POST /v1/agents`.
    CreateAgent,
    /// `POST /v1/agents/{name}`.
    UpdateAgent,
    /// `DELETE /v1/agents/{name}`.
    DeleteAgent,
    /// `POST /v1/public/{name}/start`.
    StartSession,
    /// `GET /v1/secrets`.
    ListSecretSets,
    /// `GET /v1/secrets/{set}`.
    GetSecretSet,
    /// `PUT /v1/secrets/{set}`.
    PutSecretSet,
    /// `DELETE /v1/secrets/{set}`.
    DeleteSecretSet,
    /// `DELETE /v1/secrets/{set}/{key}`.
    DeleteSecret,
    /// `GET /v1/regions`.
    ListRegions,
    /// Anything else under `/v1`.
    Unknown,
}

impl Operation {
    /// The name used in the journal and counts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ListAgents => "list_agents",
            Self::GetAgent => "get_agent",
            Self::CreateAgent => "create_agent",
            Self::UpdateAgent => "update_agent",
            Self::DeleteAgent => "delete_agent",
            Self::StartSession => "start_session",
            Self::ListSecretSets => "list_secret_sets",
            Self::GetSecretSet => "get_secret_set",
            Self::PutSecretSet => "put_secret_set",
            Self::DeleteSecretSet => "delete_secret_set",
            Self::DeleteSecret => "delete_secret",
            Self::ListRegions => "list_regions",
            Self::Unknown => "unknown",
        }
    }
}

/// Classifies a `/v1` request: its operation and the agent it concerns, if any.
pub fn classify(method: &Method, path: &str) -> (Operation, Option<String>) {
    let rest = path.strip_prefix("/v1").unwrap_or(path);
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').skip(1).collect();
    let agent = |s: &str| Some(s.to_owned());
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["agents"]) => (Operation::ListAgents, None),
        ("POST", ["agents"]) => (Operation::CreateAgent, None),
        ("GET", ["agents", name]) => (Operation::GetAgent, agent(name)),
        ("POST", ["agents", name]) => (Operation::UpdateAgent, agent(name)),
        ("DELETE", ["agents", name]) => (Operation::DeleteAgent, agent(name)),
        ("POST", ["public", name, "start"]) => (Operation::StartSession, agent(name)),
        ("GET", ["secrets"]) => (Operation::ListSecretSets, None),
        ("GET", ["secrets", _]) => (Operation::GetSecretSet, None),
        ("PUT", ["secrets", _]) => (Operation::PutSecretSet, None),
        ("DELETE", ["secrets", _]) => (Operation::DeleteSecretSet, None),
        ("DELETE", ["secrets", _, _]) => (Operation::DeleteSecret, None),
        ("GET", ["regions"]) => (Operation::ListRegions, None),
        _ => (Operation::Unknown, None),
    }
}

/// The secret set a `/v1/secrets/{set}[/{key}]` path names.
pub fn secret_set_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v1").unwrap_or(path);
    let mut segments = rest.trim_end_matches('/').split('/').skip(1);
    match (segments.next(), segments.next()) {
        (Some("secrets"), Some(set)) if !set.is_empty() => Some(set.to_owned()),
        _ => None,
    }
}

/// One recorded request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalEntry {
    /// Increasing sequence number, from 1 after each reset.
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Request path (no query string).
    pub path: String,
    /// Status answered; `null` when the connection was dropped by a fault.
    pub status: Option<u16>,
    /// When the request arrived (RFC 3339, milliseconds).
    pub timestamp: String,
    /// Bounded operation name (`get_agent`, `update_agent`, ...).
    pub operation: String,
    /// Agent named in the path, if any; for a create (accepted or refused), the one its body
    /// names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Kind of fault applied, if any (`status`, `delay`, `malformed`, `non-json`, `custom`,
    /// `drop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// An agent update that asked for `forceRedeploy: true` (and was answered).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_redeploy: bool,
    /// Secret set named in the path, if any (`/secrets/{set}`, `/secrets/{set}/{key}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_set: Option<String>,
    /// Strict mode: how the request or the emulator's answer broke the contract
    /// (`request: body.secretSet: null is not allowed ...`, `response: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violation: Option<String>,
}

/// Filters of `GET /_emulator/journal`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalFilter {
    /// Only entries with `seq` greater than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Only this operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Only requests about this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Only requests about this secret set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_set: Option<String>,
    /// `true`: only entries with a contract violation (strict mode).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub violations: bool,
    /// At most this many entries (the oldest matching first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// Request counts since the last reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Every request recorded.
    pub total: u64,
    /// By operation name.
    pub by_operation: BTreeMap<String, u64>,
    /// By status code as a string (`"200"`); `"dropped"` for dropped connections.
    pub by_status: BTreeMap<String, u64>,
    /// Requests with a contract violation (strict mode), evicted entries included.
    #[serde(default)]
    pub violations: u64,
}

impl Counts {
    /// Requests of one operation (0 when none).
    pub fn operation(&self, name: &str) -> u64 {
        self.by_operation.get(name).copied().unwrap_or(0)
    }

    /// Requests answered with one status (0 when none).
    pub fn status(&self, status: u16) -> u64 {
        self.by_status
            .get(&status.to_string())
            .copied()
            .unwrap_or(0)
    }
}

/// `Ok` when strict mode found no violation (`count`, evicted entries included), else an error
/// listing the `entries` kept.
pub fn violation_report(count: u64, entries: &[JournalEntry]) -> anyhow::Result<()> {
    if count == 0 {
        return Ok(());
    }
    let listed: Vec<String> = entries
        .iter()
        .map(|e| {
            let status = e
                .status
                .map_or_else(|| "dropped".to_owned(), |s| s.to_string());
            let violation = e.violation.as_deref().unwrap_or_default();
            format!("  {} {} -> {status}: {violation}", e.method, e.path)
        })
        .collect();
    anyhow::bail!(
        "the emulator journaled {count} contract violation(s):\n{}",
        listed.join("\n")
    )
}

/// A ring buffer of entries plus running counts (which survive eviction).
#[derive(Debug)]
pub struct Journal {
    capacity: usize,
    next_seq: u64,
    entries: VecDeque<JournalEntry>,
    by_operation: BTreeMap<Operation, u64>,
    by_status: BTreeMap<Option<u16>, u64>,
    total: u64,
    violations: u64,
}

impl Journal {
    /// An empty journal keeping at most `capacity` entries (counts are unbounded).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            next_seq: 1,
            entries: VecDeque::new(),
            by_operation: BTreeMap::new(),
            by_status: BTreeMap::new(),
            total: 0,
            violations: 0,
        }
    }

    /// Records one request; `seq` and `operation` of `entry` are filled in here.
    pub fn record(&mut self, operation: Operation, mut entry: JournalEntry) {
        if self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        entry.seq = self.next_seq;
        entry.operation = operation.as_str().to_owned();
        self.next_seq += 1;
        self.total += 1;
        *self.by_operation.entry(operation).or_default() += 1;
        *self.by_status.entry(entry.status).or_default() += 1;
        if entry.violation.is_some() {
            self.violations += 1;
        }
        self.entries.push_back(entry);
    }

    /// Matching entries, oldest first.
    pub fn query(&self, filter: &JournalFilter) -> Vec<JournalEntry> {
        self.entries
            .iter()
            .filter(|e| filter.since.is_none_or(|s| e.seq > s))
            .filter(|e| filter.operation.as_ref().is_none_or(|o| *o == e.operation))
            .filter(|e| {
                filter
                    .agent
                    .as_ref()
                    .is_none_or(|a| e.agent.as_ref() == Some(a))
            })
            .filter(|e| {
                filter
                    .secret_set
                    .as_ref()
                    .is_none_or(|s| e.secret_set.as_ref() == Some(s))
            })
            .filter(|e| !filter.violations || e.violation.is_some())
            .take(filter.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    /// Counts since the last reset.
    pub fn counts(&self) -> Counts {
        Counts {
            total: self.total,
            by_operation: self
                .by_operation
                .iter()
                .map(|(op, n)| (op.as_str().to_owned(), *n))
                .collect(),
            by_status: self
                .by_status
                .iter()
                .map(|(status, n)| {
                    let key = status.map_or_else(|| "dropped".to_owned(), |s| s.to_string());
                    (key, *n)
                })
                .collect(),
            violations: self.violations,
        }
    }

    /// Number of entries kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Forgets everything and restarts `seq` at 1.
    pub fn clear(&mut self) {
        *self = Self::new(self.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(
            classify(&Method::GET, "/v1/agents/bot"),
            (Operation::GetAgent, Some("bot".into()))
        );
        assert_eq!(
            classify(&Method::GET, "/v1/agents/"),
            (Operation::ListAgents, None)
        );
        assert_eq!(
            classify(&Method::POST, "/v1/public/bot/start"),
            (Operation::StartSession, Some("bot".into()))
        );
        assert_eq!(
            classify(&Method::DELETE, "/v1/secrets/s/K").0,
            Operation::DeleteSecret
        );
        assert_eq!(
            classify(&Method::PATCH, "/v1/agents/bot").0,
            Operation::Unknown
        );
    }

    #[test]
    fn secret_set_paths_name_their_set() {
        assert_eq!(secret_set_of("/v1/secrets/keys").as_deref(), Some("keys"));
        assert_eq!(
            secret_set_of("/v1/secrets/keys/API_KEY").as_deref(),
            Some("keys")
        );
        assert_eq!(secret_set_of("/v1/secrets"), None);
        assert_eq!(secret_set_of("/v1/agents/bot"), None);
    }

    #[test]
    fn ring_buffer_and_counts() {
        let mut j = Journal::new(2);
        for (i, status) in [Some(200), Some(404), None].into_iter().enumerate() {
            j.record(
                Operation::GetAgent,
                JournalEntry {
                    seq: 0,
                    method: "GET".into(),
                    path: "/v1/agents/bot".into(),
                    status,
                    timestamp: format!("t{i}"),
                    operation: String::new(),
                    agent: Some("bot".into()),
                    fault: None,
                    force_redeploy: false,
                    secret_set: None,
                    violation: (i != 1).then(|| "request: body.x: unknown field".into()),
                },
            );
        }
        assert_eq!(j.len(), 2);
        // The first entry with a violation is evicted; its count stays.
        assert_eq!(j.counts().violations, 2);
        let violations = j.query(&JournalFilter {
            violations: true,
            ..Default::default()
        });
        assert_eq!(violations.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
        let all = j.query(&JournalFilter::default());
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
        let since = j.query(&JournalFilter {
            since: Some(2),
            ..Default::default()
        });
        assert_eq!(since.len(), 1);
        assert!(
            j.query(&JournalFilter {
                agent: Some("x".into()),
                ..Default::default()
            })
            .is_empty()
        );
        let c = j.counts();
        assert_eq!(
            (c.total, c.operation("get_agent"), c.status(404)),
            (3, 3, 1)
        );
        assert_eq!(c.by_status["dropped"], 1);
        j.clear();
        assert_eq!(j.counts().total, 0);
    }
}

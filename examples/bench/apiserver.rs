//! kube-apiserver's request counts (from its `/metrics`), and the requests of a phase
//! attributed to the operator.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::stats::round1;

/// Verb, group, resource, subresource.
pub type RequestKey = (String, String, String, String);

/// `apiserver_request_total` summed by verb, group, resource and subresource.
pub type RequestCounts = BTreeMap<RequestKey, f64>;

/// kube-apiserver's request counts and the sums and counts of its request latencies.
#[derive(Default)]
pub struct ApiserverRequests {
    total: RequestCounts,
    latency_sum: RequestCounts,
    latency_count: RequestCounts,
}

pub async fn apiserver_requests(client: &kube::Client) -> anyhow::Result<ApiserverRequests> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = client
        .request_text(req)
        .await
        .context("failed to read kube-apiserver /metrics")?;
    let mut all = ApiserverRequests::default();
    for line in text.lines() {
        let (out, rest) = if let Some(rest) = line.strip_prefix("apiserver_request_total{") {
            (&mut all.total, rest)
        } else if let Some(rest) = line.strip_prefix("apiserver_request_duration_seconds_sum{") {
            (&mut all.latency_sum, rest)
        } else if let Some(rest) = line.strip_prefix("apiserver_request_duration_seconds_count{") {
            (&mut all.latency_count, rest)
        } else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let labels = parse_labels(labels);
        let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        *out.entry((
            get("verb"),
            get("group"),
            get("resource"),
            get("subresource"),
        ))
        .or_default() += value;
    }
    Ok(all)
}

/// `a="x",b="y"` (values may hold escaped quotes).
fn parse_labels(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_string(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

const WRITE_VERBS: [&str; 5] = ["POST", "PUT", "PATCH", "APPLY", "DELETE"];

/// `VERB resource[.group][/subresource]`.
fn request_name(k: &RequestKey) -> String {
    let (verb, group, resource, sub) = k;
    let mut s = format!("{verb} {resource}");
    if !group.is_empty() {
        s.push('.');
        s.push_str(group);
    }
    if !sub.is_empty() {
        s.push('/');
        s.push_str(sub);
    }
    s
}

/// The requests of a phase attributed to the operator: the counts after minus before, minus the
/// bench's own (`own`), without the control plane's own lease renewals (the operator runs without
/// leader election) and without the bench's `/metrics` reads (no resource).
pub struct PhaseRequests {
    pub writes: BTreeMap<String, u64>,
    pub reads: BTreeMap<String, u64>,
    pub excluded: BTreeMap<String, u64>,
    /// Mean server-side latency (ms) of each kind of request of the phase (everyone's).
    latency_ms: BTreeMap<String, f64>,
}

impl PhaseRequests {
    pub fn new(before: &ApiserverRequests, after: &ApiserverRequests, own: &RequestCounts) -> Self {
        let mut writes = BTreeMap::new();
        let mut reads = BTreeMap::new();
        let mut excluded = BTreeMap::new();
        let mut latency_ms = BTreeMap::new();
        let delta = |m: &RequestCounts, m0: &RequestCounts, k: &RequestKey| {
            m.get(k).copied().unwrap_or(0.0) - m0.get(k).copied().unwrap_or(0.0)
        };
        for k in after.total.keys() {
            let all = delta(&after.total, &before.total, k);
            let n = (all - own.get(k).copied().unwrap_or(0.0)).max(0.0).round() as u64;
            if n == 0 {
                continue;
            }
            let name = request_name(k);
            if k.2 == "leases" || k.2.is_empty() {
                excluded.insert(name, n);
                continue;
            } else if WRITE_VERBS.contains(&k.0.as_str()) {
                writes.insert(name.clone(), n);
            } else if k.0 != "WATCH" {
                reads.insert(name.clone(), n);
            } else {
                continue;
            }
            let count = delta(&after.latency_count, &before.latency_count, k);
            if count > 0.0 {
                let sum = delta(&after.latency_sum, &before.latency_sum, k);
                latency_ms.insert(name, round1(sum / count * 1000.0));
            }
        }
        PhaseRequests {
            writes,
            reads,
            excluded,
            latency_ms,
        }
    }

    pub fn total_writes(&self) -> u64 {
        self.writes.values().sum()
    }

    pub fn writes_matching(&self, f: impl Fn(&str) -> bool) -> u64 {
        self.writes
            .iter()
            .filter(|(k, _)| f(k))
            .map(|(_, v)| v)
            .sum()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "writes": self.writes,
            "reads": self.reads,
            "excluded": self.excluded,
            "meanServerLatencyMs": self.latency_ms,
        })
    }
}

/// A request of the bench itself on PipecatAgents (`sub`: the subresource, or empty).
pub fn own_key(verb: &str, sub: &str) -> RequestKey {
    (
        verb.into(),
        "pipecat.daily.co".into(),
        "pipecatagents".into(),
        sub.into(),
    )
}

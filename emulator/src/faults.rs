//! Injected faults: the next N matching `/v1` requests get an error, a delay, a broken body or
//! a dropped connection.

use std::time::Duration;

use axum::http::Method;
use serde::{Deserialize, Serialize};

use super::pattern::Pattern;

/// A body that replaces the normal answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum FaultBody {
    /// `"malformed"`: JSON cut in the middle, with a JSON content type. With a 2xx (or no)
    /// status the request is carried out and its real answer is truncated.
    Malformed,
    /// `"non-json"`: an HTML error page from a proxy (status 502 unless given).
    NonJson,
    /// Any other string, sent as is (JSON content type when it parses as JSON).
    Custom(String),
}

impl From<String> for FaultBody {
    fn from(s: String) -> Self {
        match s.as_str() {
            "malformed" => Self::Malformed,
            "non-json" => Self::NonJson,
            _ => Self::Custom(s),
        }
    }
}

impl From<FaultBody> for String {
    fn from(b: FaultBody) -> Self {
        match b {
            FaultBody::Malformed => "malformed".to_owned(),
            FaultBody::NonJson => "non-json".to_owned(),
            FaultBody::Custom(s) => s,
        }
    }
}

fn default_path() -> String {
    "/v1/**".to_owned()
}

fn one() -> u32 {
    1
}

/// A fault to inject (`POST /_emulator/faults`).
///
/// What happens to a matching request: `drop` closes the connection without an answer (after
/// `delayMs` if given); otherwise a `status` and/or `body` answers instead of the API (status
/// 503 unless given; 200 for `"malformed"`, 502 for `"non-json"`); a fault with only `delayMs`
/// sleeps and then lets the API answer normally; a fault with nothing answers 503.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// Only this HTTP method (any when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request path pattern: a glob (`*` within a segment, `**` across) or a regex starting
    /// with `^`. Default `/v1/**`.
    #[serde(default = "default_path")]
    pub path: String,
    /// How many matching requests it applies to (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// Status to answer with the API's error body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `Retry-After` header value, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Sleep this long before answering (or dropping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Replacement body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<FaultBody>,
    /// Close the TCP connection without any answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drop: bool,
}

impl Fault {
    /// A fault on `path` for one request; with nothing else set it answers 503.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            method: None,
            path: path.into(),
            count: 1,
            status: None,
            retry_after: None,
            delay_ms: None,
            body: None,
            drop: false,
        }
    }

    /// Answer `status` with the API's error body.
    pub fn status(path: impl Into<String>, status: u16) -> Self {
        Self {
            status: Some(status),
            ..Self::new(path)
        }
    }

    /// Close the connection without an answer.
    pub fn drop_connection(path: impl Into<String>) -> Self {
        Self {
            drop: true,
            ..Self::new(path)
        }
    }

    /// Sleep, then answer normally.
    pub fn delay(path: impl Into<String>, delay: Duration) -> Self {
        Self::new(path).with_delay(delay)
    }

    /// Replace the body.
    pub fn body(path: impl Into<String>, body: FaultBody) -> Self {
        Self {
            body: Some(body),
            ..Self::new(path)
        }
    }

    /// Only requests with this method.
    pub fn with_method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Apply to the next `count` matching requests.
    pub fn with_count(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    /// Add a `Retry-After` header.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Sleep before answering.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay_ms = Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Answer with this status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// What to do with a matching request.
    pub fn action(&self) -> Action {
        if self.drop {
            return Action::Drop;
        }
        match (&self.body, self.status) {
            (Some(FaultBody::Malformed), Some(status)) if status >= 400 => Action::Respond {
                status,
                body: Some(FaultBody::Malformed),
            },
            (Some(FaultBody::Malformed), status) => Action::Truncate { status },
            (Some(FaultBody::NonJson), status) => Action::Respond {
                status: status.unwrap_or(502),
                body: Some(FaultBody::NonJson),
            },
            (Some(body), status) => Action::Respond {
                status: status.unwrap_or(503),
                body: Some(body.clone()),
            },
            (None, Some(status)) => Action::Respond { status, body: None },
            (None, None) if self.delay_ms.is_some() => Action::PassThrough,
            (None, None) => Action::Respond {
                status: 503,
                body: None,
            },
        }
    }

    /// Short label for the journal.
    pub fn kind(&self) -> &'static str {
        match self.action() {
            Action::Drop => "drop",
            Action::PassThrough => "delay",
            Action::Truncate { .. } => "malformed",
            Action::Respond { body: None, .. } => "status",
            Action::Respond {
                body: Some(FaultBody::Malformed),
                ..
            } => "malformed",
            Action::Respond {
                body: Some(FaultBody::NonJson),
                ..
            } => "non-json",
            Action::Respond {
                body: Some(FaultBody::Custom(_)),
                ..
            } => "custom",
        }
    }
}

/// What a fault does to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Close the connection.
    Drop,
    /// Let the API answer (after the delay).
    PassThrough,
    /// Let the API answer, then cut its body (and replace its status when given).
    Truncate {
        /// Replacement status.
        status: Option<u16>,
    },
    /// Answer instead of the API.
    Respond {
        /// Status.
        status: u16,
        /// Body; the API's error body when `None`.
        body: Option<FaultBody>,
    },
}

/// An active fault as listed by `GET /_emulator/faults`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveFault {
    /// Id of the fault.
    pub id: u64,
    /// Matching requests it still applies to.
    pub remaining: u32,
    /// The fault as injected.
    #[serde(flatten)]
    pub fault: Fault,
}

struct Entry {
    id: u64,
    remaining: u32,
    method: Option<Method>,
    path: Pattern,
    fault: Fault,
}

/// The active faults, in injection order (the first match wins).
#[derive(Default)]
pub struct Faults {
    next_id: u64,
    entries: Vec<Entry>,
}

impl Faults {
    /// Checks and adds a fault.
    pub fn add(&mut self, fault: Fault) -> Result<ActiveFault, String> {
        if fault.count == 0 {
            return Err("count must be at least 1".to_owned());
        }
        if let Some(status) = fault.status
            && !(100..=599).contains(&status)
        {
            return Err(format!("status {status} is not an HTTP status (100..599)"));
        }
        let method = match &fault.method {
            Some(m) => Some(
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("method {m:?} is not an HTTP method"))?,
            ),
            None => None,
        };
        let path = Pattern::path(&fault.path).map_err(|e| e.to_string())?;
        self.next_id += 1;
        let active = ActiveFault {
            id: self.next_id,
            remaining: fault.count,
            fault: fault.clone(),
        };
        self.entries.push(Entry {
            id: self.next_id,
            remaining: fault.count,
            method,
            path,
            fault,
        });
        Ok(active)
    }

    /// Takes one use of the first fault matching the request.
    pub fn take(&mut self, method: &Method, path: &str) -> Option<Fault> {
        let i = self
            .entries
            .iter()
            .position(|e| e.method.as_ref().is_none_or(|m| m == method) && e.path.is_match(path))?;
        let entry = &mut self.entries[i];
        entry.remaining -= 1;
        let fault = entry.fault.clone();
        if entry.remaining == 0 {
            self.entries.remove(i);
        }
        Some(fault)
    }

    /// The active faults.
    pub fn list(&self) -> Vec<ActiveFault> {
        self.entries
            .iter()
            .map(|e| ActiveFault {
                id: e.id,
                remaining: e.remaining,
                fault: e.fault.clone(),
            })
            .collect()
    }

    /// Number of active faults.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Removes every fault; how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.entries.len();
        self.entries.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_method_and_order() {
        let mut f = Faults::default();
        f.add(
            Fault::status("/v1/agents/*", 503)
                .with_count(2)
                .with_method("post"),
        )
        .unwrap();
        f.add(Fault::drop_connection("/v1/**")).unwrap();
        assert_eq!(
            f.take(&Method::POST, "/v1/agents/a").unwrap().status,
            Some(503)
        );
        assert!(
            f.take(&Method::GET, "/v1/agents/a").unwrap().drop,
            "method filter"
        );
        assert_eq!(
            f.take(&Method::POST, "/v1/agents/a").unwrap().status,
            Some(503)
        );
        assert!(
            f.take(&Method::POST, "/v1/agents/a").is_none(),
            "count respected"
        );
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn rejects_bad_faults() {
        let mut f = Faults::default();
        assert!(f.add(Fault::status("/v1/**", 42)).is_err());
        assert!(f.add(Fault::new("/v1/**").with_count(0)).is_err());
        assert!(f.add(Fault::new("^(")).is_err());
    }

    #[test]
    fn actions() {
        assert_eq!(
            Fault::new("/").action(),
            Action::Respond {
                status: 503,
                body: None
            }
        );
        assert_eq!(
            Fault::delay("/", Duration::from_millis(5)).action(),
            Action::PassThrough
        );
        assert_eq!(
            Fault::body("/", FaultBody::Malformed).action(),
            Action::Truncate { status: None }
        );
        assert_eq!(Fault::body("/", FaultBody::NonJson).kind(), "non-json");
        let json: Fault = serde_json::from_str(
            r#"{"path": "/v1/agents/*", "count": 3, "status": 429, "retryAfter": 2, "body": "non-json"}"#,
        )
        .unwrap();
        assert_eq!(json.body, Some(FaultBody::NonJson));
        assert_eq!((json.count, json.retry_after), (3, Some(2)));
    }
}

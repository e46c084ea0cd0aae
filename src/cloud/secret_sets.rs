//! Secret sets: the wire types and one client method per `/secrets` endpoint.
//!
//! A `PUT` carries secret values. They live in [`SecretValue`], whose `Debug` never shows them,
//! and the client removes them (as sent and JSON-escaped) from every text of the answer before
//! it can become an error message: a server that echoes the body back never brings a value
//! into a log line, an event or a status.

use std::fmt;

use reqwest::Method;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::client::{Redactor, encode};
use super::{ApiKey, Client, Error, Operation};

/// A secret value. Serialized as is (the request body); `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(value.into())
    }

    /// The value itself, for a request body or a digest only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([redacted])")
    }
}

impl Serialize for SecretValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// One environment variable of a secret set.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretEntry {
    /// The variable's name.
    pub secret_key: String,
    /// Its value.
    pub secret_value: SecretValue,
}

/// The body of `PUT /secrets/{set}`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum PutSecretSetRequest {
    /// An environment set: the given keys are created or replaced (others stay).
    Env {
        /// The variables.
        secrets: Vec<SecretEntry>,
        /// Region (create only).
        #[serde(skip_serializing_if = "Option::is_none")]
        region: Option<String>,
    },
    /// An image-pull set: registry credentials.
    #[serde(rename_all = "camelCase")]
    ImagePull {
        /// Always true.
        is_image_pull_secret: bool,
        /// Registry host, e.g. `https://index.docker.io/v1/`.
        host: String,
        /// Base64 of `username:password`, as `pcc secrets image-pull-secret` sends it.
        secret_value: SecretValue,
        /// Region (create only).
        #[serde(skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        /// Not sent: the username, password and any other form of the credentials, removed
        /// from the answer's texts like the value itself.
        #[serde(skip)]
        parts: Vec<SecretValue>,
    },
}

impl PutSecretSetRequest {
    /// Every secret value the body carries.
    pub fn values(&self) -> Vec<&str> {
        match self {
            PutSecretSetRequest::Env { secrets, .. } => {
                secrets.iter().map(|e| e.secret_value.expose()).collect()
            }
            PutSecretSetRequest::ImagePull {
                secret_value,
                parts,
                ..
            } => std::iter::once(secret_value)
                .chain(parts)
                .map(SecretValue::expose)
                .collect(),
        }
    }
}

/// A secret set as `GET /secrets` (and the answer to `PUT`) describes it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretSetSummary {
    /// Set name.
    #[serde(default)]
    pub name: String,
    /// `secret` or `imagePullSecret`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `pending`, `ready` or `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Why provisioning failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// `GET /secrets`.
#[derive(Deserialize, Clone, Debug, Default)]
struct SecretSetList {
    #[serde(default)]
    sets: Vec<SecretSetSummary>,
}

/// `GET /secrets/{set}`: the key names, and the set's description when the answer has one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretSetDetail {
    /// The set, when the answer describes it (name, type, status); `None` when it only lists
    /// keys.
    pub summary: Option<SecretSetSummary>,
    /// Key names (never values).
    pub keys: Vec<String>,
}

impl SecretSetDetail {
    /// Reads either form of the answer: `{name, type, status, ..., secrets: [{fieldName}]}`, or
    /// a bare list of `{fieldName}`.
    pub fn from_value(value: Value) -> Result<Self, Error> {
        fn names(items: &[Value]) -> Vec<String> {
            let mut keys: Vec<String> = items
                .iter()
                .filter_map(|i| match i {
                    Value::String(s) => Some(s.clone()),
                    other => other["fieldName"].as_str().map(str::to_owned),
                })
                .collect();
            keys.sort();
            keys.dedup();
            keys
        }
        match value {
            Value::Array(items) => Ok(SecretSetDetail {
                summary: None,
                keys: names(&items),
            }),
            Value::Object(ref map) => {
                let keys = match map.get("secrets").or_else(|| map.get("fields")) {
                    Some(Value::Array(items)) => names(items),
                    _ => Vec::new(),
                };
                let summary: SecretSetSummary =
                    serde_json::from_value(value.clone()).unwrap_or_default();
                Ok(SecretSetDetail {
                    summary: summary.status.is_some().then_some(summary),
                    keys,
                })
            }
            _ => Err(Error::Malformed {
                message: "the secret set answer is neither an object nor a list".into(),
            }),
        }
    }
}

/// `text` (e.g. a set's `errorMessage`) without any of `values`: each is replaced as written
/// and JSON-escaped, and a text holding a value too short to replace safely is withheld whole.
pub fn redact_values<'v>(text: String, values: impl IntoIterator<Item = &'v str>) -> String {
    let no_key = ApiKey::new("");
    Redactor::with_values(&no_key, values).redact(text)
}

impl Client {
    /// `GET /secrets`.
    pub async fn list_secret_sets(&self, key: &ApiKey) -> Result<Vec<SecretSetSummary>, Error> {
        let list: SecretSetList = self
            .call_redacting(
                Operation::ListSecretSets,
                Method::GET,
                "/secrets",
                &Redactor::key(key),
                None::<&()>,
            )
            .await?;
        Ok(list.sets)
    }

    /// `GET /secrets/{set}`: key names only.
    pub async fn get_secret_set(&self, key: &ApiKey, set: &str) -> Result<SecretSetDetail, Error> {
        let path = format!("/secrets/{}", encode(set));
        let value: Value = self
            .call_redacting(
                Operation::GetSecretSet,
                Method::GET,
                &path,
                &Redactor::key(key),
                None::<&()>,
            )
            .await?;
        SecretSetDetail::from_value(value)
    }

    /// `PUT /secrets/{set}`: creates the set or replaces the given values; Pipecat Cloud
    /// provisions it asynchronously (`pending`, then `ready` or `failed`), and answers 409
    /// while a previous change is still pending. No text of the answer quotes a value.
    pub async fn put_secret_set(
        &self,
        key: &ApiKey,
        set: &str,
        req: &PutSecretSetRequest,
    ) -> Result<SecretSetSummary, Error> {
        let path = format!("/secrets/{}", encode(set));
        let redactor = Redactor::with_values(key, req.values());
        let value: Value = self
            .call_redacting(
                Operation::PutSecretSet,
                Method::PUT,
                &path,
                &redactor,
                Some(req),
            )
            .await?;
        // The answer is informative only (any 2xx is accepted): the contract's is
        // `202 {status: "OK", region}`, which says the change was accepted, not the set's state
        // (pending, ready, failed): the next read tells that.
        let mut summary: SecretSetSummary = serde_json::from_value(value).unwrap_or_default();
        if summary.name.is_empty() {
            summary.name = set.to_owned();
        }
        if summary.status.as_deref() == Some("OK") {
            summary.status = None;
        }
        Ok(summary)
    }

    /// `DELETE /secrets/{set}`. A missing set is an [`Error::NotFound`].
    pub async fn delete_secret_set(&self, key: &ApiKey, set: &str) -> Result<(), Error> {
        let path = format!("/secrets/{}", encode(set));
        let _: Value = self
            .call_redacting(
                Operation::DeleteSecretSet,
                Method::DELETE,
                &path,
                &Redactor::key(key),
                None::<&()>,
            )
            .await?;
        Ok(())
    }

    /// `DELETE /secrets/{set}/{key}`: removes one variable of an environment set. A missing
    /// key (or set) is an [`Error::NotFound`].
    pub async fn delete_secret(
        &self,
        key: &ApiKey,
        set: &str,
        secret_key: &str,
    ) -> Result<(), Error> {
        let path = format!("/secrets/{}/{}", encode(set), encode(secret_key));
        let _: Value = self
            .call_redacting(
                Operation::DeleteSecret,
                Method::DELETE,
                &path,
                &Redactor::key(key),
                None::<&()>,
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_sent_but_never_debug_printed() {
        let req = PutSecretSetRequest::Env {
            secrets: vec![SecretEntry {
                secret_key: "OPENAI_API_KEY".into(),
                secret_value: SecretValue::new("sk-live-VALUE-123"),
            }],
            region: None,
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({"secrets": [{"secretKey": "OPENAI_API_KEY", "secretValue": "sk-live-VALUE-123"}]})
        );
        assert!(!format!("{req:?}").contains("VALUE"), "{req:?}");
        let pull = PutSecretSetRequest::ImagePull {
            is_image_pull_secret: true,
            host: "ghcr.io".into(),
            secret_value: SecretValue::new("dXNlcjpwYXNz"),
            region: Some("eu-central".into()),
            parts: vec![SecretValue::new("pass")],
        };
        assert_eq!(pull.values(), ["dXNlcjpwYXNz", "pass"]);
        assert_eq!(
            serde_json::to_value(&pull).unwrap(),
            json!({"isImagePullSecret": true, "host": "ghcr.io", "secretValue": "dXNlcjpwYXNz", "region": "eu-central"})
        );
        assert!(!format!("{pull:?}").contains("dXNlcjpwYXNz"));
    }

    #[test]
    fn the_redactor_removes_values_as_sent_and_escaped() {
        let key = ApiKey::new("pk_test_KEY_123456");
        let r = Redactor::with_values(&key, ["long-value-42", "q\"uote\\d", "ab"]);
        assert_eq!(
            r.redact("bad value long-value-42 for pk_test_KEY_123456".into()),
            "bad value [redacted] for [redacted]"
        );
        // A JSON echo escapes quotes and backslashes.
        for echoed in [
            r#"{"error":"invalid secretValue q\"uote\\d"}"#,
            r#"{"error":"bad body {\"secretValue\": \"q\\\"uote\\\\d\"}"}"#,
        ] {
            let text = r.redact(echoed.into());
            assert!(!text.contains("uote"), "{text}");
        }
        // A value too short to replace safely withholds the whole text.
        assert_eq!(
            r.redact("value ab rejected".into()),
            "[withheld: the text may quote a secret value]"
        );
        assert_eq!(r.redact("nothing here".into()), "nothing here");
        assert_eq!(
            r.redact(r#"{"error":"bad value \"ab\""}"#.into()),
            "[withheld: the text may quote a secret value]"
        );
        // Inside a longer word it quotes nothing: the text stays readable.
        assert_eq!(r.redact("about the set".into()), "about the set");
    }

    #[test]
    fn detail_answers_in_either_form() {
        let full = SecretSetDetail::from_value(json!({
            "name": "keys", "type": "secret", "region": "us-west", "status": "ready",
            "errorMessage": null, "secrets": [{"fieldName": "B"}, {"fieldName": "A"}]
        }))
        .unwrap();
        assert_eq!(full.keys, ["A", "B"]);
        assert_eq!(full.summary.unwrap().status.as_deref(), Some("ready"));
        let bare = SecretSetDetail::from_value(json!([{"fieldName": "X"}])).unwrap();
        assert_eq!(bare.keys, ["X"]);
        assert!(bare.summary.is_none());
        assert!(SecretSetDetail::from_value(json!("nope")).is_err());
    }
}

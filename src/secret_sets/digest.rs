//! `status.valuesDigest`: how the operator knows a Secret changed without reading values back
//! from Pipecat Cloud (the API lists key names only).
//!
//! The digest is HMAC-SHA256 of the values, keyed with 32 random bytes that never leave the
//! operator's own namespace: the Secret [`KEY_SECRET`], created there on first use. Whoever
//! reads the status (or a backup of it) sees a keyed hash: without the key, guessing a value,
//! even a short or common one, cannot be checked against it, unlike a plain hash. Deleting
//! that Secret only makes the next operator start send every set's values once more.

use std::fmt;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use super::desired::DesiredValues;
use super::error::Error;

/// Name of the Secret holding the digest key, in the operator's namespace.
pub const KEY_SECRET: &str = "pipecat-operator-digest-key";
/// Its data key.
const KEY_FIELD: &str = "key";
/// Length of a generated key.
const KEY_LEN: usize = 32;

/// The HMAC key. `Debug` never shows it.
#[derive(Clone)]
pub struct DigestKey(hmac::Key);

impl fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DigestKey([redacted])")
    }
}

impl DigestKey {
    /// A key from raw bytes.
    pub fn new(bytes: &[u8]) -> Self {
        DigestKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }
}

/// The digest of the values a set must hold: hex HMAC-SHA256 over an unambiguous encoding
/// (every field length-prefixed, the kind first), so two different sets of values never
/// encode alike.
pub fn digest(key: &DigestKey, values: &DesiredValues) -> String {
    let mut ctx = hmac::Context::with_key(&key.0);
    let mut field = |bytes: &[u8]| {
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(bytes);
    };
    match values {
        DesiredValues::Env(entries) => {
            field(b"env");
            for (name, value) in entries {
                field(name.as_bytes());
                field(value.expose().as_bytes());
            }
        }
        DesiredValues::ImagePull {
            host, credentials, ..
        } => {
            field(b"image-pull");
            field(host.as_bytes());
            field(credentials.expose().as_bytes());
        }
    }
    let tag = ctx.sign();
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The digest key: read from [`KEY_SECRET`] in `namespace`, created there (32 random bytes)
/// when absent. Two operators racing to create it both end up with the one that was stored.
pub async fn load_or_create(client: &kube::Client, namespace: &str) -> Result<DigestKey, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for _ in 0..3 {
        let existing = api
            .get_opt(KEY_SECRET)
            .await
            .map_err(|source| Error::Kube {
                action: "read the digest key Secret",
                source,
            })?;
        if let Some(secret) = existing {
            let bytes = secret
                .data
                .as_ref()
                .and_then(|d| d.get(KEY_FIELD))
                .map(|b| b.0.clone())
                .filter(|b| b.len() >= 16)
                .ok_or_else(|| {
                    Error::invalid(
                        "DigestKeyInvalid",
                        format!(
                            "Secret {namespace}/{KEY_SECRET} has no key {KEY_FIELD:?} of at least 16 bytes: delete it and the operator creates a new one"
                        ),
                    )
                })?;
            return Ok(DigestKey::new(&bytes));
        }
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new().fill(&mut bytes).map_err(|_| {
            Error::invalid(
                "DigestKeyInvalid",
                "no system randomness for the digest key",
            )
        })?;
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(KEY_SECRET.into()),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_string(),
                        "pipecat-operator".to_string(),
                    )]
                    .into(),
                ),
                annotations: Some(
                    [(
                        "pipecat.daily.co/purpose".to_string(),
                        "keys the digests of PipecatSecretSet values (status.valuesDigest)"
                            .to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some([(KEY_FIELD.to_string(), ByteString(bytes.to_vec()))].into()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                tracing::info!(
                    namespace,
                    secret = KEY_SECRET,
                    "created the secret set digest key"
                );
                return Ok(DigestKey::new(&bytes));
            }
            // Another operator created it first: read theirs.
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(source) => {
                return Err(Error::Kube {
                    action: "create the digest key Secret",
                    source,
                });
            }
        }
    }
    Err(Error::invalid(
        "DigestKeyInvalid",
        format!("could not read or create Secret {namespace}/{KEY_SECRET}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::secret_sets::SecretValue;

    fn env(pairs: &[(&str, &str)]) -> DesiredValues {
        DesiredValues::Env(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), SecretValue::new(*v)))
                .collect(),
        )
    }

    #[test]
    fn the_digest_changes_with_any_value_name_or_key() {
        let key = DigestKey::new(b"0123456789abcdef0123456789abcdef");
        let base = digest(&key, &env(&[("A", "1"), ("B", "2")]));
        assert_eq!(base.len(), 64);
        assert_eq!(
            base,
            digest(&key, &env(&[("B", "2"), ("A", "1")])),
            "order-free"
        );
        for other in [
            env(&[("A", "1"), ("B", "3")]),
            env(&[("A", "1")]),
            env(&[("A", "1"), ("C", "2")]),
            // Length prefixes: moving a byte from one field to the next is a change.
            env(&[("A", "1"), ("B2", "")]),
        ] {
            assert_ne!(base, digest(&key, &other), "{other:?}");
        }
        let other_key = DigestKey::new(b"another key, another digest.....");
        assert_ne!(base, digest(&other_key, &env(&[("A", "1"), ("B", "2")])));
        let pull = |host: &str, c: &str| DesiredValues::ImagePull {
            host: host.into(),
            credentials: SecretValue::new(c),
            parts: vec![],
        };
        assert_ne!(
            digest(&key, &pull("ghcr.io", "x")),
            digest(&key, &pull("docker.io", "x"))
        );
        assert_ne!(
            digest(&key, &pull("ghcr.io", "x")),
            digest(&key, &pull("ghcr.io", "y"))
        );
    }

    #[test]
    fn the_digest_is_not_a_plain_hash_of_the_values() {
        // Without the key, hashing a guess does not reproduce the digest.
        let key = DigestKey::new(b"0123456789abcdef0123456789abcdef");
        let d = digest(&key, &env(&[("PASSWORD", "hunter2")]));
        let plain = ring::digest::digest(&ring::digest::SHA256, b"hunter2");
        let plain: String = plain.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_ne!(d, plain);
        assert!(!format!("{key:?}").contains("0123"));
    }
}

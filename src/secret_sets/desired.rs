//! What the remote set must hold, from the resource and its Kubernetes Secret (pure).
//!
//! - `Env`: every key of the Secret (or the keys `spec.keys` chooses, renamed with `as`); each
//!   final name must be an environment variable name, each value UTF-8 text.
//! - `ImagePull`: one registry of a `kubernetes.io/dockerconfigjson` Secret (`spec.host`, or
//!   the only one), sent as `pcc secrets image-pull-secret` sends it: the host, and
//!   base64(`username:password`) as `secretValue` (the entry's `auth` field, which is that
//!   already, when it has no username and password).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

use super::error::Error;
use crate::cloud::secret_sets::{PutSecretSetRequest, SecretEntry, SecretValue, redact_values};
use crate::crd::secret_set::{PipecatSecretSetSpec, SecretSetType};

/// The Secret type of registry credentials.
pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
/// Its data key.
const DOCKER_CONFIG_KEY: &str = ".dockerconfigjson";

/// The values the remote set must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DesiredValues {
    /// Environment variables by name.
    Env(BTreeMap<String, SecretValue>),
    /// Registry credentials.
    ImagePull {
        /// Registry host, as the dockerconfigjson names it.
        host: String,
        /// base64(`username:password`).
        credentials: SecretValue,
        /// Everything else secret of the entry (username, password, auth), for redaction.
        parts: Vec<SecretValue>,
    },
}

impl DesiredValues {
    /// The key names the set must list (none for an image-pull set).
    pub fn names(&self) -> Vec<String> {
        match self {
            DesiredValues::Env(values) => values.keys().cloned().collect(),
            DesiredValues::ImagePull { .. } => Vec::new(),
        }
    }

    /// `text` from Pipecat Cloud (a failed set's `errorMessage`) without any of these values.
    pub fn redact(&self, text: String) -> String {
        let all: Vec<&str> = match self {
            DesiredValues::Env(values) => values.values().map(SecretValue::expose).collect(),
            DesiredValues::ImagePull {
                credentials, parts, ..
            } => std::iter::once(credentials)
                .chain(parts)
                .map(SecretValue::expose)
                .collect(),
        };
        redact_values(text, all)
    }

    /// The body of the `PUT` that makes the set hold these values.
    pub fn request(&self, region: Option<String>) -> PutSecretSetRequest {
        match self {
            DesiredValues::Env(values) => PutSecretSetRequest::Env {
                secrets: values
                    .iter()
                    .map(|(k, v)| SecretEntry {
                        secret_key: k.clone(),
                        secret_value: v.clone(),
                    })
                    .collect(),
                region,
            },
            DesiredValues::ImagePull {
                host,
                credentials,
                parts,
            } => PutSecretSetRequest::ImagePull {
                is_image_pull_secret: true,
                host: host_uri(host),
                secret_value: credentials.clone(),
                region,
                parts: parts.clone(),
            },
        }
    }
}

/// The registry host as the contract types it (`format: uri`, e.g.
/// `https://index.docker.io/v1/`): a dockerconfigjson key without a scheme (`ghcr.io`) gets
/// `https://`. Only the request changes: the digest keeps the Secret's own key, so a set sent
/// before is not sent again for this.
pub fn host_uri(host: &str) -> String {
    if host.contains("://") {
        host.to_string()
    } else {
        format!("https://{host}")
    }
}

/// True when `name` can be an environment variable of an agent (Pipecat Cloud's rule).
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The values the resource asks for, from its Secret.
pub fn desired_values(
    spec: &PipecatSecretSetSpec,
    secret: &Secret,
) -> Result<DesiredValues, Error> {
    let name = &spec.secret_ref.name;
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    let data = secret.data.clone().unwrap_or_default();
    match spec.type_ {
        SecretSetType::Env => {
            if type_ == DOCKER_CONFIG_JSON {
                return Err(Error::invalid(
                    "SecretTypeMismatch",
                    format!(
                        "Secret {name} holds registry credentials ({DOCKER_CONFIG_JSON}): set spec.type: ImagePull, or point spec.secretRef at an Opaque Secret"
                    ),
                ));
            }
            let chosen: Vec<(String, String)> = match &spec.keys {
                Some(keys) => keys
                    .iter()
                    .map(|k| {
                        (
                            k.key.clone(),
                            k.as_.clone().unwrap_or_else(|| k.key.clone()),
                        )
                    })
                    .collect(),
                None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
            };
            if chosen.is_empty() {
                return Err(Error::invalid(
                    "SecretEmpty",
                    format!("Secret {name} has no keys: add the values the agents need"),
                ));
            }
            let mut values = BTreeMap::new();
            for (key, as_) in chosen {
                let Some(bytes) = data.get(&key) else {
                    return Err(Error::invalid(
                        "SecretKeyNotFound",
                        format!(
                            "Secret {name} has no key {key:?} (named in spec.keys): add it, or remove it from spec.keys"
                        ),
                    ));
                };
                if !is_env_name(&as_) {
                    return Err(Error::invalid(
                        "InvalidKeyName",
                        format!(
                            "{as_:?} (from key {key:?} of Secret {name}) is not an environment variable name (letters, digits and '_', not starting with a digit): rename it with spec.keys: [{{key: {key}, as: SOME_NAME}}]"
                        ),
                    ));
                }
                let Ok(text) = String::from_utf8(bytes.0.clone()) else {
                    return Err(Error::invalid(
                        "InvalidValue",
                        format!(
                            "the value of key {key:?} of Secret {name} is not UTF-8 text: Pipecat Cloud secrets are text"
                        ),
                    ));
                };
                values.insert(as_, SecretValue::new(text));
            }
            Ok(DesiredValues::Env(values))
        }
        SecretSetType::ImagePull => {
            if type_ != DOCKER_CONFIG_JSON {
                return Err(Error::invalid(
                    "SecretTypeMismatch",
                    format!(
                        "Secret {name} is of type {type_}, not {DOCKER_CONFIG_JSON}: create it with `kubectl create secret docker-registry {name} --docker-server=... --docker-username=... --docker-password=...`"
                    ),
                ));
            }
            let config = data
                .get(DOCKER_CONFIG_KEY)
                .and_then(|b| serde_json::from_slice::<DockerConfig>(&b.0).ok())
                .ok_or_else(|| {
                    Error::invalid(
                        "InvalidDockerConfig",
                        format!(
                            "Secret {name} has no readable {DOCKER_CONFIG_KEY} (a JSON object with \"auths\")"
                        ),
                    )
                })?;
            image_pull(name, spec.host.as_deref(), config)
        }
    }
}

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize, Default)]
struct DockerAuth {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
}

fn image_pull(
    name: &str,
    host: Option<&str>,
    mut config: DockerConfig,
) -> Result<DesiredValues, Error> {
    let hosts = || config.auths.keys().cloned().collect::<Vec<_>>().join(", ");
    let host = match host {
        Some(h) if config.auths.contains_key(h) => h.to_string(),
        Some(h) => {
            return Err(Error::invalid(
                "RegistryNotFound",
                format!(
                    "Secret {name} has no credentials for registry {h:?} (spec.host); it has: {}",
                    hosts()
                ),
            ));
        }
        None if config.auths.len() == 1 => config.auths.keys().next().cloned().unwrap_or_default(),
        None if config.auths.is_empty() => {
            return Err(Error::invalid(
                "InvalidDockerConfig",
                format!("Secret {name} holds no registry credentials (\"auths\" is empty)"),
            ));
        }
        None => {
            return Err(Error::invalid(
                "RegistryRequired",
                format!(
                    "Secret {name} holds credentials for several registries ({}): choose one with spec.host",
                    hosts()
                ),
            ));
        }
    };
    let entry = config.auths.remove(&host).unwrap_or_default();
    let mut parts = Vec::new();
    let credentials = match (entry.username, entry.password, entry.auth) {
        (Some(user), Some(password), auth) if !user.is_empty() && !password.is_empty() => {
            let encoded = STANDARD.encode(format!("{user}:{password}"));
            parts.extend([user, password].map(SecretValue::new));
            parts.extend(auth.map(SecretValue::new));
            encoded
        }
        (_, _, Some(auth)) if decodes_to_credentials(&auth) => {
            if let Some((user, password)) = STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| {
                    s.split_once(':')
                        .map(|(u, p)| (u.to_string(), p.to_string()))
                })
            {
                parts.extend([user, password].map(SecretValue::new));
            }
            auth.trim().to_string()
        }
        _ => {
            return Err(Error::invalid(
                "InvalidDockerConfig",
                format!(
                    "the entry for {host:?} in Secret {name} has neither username and password nor an auth field holding base64(username:password)"
                ),
            ));
        }
    };
    Ok(DesiredValues::ImagePull {
        host,
        credentials: SecretValue::new(credentials),
        parts,
    })
}

fn decodes_to_credentials(auth: &str) -> bool {
    STANDARD
        .decode(auth.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .is_some_and(|s| s.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PipecatSecretSetSpec {
        serde_json::from_value(v).unwrap()
    }

    fn secret(type_: &str, data: &[(&str, &str)]) -> Secret {
        Secret {
            type_: Some(type_.into()),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn env(values: &DesiredValues) -> Vec<(String, String)> {
        match values {
            DesiredValues::Env(v) => v
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_string()))
                .collect(),
            other => panic!("not env: {other:?}"),
        }
    }

    fn reason(r: Result<DesiredValues, Error>) -> &'static str {
        r.unwrap_err().reason()
    }

    #[test]
    fn an_env_set_takes_every_key_or_the_chosen_ones_renamed() {
        let s = secret("Opaque", &[("OPENAI_API_KEY", "sk-1"), ("DAILY", "d-2")]);
        let all = desired_values(&spec(json!({"secretRef": {"name": "v"}})), &s).unwrap();
        assert_eq!(
            env(&all),
            [
                ("DAILY".into(), "d-2".into()),
                ("OPENAI_API_KEY".into(), "sk-1".into())
            ]
        );
        assert_eq!(all.names(), ["DAILY", "OPENAI_API_KEY"]);
        let chosen = desired_values(
            &spec(json!({"secretRef": {"name": "v"}, "keys": [{"key": "DAILY", "as": "DAILY_API_KEY"}]})),
            &s,
        )
        .unwrap();
        assert_eq!(env(&chosen), [("DAILY_API_KEY".into(), "d-2".into())]);
    }

    #[test]
    fn env_sets_refuse_what_pipecat_would_refuse() {
        let opaque = |data: &[(&str, &str)]| secret("Opaque", data);
        let all = spec(json!({"secretRef": {"name": "v"}}));
        assert_eq!(reason(desired_values(&all, &opaque(&[]))), "SecretEmpty");
        assert_eq!(
            reason(desired_values(&all, &opaque(&[("api-key", "x")]))),
            "InvalidKeyName"
        );
        let renamed = spec(
            json!({"secretRef": {"name": "v"}, "keys": [{"key": "api-key", "as": "API_KEY"}]}),
        );
        assert!(desired_values(&renamed, &opaque(&[("api-key", "x")])).is_ok());
        assert_eq!(
            reason(desired_values(&renamed, &opaque(&[("other", "x")]))),
            "SecretKeyNotFound"
        );
        assert_eq!(
            reason(desired_values(&all, &secret(DOCKER_CONFIG_JSON, &[]))),
            "SecretTypeMismatch"
        );
        let mut binary = opaque(&[]);
        binary.data = Some([("BIN".to_string(), ByteString(vec![0xff, 0xfe]))].into());
        assert_eq!(reason(desired_values(&all, &binary)), "InvalidValue");
    }

    fn docker(auths: serde_json::Value) -> Secret {
        secret(
            DOCKER_CONFIG_JSON,
            &[(DOCKER_CONFIG_KEY, &json!({ "auths": auths }).to_string())],
        )
    }

    #[test]
    fn an_image_pull_set_sends_base64_of_username_colon_password() {
        let pull = spec(json!({"secretRef": {"name": "reg"}, "type": "ImagePull"}));
        let s = docker(json!({"ghcr.io": {"username": "bot", "password": "tok3n"}}));
        let DesiredValues::ImagePull {
            host,
            credentials,
            parts,
        } = desired_values(&pull, &s).unwrap()
        else {
            panic!()
        };
        assert_eq!(host, "ghcr.io");
        assert_eq!(credentials.expose(), STANDARD.encode("bot:tok3n"));
        assert!(parts.iter().any(|p| p.expose() == "tok3n"));
        // Only `auth` (what `docker login` writes): sent as is.
        let auth = STANDARD.encode("u:p4ss");
        let s = docker(json!({"https://index.docker.io/v1/": {"auth": auth}}));
        let DesiredValues::ImagePull {
            host, credentials, ..
        } = desired_values(&pull, &s).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (host.as_str(), credentials.expose()),
            ("https://index.docker.io/v1/", auth.as_str())
        );
    }

    #[test]
    fn the_host_is_sent_as_the_uri_the_contract_types() {
        assert_eq!(host_uri("ghcr.io"), "https://ghcr.io");
        assert_eq!(
            host_uri("https://index.docker.io/v1/"),
            "https://index.docker.io/v1/"
        );
        assert_eq!(
            host_uri("http://registry.local:5000"),
            "http://registry.local:5000"
        );
    }

    #[test]
    fn several_registries_need_a_host() {
        let two = docker(json!({
            "ghcr.io": {"username": "a", "password": "b"},
            "docker.io": {"username": "c", "password": "d"},
        }));
        let pull = spec(json!({"secretRef": {"name": "reg"}, "type": "ImagePull"}));
        let e = desired_values(&pull, &two).unwrap_err();
        assert_eq!(e.reason(), "RegistryRequired");
        assert!(e.to_string().contains("docker.io, ghcr.io"), "{e}");
        let chosen =
            spec(json!({"secretRef": {"name": "reg"}, "type": "ImagePull", "host": "docker.io"}));
        let DesiredValues::ImagePull { credentials, .. } = desired_values(&chosen, &two).unwrap()
        else {
            panic!()
        };
        assert_eq!(credentials.expose(), STANDARD.encode("c:d"));
        let wrong =
            spec(json!({"secretRef": {"name": "reg"}, "type": "ImagePull", "host": "quay.io"}));
        assert_eq!(reason(desired_values(&wrong, &two)), "RegistryNotFound");
        assert_eq!(
            reason(desired_values(&pull, &secret("Opaque", &[("a", "b")]))),
            "SecretTypeMismatch"
        );
        assert_eq!(
            reason(desired_values(
                &pull,
                &docker(json!({"ghcr.io": {"auth": "bm8tY29sb24="}}))
            )),
            "InvalidDockerConfig"
        );
    }

    #[test]
    fn pipecats_messages_are_stripped_of_the_values() {
        let s = secret("Opaque", &[("OPENAI_API_KEY", "sk-live-VALUE-9")]);
        let values = desired_values(&spec(json!({"secretRef": {"name": "v"}})), &s).unwrap();
        assert_eq!(
            values.redact("key sk-live-VALUE-9 was rejected".into()),
            "key [redacted] was rejected"
        );
        let pull = spec(json!({"secretRef": {"name": "reg"}, "type": "ImagePull"}));
        let s = docker(json!({"ghcr.io": {"username": "bot", "password": "gh-PASSWORD-7"}}));
        let values = desired_values(&pull, &s).unwrap();
        let encoded = STANDARD.encode("bot:gh-PASSWORD-7");
        let text = values.redact(format!("login failed for gh-PASSWORD-7 ({encoded})"));
        assert!(
            !text.contains("PASSWORD") && !text.contains(&encoded),
            "{text}"
        );
    }

    #[test]
    fn error_messages_never_quote_values() {
        let s = secret("Opaque", &[("bad-name", "sk-VALUE-1")]);
        let e = desired_values(&spec(json!({"secretRef": {"name": "v"}})), &s).unwrap_err();
        assert!(!e.to_string().contains("VALUE"), "{e}");
        let two = docker(json!({
            "ghcr.io": {"username": "a", "password": "PASSWORD-1"},
            "docker.io": {"username": "c", "password": "PASSWORD-2"},
        }));
        let pull = spec(json!({"secretRef": {"name": "reg"}, "type": "ImagePull"}));
        let e = desired_values(&pull, &two).unwrap_err();
        assert!(!e.to_string().contains("PASSWORD"), "{e}");
    }
}

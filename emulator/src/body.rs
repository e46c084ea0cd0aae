//! Request bodies of the agent and secret-set calls, checked field by field so that every
//! rejection names the field and says what was expected.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::error::ApiError;

/// Agent names: `^[a-z0-9]([-a-z0-9]*[a-z0-9])$`, at most 54 characters.
pub const AGENT_NAME_MAX: usize = 54;
/// The only node type.
pub const NODE_TYPE: &str = "arm";
/// Valid `agentProfile` values.
pub const AGENT_PROFILES: [&str; 3] = ["agent-1x", "agent-2x", "agent-3x"];
/// Bounds of `maxSessionDuration`, in seconds.
pub const SESSION_DURATION_RANGE: std::ops::RangeInclusive<i64> = 60..=14400;

static AGENT_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])$").expect("valid regex"));
/// The contract's pattern for `setName`: DNS labels joined by dots.
static SET_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .expect("valid regex")
});
static REGION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z]+(-[a-z0-9]+)*$").expect("valid regex"));
static ENV_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").expect("valid regex"));
static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
        .expect("valid regex")
});

/// Whether `name` is a valid agent name.
pub fn valid_agent_name(name: &str) -> bool {
    name.len() <= AGENT_NAME_MAX && AGENT_NAME.is_match(name)
}

/// Whether `name` is a valid secret set name (3..63 characters, the contract's pattern).
pub fn valid_set_name(name: &str) -> bool {
    (3..=63).contains(&name.len()) && SET_NAME.is_match(name)
}

/// A field that can be absent, explicitly `null`, or set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Field<T> {
    /// Not in the body: keep the current value.
    #[default]
    Absent,
    /// `null`: unset.
    Null,
    /// A value.
    Set(T),
}

/// Which call a body belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `POST /agents`: `serviceName` required, `region` allowed.
    Create,
    /// `POST /agents/{name}` or an out-of-band edit: `forceRedeploy` allowed.
    Update,
}

/// A parsed create or update body. Absent fields keep their current value on update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentPatch {
    /// `serviceName` (create; on update it must equal the path name when present).
    pub service_name: Option<String>,
    /// `region` (create; on update it must equal the agent's region when present).
    pub region: Option<String>,
    /// `image`.
    pub image: Field<String>,
    /// `buildId`.
    pub build_id: Field<String>,
    /// `nodeType` (always `arm` once checked).
    pub node_type: Option<String>,
    /// `imagePullSecretSet`.
    pub image_pull_secret_set: Field<String>,
    /// `secretSet`.
    pub secret_set: Field<String>,
    /// `autoScaling.minAgents`.
    pub min_agents: Option<u32>,
    /// `autoScaling.maxAgents`.
    pub max_agents: Option<u32>,
    /// `krispViva`: `Some(None)` disables the filter.
    pub krisp_viva: Option<Option<String>>,
    /// `agentProfile`.
    pub agent_profile: Option<String>,
    /// `maxSessionDuration`, seconds.
    pub max_session_duration: Option<u32>,
    /// `forceRedeploy` (update only).
    pub force_redeploy: bool,
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string_field(obj: &Map<String, Value>, key: &str) -> Result<Field<String>, ApiError> {
    match obj.get(key) {
        None => Ok(Field::Absent),
        Some(Value::Null) => Ok(Field::Null),
        Some(Value::String(s)) => Ok(Field::Set(s.clone())),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key} must be a string, got {}",
            type_name(other)
        ))),
    }
}

fn bool_field(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key} must be a boolean, got {}",
            type_name(other)
        ))),
    }
}

fn int_field(obj: &Map<String, Value>, key: &str, label: &str) -> Result<Option<i64>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("{label} must be an integer, got {n}"))),
        Some(other) => Err(ApiError::bad_request(format!(
            "{label} must be an integer, got {}",
            type_name(other)
        ))),
    }
}

/// The body as a JSON object, or a 400 that says why not.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::bad_request(format!(
            "request body must be a JSON object, got {}",
            type_name(&other)
        ))),
        Err(e) => Err(ApiError::bad_request(format!(
            "request body is not valid JSON: {e}"
        ))),
    }
}

impl AgentPatch {
    /// Checks a create or update body field by field.
    pub fn parse(obj: &Map<String, Value>, kind: BodyKind) -> Result<Self, ApiError> {
        let mut patch = AgentPatch::default();

        match string_field(obj, "serviceName")? {
            Field::Set(name) => {
                if !valid_agent_name(&name) {
                    return Err(ApiError::bad_request(format!(
                        "serviceName {name:?} is invalid: use 2 to {AGENT_NAME_MAX} lowercase \
                         letters, digits or '-', starting and ending with a letter or digit"
                    )));
                }
                patch.service_name = Some(name);
            }
            _ if kind == BodyKind::Create => {
                return Err(ApiError::bad_request("serviceName is required"));
            }
            _ => {}
        }

        if let Field::Set(region) = string_field(obj, "region")? {
            if !REGION.is_match(&region) {
                return Err(ApiError::bad_request(format!(
                    "region {region:?} is invalid: expected a region name such as \"us-west\""
                )));
            }
            patch.region = Some(region);
        }

        patch.image = string_field(obj, "image")?;
        if let Field::Set(image) = &patch.image
            && (image.trim().is_empty() || image.contains(char::is_whitespace))
        {
            return Err(ApiError::bad_request(format!(
                "image {image:?} is invalid: expected an image reference such as \
                     \"acme/agent:1.0\""
            )));
        }
        patch.build_id = string_field(obj, "buildId")?;
        if let Field::Set(id) = &patch.build_id
            && !UUID.is_match(id)
        {
            return Err(ApiError::bad_request(format!(
                "buildId {id:?} is invalid: expected a build UUID"
            )));
        }
        if matches!(
            (&patch.image, &patch.build_id),
            (Field::Set(_), Field::Set(_))
        ) {
            return Err(ApiError::bad_request(
                "image and buildId are mutually exclusive: give exactly one of them",
            ));
        }

        if let Field::Set(node) = string_field(obj, "nodeType")? {
            if node != NODE_TYPE {
                return Err(ApiError::bad_request(format!(
                    "nodeType {node:?} is not supported: the only node type is \"arm\""
                )));
            }
            patch.node_type = Some(node);
        }

        // An empty name detaches the set, like `null` (see `assumptions.rs`).
        let set_name = |key| {
            string_field(obj, key).map(|f| match f {
                Field::Set(name) if name.is_empty() => Field::Null,
                other => other,
            })
        };
        patch.image_pull_secret_set = set_name("imagePullSecretSet")?;
        patch.secret_set = set_name("secretSet")?;

        match obj.get("autoScaling") {
            None | Some(Value::Null) => {}
            Some(Value::Object(scaling)) => {
                let min = int_field(scaling, "minAgents", "autoScaling.minAgents")?;
                let max = int_field(scaling, "maxAgents", "autoScaling.maxAgents")?;
                if let Some(min) = min {
                    if min < 0 {
                        return Err(ApiError::bad_request(format!(
                            "autoScaling.minAgents must be 0 or more, got {min}"
                        )));
                    }
                    patch.min_agents = Some(u32::try_from(min).map_err(|_| {
                        ApiError::bad_request(format!("autoScaling.minAgents {min} is too large"))
                    })?);
                }
                if let Some(max) = max {
                    if max < 1 {
                        return Err(ApiError::bad_request(format!(
                            "autoScaling.maxAgents must be at least 1, got {max}"
                        )));
                    }
                    patch.max_agents = Some(u32::try_from(max).map_err(|_| {
                        ApiError::bad_request(format!("autoScaling.maxAgents {max} is too large"))
                    })?);
                }
            }
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "autoScaling must be an object with minAgents and maxAgents, got {}",
                    type_name(other)
                )));
            }
        }

        // `enableKrisp` left the API (2026-04-15): like any unknown key it is ignored.

        match obj.get("krispViva") {
            None => {}
            Some(Value::Null) => patch.krisp_viva = Some(None),
            Some(Value::Object(viva)) => match viva.get("audioFilter") {
                None | Some(Value::Null) => patch.krisp_viva = Some(None),
                Some(Value::String(f)) if f == "tel" || f == "pro" => {
                    patch.krisp_viva = Some(Some(f.clone()));
                }
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "krispViva.audioFilter {other} is invalid: expected \"tel\", \"pro\" or null"
                    )));
                }
            },
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "krispViva must be an object such as {{\"audioFilter\": \"tel\"}}, got {}",
                    type_name(other)
                )));
            }
        }

        if let Field::Set(profile) = string_field(obj, "agentProfile")? {
            if !AGENT_PROFILES.contains(&profile.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "agentProfile {profile:?} is invalid: expected one of agent-1x, agent-2x, \
                     agent-3x"
                )));
            }
            patch.agent_profile = Some(profile);
        }

        if let Some(seconds) = int_field(obj, "maxSessionDuration", "maxSessionDuration")? {
            if !SESSION_DURATION_RANGE.contains(&seconds) {
                return Err(ApiError::bad_request(format!(
                    "maxSessionDuration must be between 60 and 14400 seconds, got {seconds}"
                )));
            }
            patch.max_session_duration = u32::try_from(seconds).ok();
        }

        let force = bool_field(obj, "forceRedeploy")?;
        if kind == BodyKind::Update {
            patch.force_redeploy = force.unwrap_or(false);
        }
        Ok(patch)
    }
}

/// A parsed `PUT /secrets/{set}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSetBody {
    /// Environment secrets: the keys given (values are not kept).
    Secrets {
        /// Keys in the body.
        keys: Vec<String>,
        /// Optional region.
        region: Option<String>,
    },
    /// An image-pull secret for a registry host.
    ImagePull {
        /// Registry host.
        host: String,
        /// Optional region.
        region: Option<String>,
    },
}

impl SecretSetBody {
    /// Checks the body of `PUT /secrets/{set}`.
    pub fn parse(obj: &Map<String, Value>) -> Result<Self, ApiError> {
        let region = match string_field(obj, "region")? {
            Field::Set(region) if !REGION.is_match(&region) => {
                return Err(ApiError::bad_request(format!(
                    "region {region:?} is invalid: expected a region name such as \"us-west\""
                )));
            }
            Field::Set(region) => Some(region),
            _ => None,
        };
        if bool_field(obj, "isImagePullSecret")?.unwrap_or(false) {
            let host = match string_field(obj, "host")? {
                Field::Set(host) if !host.trim().is_empty() => host,
                _ => {
                    return Err(ApiError::bad_request(
                        "host is required for an image pull secret set (e.g. \"https://index.docker.io/v1/\")",
                    ));
                }
            };
            match string_field(obj, "secretValue")? {
                Field::Set(value) if !value.is_empty() => {}
                _ => {
                    return Err(ApiError::bad_request(
                        "secretValue is required for an image pull secret set",
                    ));
                }
            }
            return Ok(Self::ImagePull { host, region });
        }
        let items = match obj.get("secrets") {
            Some(Value::Array(items)) if !items.is_empty() => items,
            Some(Value::Array(_)) => {
                return Err(ApiError::bad_request("secrets must not be empty"));
            }
            None | Some(Value::Null) => {
                return Err(ApiError::bad_request(
                    "secrets is required: a list of {\"secretKey\", \"secretValue\"}, or \
                     isImagePullSecret with host and secretValue",
                ));
            }
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "secrets must be an array, got {}",
                    type_name(other)
                )));
            }
        };
        let mut keys = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Value::Object(item) = item else {
                return Err(ApiError::bad_request(format!(
                    "secrets[{i}] must be an object with secretKey and secretValue"
                )));
            };
            let key = match string_field(item, "secretKey")? {
                Field::Set(key) => key,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "secrets[{i}].secretKey is required"
                    )));
                }
            };
            if !ENV_KEY.is_match(&key) {
                return Err(ApiError::bad_request(format!(
                    "secrets[{i}].secretKey {key:?} is invalid: use letters, digits and '_', \
                     not starting with a digit"
                )));
            }
            if !matches!(string_field(item, "secretValue")?, Field::Set(_)) {
                return Err(ApiError::bad_request(format!(
                    "secrets[{i}].secretValue is required"
                )));
            }
            keys.push(key);
        }
        Ok(Self::Secrets { keys, region })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value, kind: BodyKind) -> Result<AgentPatch, ApiError> {
        let Value::Object(map) = v else { panic!() };
        AgentPatch::parse(&map, kind)
    }

    fn message(v: Value, kind: BodyKind) -> String {
        parse(v, kind).unwrap_err().to_string()
    }

    #[test]
    fn names_follow_the_documented_regex() {
        assert!(valid_agent_name("voice-starter"));
        assert!(valid_agent_name("a1"));
        assert!(!valid_agent_name("a"), "the regex needs two characters");
        assert!(!valid_agent_name("-a"));
        assert!(!valid_agent_name("Voice"));
        assert!(valid_agent_name(&"a".repeat(54)));
        assert!(!valid_agent_name(&"a".repeat(55)));
        assert!(valid_set_name("abc"));
        assert!(!valid_set_name("ab"));
        // The contract allows dots between DNS labels.
        assert!(valid_set_name("team.bot-secrets"));
        assert!(!valid_set_name("team..secrets"));
        assert!(!valid_set_name("team.-secrets"));
        assert!(!valid_set_name("Team"));
    }

    #[test]
    fn the_seed_body_parses() {
        let p = parse(
            json!({"image": "your-dockername/voice-starter:0.1", "nodeType": "arm",
                   "imagePullSecretSet": "dockerhub-credentials", "secretSet": "voice-starter-secrets",
                   "autoScaling": {"minAgents": 1, "maxAgents": 10}, "enableKrisp": "ignored"}),
            BodyKind::Update,
        )
        .unwrap();
        assert_eq!(
            p.image,
            Field::Set("your-dockername/voice-starter:0.1".into())
        );
        assert_eq!((p.min_agents, p.max_agents), (Some(1), Some(10)));
        assert_eq!(p.secret_set, Field::Set("voice-starter-secrets".into()));
    }

    #[test]
    fn each_rule_has_a_message() {
        assert_eq!(
            message(json!({"image": "a"}), BodyKind::Create),
            "serviceName is required"
        );
        assert!(message(json!({"serviceName": "Bad_Name"}), BodyKind::Create).contains("invalid"));
        assert!(
            message(json!({"image": "a", "buildId": "x"}), BodyKind::Update).contains("buildId")
        );
        assert!(
            message(
                json!({"image": "a", "buildId": "00000000-0000-0000-0000-000000000000"}),
                BodyKind::Update
            )
            .contains("mutually exclusive")
        );
        assert!(message(json!({"nodeType": "x86"}), BodyKind::Update).contains("only node type"));
        assert!(
            message(json!({"agentProfile": "agent-4x"}), BodyKind::Update).contains("agent-1x")
        );
        assert!(
            message(
                json!({"krispViva": {"audioFilter": "max"}}),
                BodyKind::Update
            )
            .contains("tel")
        );
        assert!(
            message(json!({"maxSessionDuration": 59}), BodyKind::Update).contains("between 60")
        );
        assert!(message(json!({"maxSessionDuration": 14401}), BodyKind::Update).contains("14400"));
        assert!(
            message(json!({"autoScaling": {"minAgents": -1}}), BodyKind::Update)
                .contains("0 or more")
        );
        assert!(
            message(json!({"autoScaling": {"maxAgents": 0}}), BodyKind::Update)
                .contains("at least 1")
        );
        assert_eq!(
            message(json!({"autoScaling": {"minAgents": "1"}}), BodyKind::Update),
            "autoScaling.minAgents must be an integer, got a string"
        );
        assert_eq!(
            message(json!({"image": 5}), BodyKind::Update),
            "image must be a string, got a number"
        );
    }

    #[test]
    fn nulls_and_force() {
        let p = parse(
            json!({"secretSet": null, "krispViva": null, "forceRedeploy": true}),
            BodyKind::Update,
        )
        .unwrap();
        assert_eq!(p.secret_set, Field::Null);
        assert_eq!(p.krisp_viva, Some(None));
        assert!(p.force_redeploy);
        let p = parse(
            json!({"secretSet": "", "imagePullSecretSet": ""}),
            BodyKind::Update,
        )
        .unwrap();
        assert_eq!(
            (p.secret_set, p.image_pull_secret_set),
            (Field::Null, Field::Null),
            "an empty name detaches the set"
        );
        let p = parse(
            json!({"serviceName": "ab", "forceRedeploy": true}),
            BodyKind::Create,
        )
        .unwrap();
        assert!(!p.force_redeploy, "forceRedeploy is an update-only field");
    }

    #[test]
    fn secret_bodies() {
        let Value::Object(ok) = json!({"secrets": [{"secretKey": "API_KEY", "secretValue": "v"}]})
        else {
            panic!()
        };
        assert_eq!(
            SecretSetBody::parse(&ok).unwrap(),
            SecretSetBody::Secrets {
                keys: vec!["API_KEY".into()],
                region: None
            }
        );
        let Value::Object(pull) = json!({"isImagePullSecret": true, "host": "ghcr.io", "secretValue": "dXNlcjpwYXNz", "region": "eu-central"})
        else {
            panic!()
        };
        assert_eq!(
            SecretSetBody::parse(&pull).unwrap(),
            SecretSetBody::ImagePull {
                host: "ghcr.io".into(),
                region: Some("eu-central".into())
            }
        );
        let Value::Object(bad) = json!({"secrets": [{"secretKey": "1X", "secretValue": "v"}]})
        else {
            panic!()
        };
        assert!(
            SecretSetBody::parse(&bad)
                .unwrap_err()
                .to_string()
                .contains("secretKey")
        );
    }
}

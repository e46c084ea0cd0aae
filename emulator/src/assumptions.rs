//! What the emulator assumes where the official contract (`contract/pipecat-cloud/openapi.json`)
//! is silent, in one place: the defaults of an omitted field, the limits of the rewriting
//! profile, how each response profile shapes an agent's answer, and how a bare Docker Hub image
//! is normalised. `docs/EMULATOR.md` ("Assumptions and response profiles") says the same for
//! users.
//!
//! Updates are partial: a field left out of `POST /agents/{name}` keeps its value.
//! - An empty string for `secretSet` or `imagePullSecretSet` (a valid `string` under the
//!   contract, which says nothing of detaching a set) detaches that set.
//! - An explicit `null` clears `secretSet`, `imagePullSecretSet` and `krispViva`. The contract
//!   does not mark the first two nullable: this is leniency, and strict mode refuses it.
//! - Keys the contract does not define are ignored, as the real API drops unknown keys; that
//!   includes `enableKrisp`, removed from the API on 2026-04-15 (strict mode refuses them).
//!
//! `AgentConfig::apply` in `config.rs` carries these out, `body.rs` tells absent from `null`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::body::NODE_TYPE;
use super::config::AgentConfig;
use super::views::AgentView;

/// `autoScaling.minAgents` when never given (API.md).
pub(super) const DEFAULT_MIN_AGENTS: u32 = 0;
/// `autoScaling.maxAgents` when never given (API.md).
pub(super) const DEFAULT_MAX_AGENTS: u32 = 10;
/// `agentProfile` when never given (API.md).
pub(super) const DEFAULT_PROFILE: &str = "agent-1x";
/// `maxSessionDuration` when never given, seconds (API.md).
pub(super) const DEFAULT_MAX_SESSION_DURATION: u32 = 7200;
/// The configuration of a new agent before its body applies: every field at its default.
pub(super) fn default_config() -> AgentConfig {
    AgentConfig {
        image: None,
        build_id: None,
        node_type: NODE_TYPE.to_owned(),
        image_pull_secret_set: None,
        secret_set: None,
        min_agents: DEFAULT_MIN_AGENTS,
        max_agents: DEFAULT_MAX_AGENTS,
        krisp_viva: None,
        agent_profile: DEFAULT_PROFILE.to_owned(),
        max_session_duration: DEFAULT_MAX_SESSION_DURATION,
    }
}

/// The rewriting profile's own limit on `autoScaling.maxAgents` (and `minAgents`): larger
/// values are clamped to it rather than rejected. Not documented by the real service.
pub const MAX_AGENTS_LIMIT: u32 = 50;

/// The fields of the documented seed response (`GET /agents/{name}`), the only ones the
/// `seed` profile answers with.
pub const SEED_FIELDS: [&str; 9] = [
    "name",
    "ready",
    "createdAt",
    "updatedAt",
    "activeDeploymentId",
    "activeDeploymentReady",
    "autoScaling",
    "activeSessionCount",
    "deployment",
];

/// How agent reads and writes (`GET /agents/{name}`, create, update) answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Every field the emulator knows (conditions, revisions, errors, deployment ids, ...).
    #[default]
    Full,
    /// Only the seed page's fields ([`SEED_FIELDS`]); `ready` means "can take sessions"
    /// (some deployment serves, possibly the previous one), `activeDeploymentReady` means the
    /// newest deployment is ready, `activeDeploymentId` and `deployment` are the newest one.
    Seed,
    /// Every field, from a server that normalises what it stores: bare Docker Hub images get
    /// their registry (`acme/bot:1` -> `docker.io/acme/bot:1`), scaling above
    /// [`MAX_AGENTS_LIMIT`] is clamped, and fields at their default (`agentProfile`
    /// `agent-1x`, `maxSessionDuration` 7200, `krispViva` without a filter) are not echoed.
    Rewriting,
}

impl Profile {
    /// The name used by the flag, the environment variable and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Seed => "seed",
            Self::Rewriting => "rewriting",
        }
    }

    /// What this profile's server stores for a configuration it was sent.
    pub(super) fn normalise(self, config: &mut AgentConfig) {
        if self != Self::Rewriting {
            return;
        }
        if let Some(image) = config.image.as_mut() {
            *image = docker_hub_image(image);
        }
        config.min_agents = config.min_agents.min(MAX_AGENTS_LIMIT);
        config.max_agents = config.max_agents.min(MAX_AGENTS_LIMIT);
    }

    /// The JSON body of an agent answer in this profile.
    pub(super) fn shape(self, view: &AgentView) -> Answer<'_> {
        if self == Self::Full {
            return Answer::Full(view);
        }
        let mut fields = Ordered::of(view);
        match self {
            Self::Full => {}
            Self::Seed => {
                fields
                    .0
                    .retain(|(key, _)| SEED_FIELDS.contains(&key.as_str()));
                for (key, value) in &mut fields.0 {
                    if key == "ready" {
                        *value = Value::Bool(view.available);
                    }
                }
            }
            Self::Rewriting => {
                fields.0.retain(|(key, value)| !at_default(key, value));
                for (key, value) in &mut fields.0 {
                    if key != "deployment" {
                        continue;
                    }
                    if let Some(spec) = value
                        .get_mut("manifest")
                        .and_then(|m| m.get_mut("spec"))
                        .and_then(Value::as_object_mut)
                    {
                        spec.retain(|key, value| !at_default(key, value));
                    }
                }
            }
        }
        Answer::Fields(fields)
    }
}

/// An agent answer: the view itself, or its fields in the view's order with some left out or
/// changed.
#[derive(Debug)]
pub(super) enum Answer<'a> {
    /// Every field, as the view serialises.
    Full(&'a AgentView),
    /// The fields a profile keeps.
    Fields(Ordered),
}

impl Serialize for Answer<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Full(view) => view.serialize(serializer),
            Self::Fields(fields) => fields.serialize(serializer),
        }
    }
}

/// A JSON object's fields in their order (`serde_json::Value` sorts them).
#[derive(Debug)]
pub(super) struct Ordered(Vec<(String, Value)>);

impl Ordered {
    fn of(view: &AgentView) -> Self {
        let text = serde_json::to_string(view).expect("agent views serialise");
        serde_json::from_str(&text).expect("an agent view is a JSON object")
    }
}

impl Serialize for Ordered {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Ordered, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    fields.push(entry);
                }
                Ok(Ordered(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// True for the fields the rewriting server does not echo when they hold their default.
fn at_default(key: &str, value: &Value) -> bool {
    match key {
        "agentProfile" => value.as_str() == Some(DEFAULT_PROFILE),
        "maxSessionDuration" | "maxSessionDurationSeconds" => {
            value.as_u64() == Some(u64::from(DEFAULT_MAX_SESSION_DURATION))
        }
        // `{audioFilter: null}` at the top level, `{audioFilters: false}` in the manifest.
        "krispViva" => {
            value.get("audioFilter").is_none_or(Value::is_null)
                && value.get("audioFilters") != Some(&Value::Bool(true))
        }
        _ => false,
    }
}

/// The fully qualified form of an image on Docker Hub, as a registry-normalising server
/// stores it: `redis` -> `docker.io/library/redis:latest`, `acme/bot:1` ->
/// `docker.io/acme/bot:1`. Images of another registry (a first path component with a `.` or
/// a `:`, or `localhost`) are left as they are.
pub fn docker_hub_image(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    let (first, rest) = match name.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (name, None),
    };
    let path = match rest {
        Some(rest) if first.contains('.') || first.contains(':') || first == "localhost" => {
            if first != "docker.io" && first != "index.docker.io" {
                return image.to_owned();
            }
            rest.to_owned()
        }
        _ => name.to_owned(),
    };
    let path = if path.contains('/') {
        path
    } else {
        format!("library/{path}")
    };
    let tagged = path
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'));
    let mut out = format!("docker.io/{path}");
    if !tagged && digest.is_none() {
        out.push_str(":latest");
    }
    if let Some(digest) = digest {
        out.push('@');
        out.push_str(digest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{AgentPatch, BodyKind};
    use crate::org::Org;
    use crate::settings::Settings;
    use jiff::Timestamp;
    use serde_json::json;
    use std::time::Duration;

    fn settings(profile: Profile) -> Settings {
        Settings {
            profile,
            ready_delay: Duration::from_secs(1),
            reconcile_delay: Duration::from_secs(2),
            ..Settings::default()
        }
    }

    fn patch(body: Value, kind: BodyKind) -> AgentPatch {
        AgentPatch::parse(body.as_object().unwrap(), kind).unwrap()
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    /// Creates `bot` at t=0 and answers as `profile` would, at t=`read_at`.
    fn created(profile: Profile, body: Value, read_at: i64) -> (Org, Value) {
        let s = settings(profile);
        let mut org = Org::default();
        let mut body = body;
        body["serviceName"] = json!("bot");
        let view = org
            .create_agent(&patch(body, BodyKind::Create), &s, at(0))
            .unwrap();
        assert_eq!(view.name, "bot");
        let read = org.get_agent("bot", at(read_at)).unwrap();
        let answer = answer(profile, &read);
        (org, answer)
    }

    fn answer(profile: Profile, view: &AgentView) -> Value {
        serde_json::to_value(profile.shape(view)).unwrap()
    }

    fn org_view(org: &Org) -> AgentView {
        org.get_agent("bot", at(0)).unwrap()
    }

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    #[test]
    fn full_answers_every_field_as_stored() {
        let (_, v) = created(Profile::Full, json!({"image": "acme/bot:1"}), 5);
        for key in [
            "region",
            "desiredDeploymentId",
            "reconciledDeploymentId",
            "agentProfile",
            "maxSessionDuration",
            "krispViva",
            "conditions",
            "errors",
            "available",
        ] {
            assert!(v.get(key).is_some(), "full lacks {key}: {v}");
        }
        assert_eq!(v["agentProfile"], "agent-1x");
        assert_eq!(v["maxSessionDuration"], 7200);
        assert_eq!(v["deployment"]["manifest"]["spec"]["image"], "acme/bot:1");
        assert_eq!(v["ready"], true);
    }

    #[test]
    fn seed_answers_only_the_seed_fields() {
        let (org, v) = created(Profile::Seed, json!({"image": "acme/bot:1"}), 0);
        let mut want: Vec<String> = SEED_FIELDS.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(keys(&v), want, "{v}");
        assert_eq!(v["deployment"]["id"], v["activeDeploymentId"]);
        assert_eq!(v["deployment"]["manifest"]["spec"]["image"], "acme/bot:1");
        assert_eq!(v["autoScaling"]["maxReplicas"], 10);
        // In the seed page's order.
        let text = serde_json::to_string(&Profile::Seed.shape(&org_view(&org))).unwrap();
        let positions: Vec<usize> = SEED_FIELDS
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(positions.is_sorted(), "{text}");
        // Right after create nothing serves yet.
        assert_eq!(v["ready"], false);
        assert_eq!(v["activeDeploymentReady"], false);
    }

    #[test]
    fn seed_ready_means_can_take_sessions_while_the_newest_rolls_out() {
        let s = settings(Profile::Seed);
        let (mut org, _) = created(Profile::Seed, json!({"image": "acme/bot:1"}), 0);
        let first = answer(Profile::Seed, &org.get_agent("bot", at(5)).unwrap());
        assert_eq!(
            (&first["ready"], &first["activeDeploymentReady"]),
            (&json!(true), &json!(true))
        );
        let view = org
            .update_agent(
                "bot",
                &patch(json!({"image": "acme/bot:2"}), BodyKind::Update),
                &s,
                at(10),
            )
            .unwrap();
        let update = answer(Profile::Seed, &view);
        assert_ne!(update["activeDeploymentId"], first["activeDeploymentId"]);
        assert_eq!(update["deployment"]["id"], update["activeDeploymentId"]);
        assert_eq!(
            update["deployment"]["manifest"]["spec"]["image"],
            "acme/bot:2"
        );
        // The previous deployment still serves: ready, but the newest is not.
        assert_eq!(update["ready"], true);
        assert_eq!(update["activeDeploymentReady"], false);
        assert!(update.get("warning").is_none());
        let later = answer(Profile::Seed, &org.get_agent("bot", at(15)).unwrap());
        assert_eq!(later["activeDeploymentReady"], true);
    }

    #[test]
    fn seed_leaves_errors_out_of_a_failed_deployment() {
        let mut s = settings(Profile::Seed);
        s.crash_image = Some(crate::pattern::Pattern::image("*:crash").unwrap());
        let mut org = Org::default();
        org.create_agent(
            &patch(
                json!({"serviceName": "bot", "image": "acme/bot:crash"}),
                BodyKind::Create,
            ),
            &s,
            at(0),
        )
        .unwrap();
        let full = answer(Profile::Full, &org.get_agent("bot", at(5)).unwrap());
        assert_eq!(full["errors"][0]["code"], "PCC_AGENT_CRASH_LOOP");
        let seed = answer(Profile::Seed, &org.get_agent("bot", at(5)).unwrap());
        assert!(seed.get("errors").is_none(), "{seed}");
        assert_eq!(
            (&seed["ready"], &seed["activeDeploymentReady"]),
            (&json!(false), &json!(false))
        );
    }

    #[test]
    fn rewriting_stores_normalised_values_and_omits_defaults() {
        let (org, v) = created(
            Profile::Rewriting,
            json!({"image": "acme/bot:1", "autoScaling": {"minAgents": 60, "maxAgents": 80}}),
            5,
        );
        assert_eq!(
            v["deployment"]["manifest"]["spec"]["image"],
            "docker.io/acme/bot:1"
        );
        assert_eq!(v["autoScaling"]["maxReplicas"], MAX_AGENTS_LIMIT);
        assert_eq!(v["autoScaling"]["minReplicas"], MAX_AGENTS_LIMIT);
        for key in ["agentProfile", "maxSessionDuration", "krispViva"] {
            assert!(v.get(key).is_none(), "{key} echoed: {v}");
        }
        for key in ["agentProfile", "maxSessionDurationSeconds", "krispViva"] {
            assert!(
                v["deployment"]["manifest"]["spec"].get(key).is_none(),
                "{key} echoed in the manifest: {v}"
            );
        }
        // Stored, not only shown: the full answer of the same state agrees.
        let full = answer(Profile::Full, &org.get_agent("bot", at(5)).unwrap());
        assert_eq!(
            full["deployment"]["manifest"]["spec"]["image"],
            "docker.io/acme/bot:1"
        );
        assert_eq!(full["agentProfile"], "agent-1x");
        assert!(v.get("desiredDeploymentId").is_some() && v.get("region").is_some());
    }

    #[test]
    fn rewriting_echoes_values_other_than_the_defaults() {
        let (_, v) = created(
            Profile::Rewriting,
            json!({"image": "ghcr.io/acme/bot:1", "agentProfile": "agent-2x",
                   "maxSessionDuration": 600, "krispViva": {"audioFilter": "tel"}}),
            5,
        );
        assert_eq!(
            v["deployment"]["manifest"]["spec"]["image"],
            "ghcr.io/acme/bot:1"
        );
        assert_eq!(v["agentProfile"], "agent-2x");
        assert_eq!(v["maxSessionDuration"], 600);
        assert_eq!(v["krispViva"]["audioFilter"], "tel");
        let spec = &v["deployment"]["manifest"]["spec"];
        assert_eq!(spec["maxSessionDurationSeconds"], 600);
        assert_eq!(spec["krispViva"]["audioFilters"], true);
    }

    #[test]
    fn rewriting_an_update_that_only_differs_in_spelling_changes_nothing() {
        let s = settings(Profile::Rewriting);
        let (mut org, _) = created(Profile::Rewriting, json!({"image": "acme/bot:1"}), 5);
        for image in ["acme/bot:1", "docker.io/acme/bot:1"] {
            let view = org
                .update_agent(
                    "bot",
                    &patch(json!({"image": image}), BodyKind::Update),
                    &s,
                    at(10),
                )
                .unwrap();
            assert!(view.warning.is_some(), "{image} made a new deployment");
        }
        let view = org
            .update_agent(
                "bot",
                &patch(
                    json!({"autoScaling": {"minAgents": 0, "maxAgents": 99}}),
                    BodyKind::Update,
                ),
                &s,
                at(11),
            )
            .unwrap();
        assert!(view.warning.is_none(), "the first clamp is a change");
        let again = org
            .update_agent(
                "bot",
                &patch(
                    json!({"autoScaling": {"minAgents": 0, "maxAgents": 99}}),
                    BodyKind::Update,
                ),
                &s,
                at(12),
            )
            .unwrap();
        assert!(again.warning.is_some(), "the clamped value did not change");
        assert_eq!(again.auto_scaling.max_replicas, MAX_AGENTS_LIMIT);
    }

    #[test]
    fn docker_hub_images() {
        for (given, stored) in [
            ("redis", "docker.io/library/redis:latest"),
            ("redis:7", "docker.io/library/redis:7"),
            ("acme/bot:1", "docker.io/acme/bot:1"),
            ("acme/bot", "docker.io/acme/bot:latest"),
            ("docker.io/acme/bot:1", "docker.io/acme/bot:1"),
            ("docker.io/redis", "docker.io/library/redis:latest"),
            ("acme/bot@sha256:abc", "docker.io/acme/bot@sha256:abc"),
            ("ghcr.io/acme/bot:1", "ghcr.io/acme/bot:1"),
            ("localhost:5000/bot:1", "localhost:5000/bot:1"),
            ("localhost/bot", "localhost/bot"),
        ] {
            assert_eq!(docker_hub_image(given), stored, "{given}");
        }
    }

    #[test]
    fn profiles_parse_and_print() {
        for p in [Profile::Full, Profile::Seed, Profile::Rewriting] {
            let json = serde_json::to_value(p).unwrap();
            assert_eq!(json, p.as_str());
            assert_eq!(serde_json::from_value::<Profile>(json).unwrap(), p);
        }
        assert_eq!(Profile::default(), Profile::Full);
    }
}

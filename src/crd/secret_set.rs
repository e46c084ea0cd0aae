//! The `PipecatSecretSet` custom resource: a Pipecat Cloud secret set kept equal to a
//! Kubernetes Secret of the resource's own namespace.
//!
//! As in [`crate::crd`], the doc comments on the fields are user documentation: they become the
//! `kubectl explain pipecatsecretset.spec` text.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Credentials, DeletionPolicy, PipecatAgent};

/// Finalizer that keeps a `PipecatSecretSet` until its remote set is deleted (or orphaned), and
/// while agents still use the set.
pub const SECRET_SET_FINALIZER: &str = "pipecat.daily.co/secret-set-cleanup";
/// Finalizer the operator puts on a credentials Secret while a `PipecatSecretSet` with
/// `deletionPolicy: Delete` uses it: the key must outlive the sets it deletes.
pub const SET_CREDENTIALS_FINALIZER: &str = "pipecat.daily.co/secret-set-credentials-in-use";
/// Regular expression every Pipecat Cloud secret set name must match.
pub const SET_NAME_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// Shortest secret set name Pipecat Cloud accepts.
pub const SET_NAME_MIN_LEN: usize = 3;
/// Longest secret set name Pipecat Cloud accepts.
pub const SET_NAME_MAX_LEN: usize = 63;
/// The region Pipecat Cloud uses when none is given (agents and secret sets alike).
pub const DEFAULT_REGION: &str = "us-west";

/// A Pipecat Cloud secret set whose values come from a Kubernetes Secret of the same namespace.
/// The operator creates the set, sends the Secret's values again whenever they change, removes
/// keys that left the Secret, and reports Pipecat Cloud's provisioning state.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "pipecat.daily.co",
    version = "v1alpha1",
    kind = "PipecatSecretSet",
    plural = "pipecatsecretsets",
    singular = "pipecatsecretset",
    shortname = "pcss",
    category = "pipecat",
    namespaced,
    cel,
    status = "PipecatSecretSetStatus",
    doc = "A Pipecat Cloud secret set (agent environment variables or registry credentials) kept equal to a Kubernetes Secret of the same namespace.",
    printcolumn(name = "Set", type_ = "string", json_path = ".status.setName"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Keys", type_ = "string", json_path = ".status.keys"),
    printcolumn(name = "Secret", type_ = "string", json_path = ".spec.secretRef.name", priority = 1),
    printcolumn(name = "Remote", type_ = "string", json_path = ".status.remoteStatus", priority = 1),
    printcolumn(name = "Revision", type_ = "integer", json_path = ".status.revision", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(
        "has(self.spec.setName) || (size(self.metadata.name) >= 3 && size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))"
    ).message("metadata.name is not a valid Pipecat secret set name (3 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit): set spec.setName to a valid name"),
    validation = Rule::new(
        "(has(self.spec.setName) ? self.spec.setName : self.metadata.name) == (has(oldSelf.spec.setName) ? oldSelf.spec.setName : oldSelf.metadata.name)"
    ).message("spec.setName is immutable: it names the remote secret set; create a new PipecatSecretSet to use another name"),
)]
#[x_kube(
    validation = Rule::new("self.type == 'Env' || !has(self.keys)").message("spec.keys applies to env sets only: remove it, or set spec.type: Env"),
    validation = Rule::new("self.type == 'ImagePull' || !has(self.host)").message("spec.host applies to image-pull sets only: remove it, or set spec.type: ImagePull"),
    validation = Rule::new("self.type == oldSelf.type").message("spec.type is immutable: Pipecat Cloud cannot change a set's type; create a new PipecatSecretSet"),
    validation = Rule::new("!has(oldSelf.region) || (has(self.region) && self.region == oldSelf.region)").message("spec.region is immutable once set: Pipecat Cloud cannot move a secret set to another region"),
)]
#[serde(rename_all = "camelCase")]
pub struct PipecatSecretSetSpec {
    /// Name of the secret set in Pipecat Cloud (what agents name in `secretSet` or
    /// `imagePullSecretSet`). Defaults to `metadata.name`. Lowercase letters, digits and '-', 3
    /// to 63 characters, starting and ending with a letter or digit. Cannot be changed after
    /// creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 3, max = 63),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub set_name: Option<String>,

    /// Pipecat Cloud region of the set, e.g. `us-west` (the default). Agents can only use sets
    /// of their own region. Set at creation only: it cannot be changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 2, max = 63),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub region: Option<String>,

    /// The Kubernetes Secret, in this resource's namespace, that holds the values: an Opaque
    /// Secret for an `Env` set (each key becomes an environment variable of the agents), a
    /// `kubernetes.io/dockerconfigjson` Secret for an `ImagePull` set. A change to the Secret
    /// is sent to Pipecat Cloud within seconds.
    pub secret_ref: SecretRef,

    /// `Env` (the default): environment variables for agents (`secretSet`). `ImagePull`:
    /// registry credentials for pulling a private image (`imagePullSecretSet`). Cannot be
    /// changed after creation.
    #[serde(default, rename = "type")]
    pub type_: SecretSetType,

    /// `Env` sets only: the keys of the Secret to send, each optionally under another name
    /// (`as`). When omitted, every key of the Secret is sent under its own name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("self.all(k, self.exists_one(j, (has(j.__as__) ? j.__as__ : j.key) == (has(k.__as__) ? k.__as__ : k.key)))").message("spec.keys sends two values under the same name: give each a distinct `as`"))]
    pub keys: Option<Vec<KeySelector>>,

    /// `ImagePull` sets only: the registry host of the dockerconfigjson entry to send, e.g.
    /// `ghcr.io` or `https://index.docker.io/v1/`. Required when the Secret holds credentials for
    /// several registries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub host: Option<String>,

    /// Where the Pipecat Cloud Private API key comes from. When omitted, the operator's default
    /// credentials Secret is used. Agents use the set only when they talk to the same account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,

    /// What happens to the Pipecat Cloud secret set when this resource is deleted: `Delete`
    /// (the default) deletes the set, `Orphan` leaves it. Either way, deletion waits while a
    /// PipecatAgent still uses the set. Only a set this resource created or adopted is ever
    /// deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Take over a secret set of this name that already exists in Pipecat Cloud (made with
    /// `pcc secrets set`, the dashboard, or another cluster). Without it, such a set is left
    /// untouched and the resource reports `Synced=False` reason `SetExists`. When true, the
    /// set's values are replaced with the Secret's, and the set is deleted with this resource
    /// under `deletionPolicy: Delete`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
}

/// A Secret of the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret, in the same namespace as this PipecatSecretSet.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

/// The two kinds of Pipecat Cloud secret sets.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SecretSetType {
    /// Environment variables for agents (`secretSet`), from an Opaque Secret.
    #[default]
    Env,
    /// Registry credentials (`imagePullSecretSet`), from a `kubernetes.io/dockerconfigjson`
    /// Secret.
    ImagePull,
}

/// A key of the Secret sent to an `Env` set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeySelector {
    /// The key in the Secret's data.
    #[schemars(length(min = 1, max = 253), regex(pattern = "^[-._a-zA-Z0-9]+$"))]
    pub key: String,
    /// The name the value gets in the set (the agent's environment variable). Defaults to
    /// `key`.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "as")]
    #[schemars(length(min = 1, max = 253), regex(pattern = "^[-._a-zA-Z0-9]+$"))]
    pub as_: Option<String>,
}

/// The secret set as last seen in Pipecat Cloud, and what the operator last sent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipecatSecretSetStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Name of the remote secret set this resource manages (set once it manages one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_name: Option<String>,
    /// Region of the remote secret set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Provisioning state as Pipecat Cloud last reported it: `pending`, `ready` or `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_status: Option<String>,
    /// The key names Pipecat Cloud lists for the set (never values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Keyed hash (HMAC-SHA256) of the values last sent. The key is never in the status, so the
    /// digest reveals nothing about the values; it only tells whether the Secret changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_digest: Option<String>,
    /// Counts the changes of values sent to Pipecat Cloud: 1 after the first, one more each
    /// time the Secret's values change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// The latest `revision` Pipecat Cloud reported ready. Agents using the set are redeployed
    /// when it goes up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_revision: Option<i64>,
    /// Pipecat Cloud's message when provisioning failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Set when unchanged values were sent again because Pipecat Cloud did not list the
    /// Secret's keys: the values' digest and the keys it listed then. The same listing for the
    /// same values again means resending does not help: the operator stops (`NotConverging`)
    /// until the Secret changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resent_for: Option<ResentFor>,
    /// `Ready`: the set holds the Secret's current values and Pipecat Cloud reports it ready.
    /// `Synced`: the last reconcile with Pipecat Cloud succeeded. Reasons are CamelCase words;
    /// messages say what to do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// What a resend of unchanged values answered (`status.resentFor`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResentFor {
    /// The digest of the values sent again.
    pub values_digest: String,
    /// The keys Pipecat Cloud listed before they were sent again.
    #[serde(default)]
    pub remote_keys: Vec<String>,
}

impl PipecatSecretSet {
    /// The remote set's name this resource names: `spec.setName`, or `metadata.name` when
    /// unset.
    pub fn set_name(&self) -> &str {
        self.spec
            .set_name
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or_default()
    }

    /// The remote set this resource manages: `status.setName` once it manages one, the name
    /// its spec gives otherwise.
    pub fn managed_set_name(&self) -> &str {
        self.status
            .as_ref()
            .and_then(|s| s.set_name.as_deref())
            .unwrap_or_else(|| self.set_name())
    }

    /// The set's region: `status.region`, else `spec.region`, else Pipecat Cloud's default.
    pub fn region(&self) -> &str {
        self.status
            .as_ref()
            .and_then(|s| s.region.as_deref())
            .or(self.spec.region.as_deref())
            .unwrap_or(DEFAULT_REGION)
    }

    /// The condition of the given type, if any.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
    }
}

/// Which Pipecat account a resource talks to: the operator's default key, or a Secret (by
/// namespace and name).
fn account<'a>(
    namespace: Option<&'a str>,
    credentials: Option<&'a Credentials>,
) -> Option<(&'a str, &'a str)> {
    credentials.map(|c| (namespace.unwrap_or_default(), c.secret_ref.name.as_str()))
}

/// True when `agent` uses the secret set `set` manages: its `secretSet` or `imagePullSecretSet`
/// names the set, in the same region (an agent without a region is in `us-west`), and both talk
/// to the same Pipecat account (both the operator's default key, or the same credentials Secret
/// of the same namespace).
pub fn agent_uses_set(agent: &PipecatAgent, set: &PipecatSecretSet) -> bool {
    let name = set.managed_set_name();
    let names_it = [&agent.spec.secret_set, &agent.spec.image_pull_secret_set]
        .into_iter()
        .any(|n| n.as_deref() == Some(name));
    let agent_region = agent.spec.region.as_deref().unwrap_or(DEFAULT_REGION);
    names_it
        && agent_region == set.region()
        && account(
            agent.metadata.namespace.as_deref(),
            agent.spec.credentials.as_ref(),
        ) == account(
            set.metadata.namespace.as_deref(),
            set.spec.credentials.as_ref(),
        )
}

/// The CustomResourceDefinition as installed (descriptions reflowed as for `PipecatAgent`).
pub fn crd() -> CustomResourceDefinition {
    let mut crd = serde_json::to_value(PipecatSecretSet::crd()).expect("the CRD always serializes");
    super::reflow_descriptions(&mut crd);
    serde_json::from_value(crd).expect("reflowing descriptions keeps the CRD well-formed")
}

/// The CustomResourceDefinition as YAML, exactly as committed under `crds/`.
pub fn crd_yaml() -> String {
    super::generated_yaml(&crd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{PipecatAgentSpec, SecretKeyRef};

    fn agent(ns: &str, secret_set: Option<&str>, pull: Option<&str>) -> PipecatAgent {
        let mut spec: PipecatAgentSpec = serde_json::from_value(serde_json::json!({
            "image": "example/agent:1",
        }))
        .unwrap();
        spec.secret_set = secret_set.map(str::to_owned);
        spec.image_pull_secret_set = pull.map(str::to_owned);
        let mut agent = PipecatAgent::new("agent", spec);
        agent.metadata.namespace = Some(ns.to_owned());
        agent
    }

    fn set(ns: &str, name: &str) -> PipecatSecretSet {
        let spec: PipecatSecretSetSpec = serde_json::from_value(serde_json::json!({
            "secretRef": {"name": "values"},
        }))
        .unwrap();
        let mut set = PipecatSecretSet::new(name, spec);
        set.metadata.namespace = Some(ns.to_owned());
        set
    }

    fn credentials(name: &str) -> Option<Credentials> {
        Some(Credentials {
            secret_ref: SecretKeyRef {
                name: name.to_owned(),
                key: "api-key".to_owned(),
            },
        })
    }

    #[test]
    fn an_agent_uses_a_set_it_names_in_either_field() {
        let s = set("ns", "keys");
        assert!(agent_uses_set(&agent("ns", Some("keys"), None), &s));
        assert!(agent_uses_set(&agent("ns", None, Some("keys")), &s));
        assert!(!agent_uses_set(&agent("ns", Some("other"), Some("x")), &s));
        assert!(!agent_uses_set(&agent("ns", None, None), &s));
    }

    #[test]
    fn the_set_name_comes_from_status_then_spec_then_metadata() {
        let mut s = set("ns", "meta-name");
        assert!(agent_uses_set(&agent("ns", Some("meta-name"), None), &s));
        s.spec.set_name = Some("spec-name".into());
        assert!(!agent_uses_set(&agent("ns", Some("meta-name"), None), &s));
        assert!(agent_uses_set(&agent("ns", Some("spec-name"), None), &s));
        s.status = Some(PipecatSecretSetStatus {
            set_name: Some("status-name".into()),
            ..Default::default()
        });
        assert!(!agent_uses_set(&agent("ns", Some("spec-name"), None), &s));
        assert!(agent_uses_set(&agent("ns", Some("status-name"), None), &s));
    }

    #[test]
    fn regions_must_match_with_us_west_the_default() {
        let mut s = set("ns", "keys");
        let mut a = agent("ns", Some("keys"), None);
        a.spec.region = Some("us-west".into());
        assert!(agent_uses_set(&a, &s));
        a.spec.region = Some("eu-central".into());
        assert!(!agent_uses_set(&a, &s));
        s.spec.region = Some("eu-central".into());
        assert!(agent_uses_set(&a, &s));
        a.spec.region = None;
        assert!(!agent_uses_set(&a, &s));
        // The status's region (the set actually managed) wins over the spec's.
        s.status = Some(PipecatSecretSetStatus {
            region: Some("us-west".into()),
            ..Default::default()
        });
        assert!(agent_uses_set(&a, &s));
    }

    #[test]
    fn both_must_talk_to_the_same_account() {
        // The operator's default key: the same account in every namespace.
        assert!(agent_uses_set(
            &agent("a", Some("keys"), None),
            &set("b", "keys")
        ));
        let mut s = set("ns", "keys");
        s.spec.credentials = credentials("team-key");
        let mut a = agent("ns", Some("keys"), None);
        assert!(!agent_uses_set(&a, &s), "default key vs a Secret");
        a.spec.credentials = credentials("other-key");
        assert!(!agent_uses_set(&a, &s), "two different Secrets");
        a.spec.credentials = credentials("team-key");
        assert!(agent_uses_set(&a, &s));
        a.metadata.namespace = Some("elsewhere".into());
        assert!(
            !agent_uses_set(&a, &s),
            "a Secret of the same name in another namespace is another key"
        );
    }

    #[test]
    fn spec_defaults() {
        let s = set("ns", "keys");
        assert_eq!(s.spec.type_, SecretSetType::Env);
        assert_eq!(s.spec.deletion_policy, DeletionPolicy::Delete);
        assert!(!s.spec.adopt);
        assert_eq!(s.region(), DEFAULT_REGION);
        let spec: PipecatSecretSetSpec = serde_json::from_value(serde_json::json!({
            "secretRef": {"name": "values"},
            "type": "ImagePull",
            "keys": [{"key": "a", "as": "B"}],
        }))
        .unwrap();
        assert_eq!(spec.type_, SecretSetType::ImagePull);
        assert_eq!(spec.keys.unwrap()[0].as_.as_deref(), Some("B"));
    }
}

//! Conditions and the status write, as every kind reports them: the condition types and
//! reasons shared by the kinds, a condition's content before timestamps ([`CondState`]),
//! [`set_condition`] (a `lastTransitionTime` moves only when the status flips, so an unchanged
//! object costs no write) and [`apply_status`] (server-side apply as the operator's field
//! manager).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::MANAGER;
use crate::text::truncate;

/// Condition type: the current spec's deployment is live.
pub const READY: &str = "Ready";
/// Condition type: the last reconcile with Pipecat Cloud succeeded.
pub const SYNCED: &str = "Synced";
/// Condition type (kstatus' "abnormal-true" convention): True while the agent cannot reach the
/// spec until someone acts (a failed deployment, a spec Pipecat Cloud does not take, an error
/// that waits for the user). Flux and kstatus report such a resource as Failed.
pub const STALLED: &str = "Stalled";
/// `Synced=False` reason: Pipecat Cloud does not take the spec (or the agent keeps being
/// changed elsewhere); the operator stopped resending.
pub const NOT_CONVERGING: &str = "NotConverging";

/// A condition's content, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CondState {
    /// True / False / Unknown.
    pub status: &'static str,
    /// CamelCase reason.
    pub reason: String,
    /// Message for people.
    pub message: String,
}

impl CondState {
    /// A True condition.
    pub fn ok(reason: &str, message: impl Into<String>) -> Self {
        CondState {
            status: "True",
            reason: reason.into(),
            message: message.into(),
        }
    }
    /// A False condition.
    pub fn fail(reason: &str, message: impl Into<String>) -> Self {
        CondState {
            status: "False",
            reason: reason.into(),
            message: message.into(),
        }
    }
    /// An Unknown condition.
    pub fn unknown(reason: &str, message: impl Into<String>) -> Self {
        CondState {
            status: "Unknown",
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Longest condition message (the apiserver stores up to 32 KiB; `kubectl describe` stays
/// readable).
pub const MAX_MESSAGE: usize = 1024;

/// The time of a pass, in whole seconds: a status is written with whole seconds (`Time`
/// serializes no fraction), so the copy this process keeps of it equals the object the watch
/// shows afterwards, and can be dropped then (the kinds' per-object memory drops its copy then).
pub fn now() -> Time {
    let now = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// Sets a condition, keeping `lastTransitionTime` unless the status flips.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    state: CondState,
    generation: Option<i64>,
    now: &Time,
) {
    let existing = conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = match existing.map(|i| &conditions[i]) {
        Some(old) if old.status == state.status => old.last_transition_time.clone(),
        _ => now.clone(),
    };
    let cond = Condition {
        type_: type_.to_string(),
        status: state.status.to_string(),
        reason: state.reason,
        message: truncate(state.message, MAX_MESSAGE),
        observed_generation: generation,
        last_transition_time,
    };
    match existing {
        Some(i) => conditions[i] = cond,
        None => conditions.push(cond),
    }
}

/// Server-side applies `status` as the status of `obj`, as the operator's field manager (which
/// owns every status field): the status write of both kinds.
pub async fn apply_status<K>(
    kube: &kube::Client,
    obj: &K,
    status: &impl serde::Serialize,
) -> kube::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(kube.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

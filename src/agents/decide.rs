//! The plan step of an agent's pass (pure): from the spec, the latest status, the managed sets
//! and what was observed, what the pass does, before anything is written: create, manage (an
//! update or nothing, a due rotation's redeploy folded in with its announcement), adopt, or
//! refuse (an agent nobody handed over, a region Pipecat Cloud does not offer).

use super::compare::compare;
use super::desired::Desired;
use super::error::Error;
use super::observe::Observed;
use super::plan::{self, LastApplied, Plan};
use super::rotation::{self, ManagedSet, Step};
use crate::cloud::types::{Agent, CreateAgentRequest, Resets, UpdateAgentRequest, defaults};
use crate::crd::{PipecatAgent, PipecatAgentStatus};

/// What a pass does.
#[derive(Clone, Debug)]
pub enum Decision {
    /// Create the missing agent (its region checked).
    Create(CreateAgentRequest),
    /// Manage an agent this resource created or applied: the update or nothing, with any
    /// rotation's redeploy folded in and announced first ([`rotation::step`]).
    Manage(Step),
    /// Take over an agent `spec.adopt` hands over: the whole desired body, or `None` when every
    /// field is reported and already means the spec.
    Adopt(Option<UpdateAgentRequest>),
}

/// The decision for a live resource whose remote agent was observed.
///
/// Ownership: the operator touches only an agent this resource created (its status records an
/// apply, or the create marker names it) or was told to adopt (`spec.adopt`). Any other agent
/// of the same name is left alone: `AgentExists`, nothing written.
pub fn decide(
    obj: &PipecatAgent,
    status: &PipecatAgentStatus,
    sets: &[ManagedSet],
    desired: &Desired,
    observed: &Observed,
) -> Result<Decision, Error> {
    match &observed.remote {
        None => {
            let Plan::Create(request) = plan::plan(desired, None, &observed.last) else {
                unreachable!("a missing agent is always planned as a create")
            };
            check_region(desired, observed.regions.as_deref())?;
            Ok(Decision::Create(request))
        }
        Some(agent) if observed.last.config_hash.is_some() || observed.marked => Ok(
            Decision::Manage(manage(obj, status, sets, desired, &observed.last, agent)),
        ),
        Some(agent) => take_over(obj, desired, agent),
    }
}

/// The decision when a create found the agent `agent` already there: it appeared since the
/// read, and is this resource's only if an earlier pass sent a create whose answer was lost
/// (the create marker was there before this pass). Rotations wait for the next pass.
pub fn after_race(
    obj: &PipecatAgent,
    sets: &[ManagedSet],
    desired: &Desired,
    observed: &Observed,
    agent: &Agent,
) -> Result<Decision, Error> {
    if observed.marked {
        Ok(Decision::Manage(Step {
            plan: plan::plan(desired, Some(agent), &observed.last),
            announce: None,
            record: rotation::current(sets),
            requested: None,
        }))
    } else {
        take_over(obj, desired, agent)
    }
}

/// The plan of a pass over an agent this resource manages, rotations folded in.
pub fn manage(
    obj: &PipecatAgent,
    status: &PipecatAgentStatus,
    sets: &[ManagedSet],
    desired: &Desired,
    last: &LastApplied,
    observed: &Agent,
) -> Step {
    rotation::step(
        plan::plan(desired, Some(observed), last),
        desired,
        status,
        sets,
        observed,
        last.config_hash.is_none(),
        obj.spec.secret_rotation,
    )
}

/// An agent this resource did not create: adopted when `spec.adopt` says so, else untouched
/// (`AgentExists`). Adopting sends the whole desired body once, unless every field is
/// reported and already means the spec (fields the answers do not report are never assumed to
/// match).
fn take_over(obj: &PipecatAgent, desired: &Desired, agent: &Agent) -> Result<Decision, Error> {
    if !obj.spec.adopt {
        return Err(Error::InvalidSpec {
            reason: "AgentExists",
            message: format!(
                "agent {} already exists in Pipecat Cloud and was not created by this resource: it is left untouched. To manage it from this resource, set spec.adopt: true (it is then updated to this spec, and deleted with this resource under deletionPolicy Delete); or set another spec.agentName",
                desired.name
            ),
        });
    }
    let cmp = compare(&desired.config, &desired.omitted, agent);
    if cmp.differ.is_empty() && cmp.unknown.is_empty() && cmp.resets.is_empty() {
        // Every field is reported and already means the spec (e.g. a manifest written by
        // `pipecat-operator export`): nothing to send.
        return Ok(Decision::Adopt(None));
    }
    // Every omitted field back to its default, but a secret set is detached only when the
    // agent is seen to have one (see `compare`).
    let resets = desired
        .omitted
        .iter()
        .copied()
        .filter(|r| !r.detaches_a_set() || cmp.resets.contains(r))
        .collect();
    Ok(Decision::Adopt(Some(UpdateAgentRequest {
        config: desired.config.clone(),
        resets: Resets(resets),
        force_redeploy: false,
    })))
}

/// Before a create: the spec's region is one Pipecat Cloud offers the key's organization
/// (`regions`, read by [`super::observe`]); otherwise nothing is created (`UnknownRegion`,
/// until the spec changes). A spec without a region gets Pipecat Cloud's default, and a server
/// that does not serve `/regions` (`None`) leaves it to the create's own answer.
fn check_region(desired: &Desired, regions: Option<&[String]>) -> Result<(), Error> {
    let (Some(region), Some(regions)) = (desired.region.as_deref(), regions) else {
        return Ok(());
    };
    if regions.iter().any(|r| r == region) {
        return Ok(());
    }
    Err(Error::InvalidSpec {
        reason: "UnknownRegion",
        message: format!(
            "spec.region {region:?} is not a Pipecat Cloud region of this account (it offers: {}); agent {} was not created: set spec.region to one of these, or remove it for Pipecat Cloud's default ({})",
            if regions.is_empty() {
                "none".to_string()
            } else {
                regions.join(", ")
            },
            desired.name,
            defaults::REGION
        ),
    })
}

//! The assess step of an agent's pass (pure): what the answers mean. The agent as Pipecat
//! Cloud now reports it, the deployment readiness waits for, and whether Pipecat Cloud took the
//! spec ([`Stuck`]), as one [`Applied`].

use tracing::warn;

use super::compare::compare;
use super::desired::Desired;
use super::error::Error;
use super::observe::merge_sparse;
use super::pass::{Applied, Outcome};
use super::plan::{Plan, Stuck, UpdateReason};
use crate::cloud;
use crate::cloud::types::{Agent, UpdateAgentRequest, defaults};
use crate::crd::RequestedDeployment;

/// The result of an update planned for an existing agent (`plan`), given its `answer`
/// (`None`: nothing was sent); `unchanged` is the outcome when no update was needed,
/// `requested` the deployment asked for before.
pub fn carried_out(
    desired: Desired,
    observed: Agent,
    plan: Plan,
    answer: Option<Result<Agent, cloud::Error>>,
    unchanged: Outcome,
    requested: Option<RequestedDeployment>,
) -> Result<Applied, Error> {
    match (plan, answer) {
        (Plan::Update { request, reason }, Some(answer)) => match answer {
            Ok(answer) => Ok(updated(
                desired,
                &observed,
                answer,
                request.force_redeploy,
                reason,
                requested,
            )),
            Err(source) => removal_refused(desired, observed, &request, requested, source),
        },
        (Plan::Update { .. }, None) => unreachable!("an update is always sent"),
        (Plan::Nothing, _) => Ok(kept(desired, observed, unchanged, requested, None)),
        (Plan::NotConverging(stuck), _) => Ok(kept(
            desired,
            observed,
            Outcome::NotConverging,
            requested,
            Some(stuck),
        )),
        (
            Plan::RegionMismatch {
                desired: want,
                actual,
            },
            _,
        ) => Err(Error::InvalidSpec {
            reason: "RegionImmutable",
            message: format!(
                "agent {} runs in region {actual:?} but spec.region is {want:?}: a region cannot change; remove spec.region or set it to {actual:?}, or create a new PipecatAgent",
                desired.name
            ),
        }),
        (Plan::Create(_), _) => unreachable!("create is planned only for a missing agent"),
    }
}

/// The result of an adoption of `agent`: `answer` is the update's (`None`: nothing was sent,
/// the agent already meant the spec).
pub fn adopted(desired: Desired, agent: Agent, answer: Option<Agent>) -> Applied {
    match answer {
        None => kept(desired, agent, Outcome::Adopted, None, None),
        Some(answer) => {
            let mut applied = updated(desired, &agent, answer, false, UpdateReason::Adopt, None);
            applied.outcome = Outcome::Adopted;
            applied
        }
    }
}

/// A refused update that detached a secret set (pure): Pipecat Cloud's API documents no way
/// to detach one, so a 4xx answer to it is kept as [`Stuck::RemovalRefused`] (recorded in the
/// status like any update the server did not take: never sent again for this spec). Any other
/// failure is the pass's error.
fn removal_refused(
    desired: Desired,
    observed: Agent,
    request: &UpdateAgentRequest,
    requested: Option<RequestedDeployment>,
    source: cloud::Error,
) -> Result<Applied, Error> {
    let detaching = request.resets.0.iter().any(|r| r.detaches_a_set());
    let refused = matches!(
        source.kind(),
        cloud::ErrorKind::InvalidRequest | cloud::ErrorKind::NotFound
    );
    if !(detaching && refused) {
        return Err(Error::cloud("update", &desired.name, source));
    }
    let differ = compare(&desired.config, &desired.omitted, &observed).differ;
    warn!(
        agent = %desired.name,
        error = %source,
        "Pipecat Cloud refused an update that detaches a secret set; not sending it again"
    );
    let stuck = Stuck::refused(&desired, differ);
    Ok(kept(
        desired,
        observed,
        Outcome::NotConverging,
        requested,
        Some(stuck),
    ))
}

/// The result of a create (pure): the agent is waited for, and checked against the spec (a
/// server may store something else than it was asked for).
pub fn created(desired: Desired, mut agent: Agent) -> Applied {
    // The region it was created in, for later checks when answers omit it.
    if agent.region.is_none() {
        agent.region = Some(
            desired
                .region
                .clone()
                .unwrap_or_else(|| defaults::REGION.into()),
        );
    }
    let requested = Some(RequestedDeployment {
        id: agent.desired_deployment().unwrap_or_default().to_string(),
        replaces: None,
    });
    let still = compare(&desired.config, &desired.omitted, &agent).differ;
    let stuck = (!still.is_empty()).then(|| Stuck::refused(&desired, still));
    Applied::new(agent, Outcome::Created, desired, requested, stuck)
}

/// The result of a pass that sent no update (pure). Nothing asked for yet (adopted, or a
/// status from before this was recorded): the deployment in place is the one to wait for.
pub fn kept(
    desired: Desired,
    observed: Agent,
    outcome: Outcome,
    requested: Option<RequestedDeployment>,
    stuck: Option<Stuck>,
) -> Applied {
    let requested = requested.or_else(|| in_place(&observed));
    Applied::new(observed, outcome, desired, requested, stuck)
}

/// The result of an update (pure): `observed` is the agent read before it, `answer` the
/// update's answer, `forced` whether a redeploy was forced, `requested` the deployment asked
/// for before.
pub fn updated(
    desired: Desired,
    observed: &Agent,
    answer: Agent,
    forced: bool,
    reason: UpdateReason,
    requested: Option<RequestedDeployment>,
) -> Applied {
    let answer = merge_sparse(answer, observed);
    let requested = if answer.warning.is_some() && !forced {
        // "Nothing changed": no new deployment to wait for.
        requested.or_else(|| in_place(observed))
    } else {
        let before = observed.desired_deployment();
        let after = answer.desired_deployment().filter(|a| Some(*a) != before);
        Some(RequestedDeployment {
            // An answer that still names the old deployment does not say which one was
            // made: any deployment but the replaced one will do.
            id: after.unwrap_or_default().to_string(),
            replaces: before.map(str::to_string),
        })
    };
    let still = compare(&desired.config, &desired.omitted, &answer).differ;
    let stuck = (!still.is_empty()).then(|| Stuck::refused(&desired, still));
    Applied::new(answer, Outcome::Updated(reason), desired, requested, stuck)
}

fn in_place(observed: &Agent) -> Option<RequestedDeployment> {
    observed.desired_deployment().map(|id| RequestedDeployment {
        id: id.to_string(),
        replaces: None,
    })
}

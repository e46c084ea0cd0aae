//! The persist-intent step of an agent's pass: the one writer before a Pipecat Cloud call.
//! Before the operator touches anything remotely it records, in Kubernetes, what it is about
//! to do: the cleanup finalizer (with the create marker when a create follows), the in-use
//! finalizer on the credentials Secret under `deletionPolicy: Delete`, and a rotation's
//! redeploy announced in the status (`announce`: never sent twice, even if the pass dies
//! right after the call).

use super::context::Context;
use super::credentials;
use super::error::Error;
use super::execute::Effects;
use super::finalizer;
use super::rotation::Step;
use crate::crd::{DeletionPolicy, FINALIZER, PipecatAgent, PipecatAgentStatus};
use crate::runtime::credentials::SecretLocation;

/// The finalizer (with the create marker when a create follows), and, under
/// `deletionPolicy: Delete`, the credentials Secret marked in use: before the operator touches
/// anything remotely.
pub async fn prepare(
    ctx: &Context,
    obj: &PipecatAgent,
    loc: &SecretLocation,
    creating: Option<&str>,
) -> Result<(), Error> {
    if obj.spec.deletion_policy == DeletionPolicy::Delete {
        credentials::ensure(ctx, loc).await?;
    }
    let has = ctx.objects.has_finalizer(obj, FINALIZER);
    let need_marker = creating.is_some_and(|a| !ctx.objects.marked_creating(obj, a));
    if finalizer::add(&ctx.kube, obj, creating.filter(|_| need_marker), has).await? {
        ctx.objects.finalizer_added(obj);
        if let Some(agent) = creating {
            ctx.objects.marker_added(obj, agent);
        }
    }
    Ok(())
}

/// Writes the latest `status` with the rotation's redeploy `step` announces (nothing when it
/// announces none), before the update is sent.
pub(super) async fn announce(
    effects: &mut impl Effects,
    status: &PipecatAgentStatus,
    step: &Step,
) -> Result<(), Error> {
    if let Some(pending) = &step.announce {
        let mut st = status.clone();
        st.pending_rotation = Some(pending.clone());
        effects.announce(&st).await?;
    }
    Ok(())
}

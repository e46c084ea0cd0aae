//! The persist-intent step of a secret set's pass: the one writer before a Pipecat Cloud call.
//! Before the operator writes to a set it records, in Kubernetes, that the set is this
//! resource's: the cleanup finalizer, the in-use finalizer on the credentials Secret under
//! `deletionPolicy: Delete`, and `status.setName` ([`prepare`]).

use super::context::Context;
use super::credentials;
use super::error::Error;
use super::finalizer;
use super::pass::Target;
use super::plan::Plan;
use super::report;
use crate::crd::DeletionPolicy;
use crate::crd::secret_set::{PipecatSecretSet, PipecatSecretSetStatus};
use crate::runtime::credentials::SecretLocation;

/// The intent step, for `plan` on the set `target` of `obj` (whose key is at `loc`), from the
/// status `old`: a set this resource manages under `deletionPolicy: Delete` keeps its
/// credentials Secret marked in use, and a `PUT` is preceded by the claim of the set.
pub async fn prepare(
    ctx: &Context,
    obj: &PipecatSecretSet,
    old: &PipecatSecretSetStatus,
    loc: &SecretLocation,
    target: &Target,
    plan: &Plan,
) -> Result<(), Error> {
    if old.set_name.is_some() && obj.spec.deletion_policy == DeletionPolicy::Delete {
        // Known from the Secret watch: no request once marked.
        credentials::ensure(ctx, loc).await?;
    }
    if let Plan::Put { .. } = plan {
        claim(obj, ctx, old, loc, target).await?;
    }
    Ok(())
}

/// Before the first write to a set: the finalizer, and `status.setName` (so that a crash
/// right after the `PUT` still finds the set to be its own, not someone else's to adopt).
async fn claim(
    obj: &PipecatSecretSet,
    ctx: &Context,
    old: &PipecatSecretSetStatus,
    loc: &SecretLocation,
    target: &Target,
) -> Result<(), Error> {
    if !finalizer::present(obj) && !ctx.objects.has_finalizer(obj) {
        finalizer::add(&ctx.kube, obj).await?;
        ctx.objects.finalizer_added(obj);
    }
    if obj.spec.deletion_policy == DeletionPolicy::Delete {
        credentials::ensure(ctx, loc).await?;
    }
    if old.set_name.is_none() {
        let mut claimed = old.clone();
        claimed.set_name = Some(target.set.clone());
        claimed.region = Some(target.region.clone());
        ctx.objects.status_pending(obj, &claimed);
        report::write(&ctx.kube, obj, &claimed).await?;
        ctx.objects.status_written(obj, &claimed);
    }
    Ok(())
}

//! The credentials step of a secret set's pass: where its API key comes from ([`resolve`]), and
//! the sets' in-use finalizer on that Secret ([`ensure`], [`release_if_unused`]; the
//! mechanism, shared with the agents, is [`crate::runtime::secret_marks::SecretMarks`]): while
//! a `PipecatSecretSet` with `deletionPolicy: Delete` manages a remote set with a Secret's key,
//! that Secret carries [`SET_CREDENTIALS_FINALIZER`] (the agents' own is separate: each
//! controller releases only its own; the marks are [`Context::marked`]). Deleting the Secret, or its whole namespace, then waits
//! until those sets are deleted from Pipecat Cloud.
//!
//! [`SET_CREDENTIALS_FINALIZER`]: crate::crd::secret_set::SET_CREDENTIALS_FINALIZER

use kube::ResourceExt;

use super::context::Context;
use super::error::Error;
use super::finalizer;
use crate::cloud::ApiKey;
use crate::crd::DeletionPolicy;
use crate::crd::secret_set::PipecatSecretSet;
use crate::runtime::credentials::{self, SecretLocation};

/// The credentials step: where the set's key is, and the key (cached while its Secret is
/// unchanged).
pub async fn resolve(
    obj: &PipecatSecretSet,
    ctx: &Context,
) -> Result<(SecretLocation, ApiKey), Error> {
    let loc = location(obj, ctx);
    let key = ctx
        .keys
        .resolve(&ctx.kube, &loc)
        .await
        .map_err(Error::Credentials)?;
    Ok((loc, key))
}

/// Where a set's key comes from.
pub fn location(set: &PipecatSecretSet, ctx: &Context) -> SecretLocation {
    credentials::locate_in(
        set.metadata.namespace.as_deref(),
        set.spec.credentials.as_ref(),
        &ctx.config.default_credentials,
    )
}

/// True when `set` may still need the key at `loc` to delete its remote set.
fn uses(set: &PipecatSecretSet, loc: &SecretLocation, ctx: &Context) -> bool {
    set.spec.deletion_policy == DeletionPolicy::Delete && finalizer::present(set) && {
        let l = location(set, ctx);
        l.namespace == loc.namespace && l.name == loc.name
    }
}

/// Puts the sets' finalizer on the Secret at `loc` unless it is known to be there.
pub async fn ensure(ctx: &Context, loc: &SecretLocation) -> Result<(), Error> {
    ctx.marked
        .ensure(&ctx.kube, loc)
        .await
        .map_err(|source| Error::Kube {
            action: "mark the credentials Secret as in use by secret sets",
            source,
        })
}

/// Removes the sets' finalizer from the Secret `namespace/name` when no set with
/// `deletionPolicy: Delete` still needs its key (`leaving`: a set whose cleanup just finished).
pub async fn release_if_unused(
    ctx: &Context,
    namespace: &str,
    name: &str,
    leaving: Option<&PipecatSecretSet>,
) -> Result<(), Error> {
    let loc = SecretLocation {
        namespace: namespace.to_string(),
        name: name.to_string(),
        key: String::new(),
    };
    let needs =
        |s: &PipecatSecretSet| leaving.is_none_or(|l| l.uid() != s.uid()) && uses(s, &loc, ctx);
    ctx.marked
        .release_if_unused(&ctx.kube, &ctx.config.namespaces, (namespace, name), needs)
        .await
        .map_err(|source| Error::Kube {
            action: "release the credentials Secret",
            source,
        })
}

//! The credentials step of an agent's pass: where its API key comes from ([`resolve`]), and the
//! agents' in-use finalizer on that Secret ([`ensure`], [`release_if_unused`]; the mechanism
//! is [`crate::runtime::secret_marks`]), so that the Secret outlives the remote agents it must
//! delete.

use kube::ResourceExt;

use super::context::Context;
use super::error::Error;
use crate::cloud::ApiKey;
use crate::crd::{DeletionPolicy, FINALIZER, PipecatAgent};
use crate::runtime::credentials::{DefaultCredentials, SecretLocation, locate_in};

/// The credentials step: where the agent's key is, and the key (cached while its Secret is
/// unchanged).
pub async fn resolve(ctx: &Context, obj: &PipecatAgent) -> Result<(SecretLocation, ApiKey), Error> {
    let loc = locate(obj, &ctx.config.default_credentials);
    let key = ctx.keys.resolve(&ctx.kube, &loc).await?;
    Ok((loc, key))
}

/// The Secret a resource's key comes from. An explicit reference is always in the resource's
/// own namespace (the schema has no namespace field to leave it).
pub fn locate(agent: &PipecatAgent, default: &DefaultCredentials) -> SecretLocation {
    locate_in(
        agent.metadata.namespace.as_deref(),
        agent.spec.credentials.as_ref(),
        default,
    )
}

/// True when `agent` may still need the key at `loc` to delete its remote agent.
pub fn uses(agent: &PipecatAgent, loc: &SecretLocation, ctx: &Context) -> bool {
    agent.spec.deletion_policy == DeletionPolicy::Delete
        && agent.finalizers().iter().any(|f| f == FINALIZER)
        && {
            let l = locate(agent, &ctx.config.default_credentials);
            l.namespace == loc.namespace && l.name == loc.name
        }
}

/// Puts the agents' finalizer on the Secret at `loc` unless it is known to be there.
pub async fn ensure(ctx: &Context, loc: &SecretLocation) -> Result<(), Error> {
    ctx.marked
        .ensure(&ctx.kube, loc)
        .await
        .map_err(|source| Error::Kube {
            action: "mark the credentials Secret as in use",
            source,
        })
}

/// Removes the agents' finalizer from the Secret `namespace/name` when no agent with
/// `deletionPolicy: Delete` still needs its key (`leaving`: an agent whose cleanup just
/// finished, not counted).
pub async fn release_if_unused(
    ctx: &Context,
    namespace: &str,
    name: &str,
    leaving: Option<&PipecatAgent>,
) -> Result<(), Error> {
    let loc = SecretLocation {
        namespace: namespace.to_string(),
        name: name.to_string(),
        key: String::new(),
    };
    let needs = |a: &PipecatAgent| leaving.is_none_or(|l| l.uid() != a.uid()) && uses(a, &loc, ctx);
    ctx.marked
        .release_if_unused(&ctx.kube, &ctx.config.namespaces, (namespace, name), needs)
        .await
        .map_err(|source| Error::Kube {
            action: "release the credentials Secret",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(yaml: &str) -> PipecatAgent {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn explicit_reference_stays_in_the_resource_namespace() {
        let a = agent(
            "apiVersion: pipecat.daily.co/v1alpha1\nkind: PipecatAgent\nmetadata: {name: a1, namespace: team-a}\nspec: {image: x, credentials: {secretRef: {name: mine}}}",
        );
        let loc = locate(
            &a,
            &DefaultCredentials {
                namespace: Some("pipecat-system".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            loc,
            SecretLocation {
                namespace: "team-a".into(),
                name: "mine".into(),
                key: "api-key".into()
            }
        );
    }

    #[test]
    fn default_reference_uses_the_flag() {
        let a = agent(
            "apiVersion: pipecat.daily.co/v1alpha1\nkind: PipecatAgent\nmetadata: {name: a1, namespace: team-a}\nspec: {image: x}",
        );
        let loc = locate(&a, &DefaultCredentials::default());
        assert_eq!(loc.namespace, "team-a");
        assert_eq!(loc.name, "pipecat-api-key");
        let central = DefaultCredentials {
            namespace: Some("pipecat-system".into()),
            name: "org-key".into(),
            key: "token".into(),
        };
        let loc = locate(&a, &central);
        assert_eq!(
            (loc.namespace.as_str(), loc.name.as_str(), loc.key.as_str()),
            ("pipecat-system", "org-key", "token")
        );
    }
}

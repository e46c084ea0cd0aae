//! Every kind's controller over one set of shared watches: per scope, one watch of
//! PipecatAgents, one of PipecatSecretSets and one of Secrets (metadata), each read once and
//! handed to both controllers ([`crate::runtime::reflectors`]).

use std::sync::Arc;

use futures::{FutureExt, StreamExt};

use crate::runtime::scope::Scope;
use crate::runtime::secrets;
use crate::{agents, secret_sets};

/// Runs the agents' and the secret sets' controllers until `shutdown` resolves (in-flight
/// passes finish). Fails when the PipecatAgent CRD is missing; without the PipecatSecretSet
/// CRD, only agents are managed (and every secret set counts as unmanaged).
pub async fn run(
    agents_ctx: Arc<agents::Context>,
    sets_ctx: Arc<secret_sets::Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let kube = agents_ctx.kube.clone();
    let scopes = Scope::all(&agents_ctx.config);
    for scope in &scopes {
        agents::check_crd(&kube, scope).await?;
    }
    let manage_sets = secret_sets::watch::installed(&kube, &scopes).await;
    let shutdown = shutdown.shared();

    let mut watches = Vec::new();
    let mut agent_inputs = Vec::new();
    let mut set_inputs = Vec::new();
    for scope in scopes {
        let mut agent_watch = agents::watch::watch(&kube, &scope);
        let mut set_watch = secret_sets::watch::watch(&kube, &scope);
        let mut secret_watch = secrets::watch(&kube, &scope);
        agent_inputs.push(agents::watch::Inputs {
            scope: scope.clone(),
            store: agent_watch.store(),
            agents: agent_watch.subscribe().boxed(),
            sets: set_watch.subscribe().boxed(),
            secrets: secret_watch.subscribe().boxed(),
        });
        if manage_sets {
            set_inputs.push(secret_sets::watch::Inputs {
                scope,
                store: set_watch.store(),
                sets: set_watch.subscribe().boxed(),
                secrets: secret_watch.subscribe().boxed(),
                agents: agent_watch.subscribe().boxed(),
            });
        }
        watches.push(agent_watch.run(shutdown.clone()).boxed());
        watches.push(set_watch.run(shutdown.clone()).boxed());
        watches.push(secret_watch.run(shutdown.clone()).boxed());
    }

    let controllers = async {
        let sets = async {
            if manage_sets {
                secret_sets::run(sets_ctx, set_inputs, shutdown.clone()).await
            } else {
                Ok(())
            }
        };
        futures::future::try_join(
            agents::run(agents_ctx, agent_inputs, shutdown.clone()),
            sets,
        )
        .await
        .map(drop)
    };
    // The watches end with the shutdown, or once no controller reads them any more.
    let (result, ()) =
        futures::future::join(controllers, futures::future::join_all(watches).map(drop)).await;
    result
}

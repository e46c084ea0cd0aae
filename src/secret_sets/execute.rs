//! The execute step of a secret set's pass: the one Pipecat Cloud call its plan needs (a `PUT`
//! of every value, or the `DELETE` of a key), and nothing else (what was written before is
//! [`super::intent`]'s, what the answer means is [`super::assess`]'s).

use kube::ResourceExt;
use tracing::info;

use super::context::Context;
use super::desired::DesiredValues;
use super::pass::Target;
use super::plan::Plan;
use crate::cloud::{self, ApiKey};
use crate::crd::secret_set::PipecatSecretSet;

/// The execute step: makes the call `plan` needs on the set `target` of `obj`, sending
/// `values`; its answer, or Pipecat Cloud's error as the client classified it (`None`: the
/// plan needs no call).
pub async fn execute(
    ctx: &Context,
    obj: &PipecatSecretSet,
    key: &ApiKey,
    target: &Target,
    values: &DesiredValues,
    plan: &Plan,
) -> Option<Result<(), cloud::Error>> {
    let namespace = obj.namespace().unwrap_or_default();
    let set = &target.set;
    match plan {
        Plan::DeleteKey(k) => {
            let answer = ctx.cloud.delete_secret(key, set, k).await;
            if answer.is_ok() {
                info!(set = %set, namespace = %namespace, key = %k, "removed a key that left the Secret");
            }
            Some(answer)
        }
        Plan::Put { create, adopt } => {
            let region_field = create.then(|| target.region.clone());
            let req = values.request(region_field);
            let answer = ctx.cloud.put_secret_set(key, set, &req).await.map(|_| ());
            if answer.is_ok() {
                info!(set = %set, namespace = %namespace, created = *create, adopted = *adopt, "sent the values of the Secret");
            }
            Some(answer)
        }
        Plan::Wait | Plan::InSync | Plan::NotConverging { .. } => None,
    }
}

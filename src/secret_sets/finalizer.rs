//! The cleanup finalizer of a `PipecatSecretSet`: added before the remote set is created or
//! adopted, removed once it is deleted (or left, by policy) and no agent uses it any more
//! (written through [`crate::runtime::finalizer`]).

use kube::ResourceExt;

use super::error::Error;
use crate::crd::secret_set::{PipecatSecretSet, SECRET_SET_FINALIZER};
use crate::runtime::finalizer;

/// True when the object carries the finalizer.
pub fn present(obj: &PipecatSecretSet) -> bool {
    obj.finalizers().iter().any(|f| f == SECRET_SET_FINALIZER)
}

/// Adds the finalizer.
pub async fn add(kube: &kube::Client, obj: &PipecatSecretSet) -> Result<(), Error> {
    finalizer::add(kube, obj, SECRET_SET_FINALIZER, None)
        .await
        .map(|_| ())
        .map_err(|source| Error::Kube {
            action: "add the cleanup finalizer",
            source,
        })
}

/// Removes the finalizer (an object already gone is fine).
pub async fn remove(kube: &kube::Client, obj: &PipecatSecretSet) -> Result<(), Error> {
    finalizer::remove(kube, obj, SECRET_SET_FINALIZER)
        .await
        .map_err(|source| Error::Kube {
            action: "remove the cleanup finalizer",
            source,
        })
}

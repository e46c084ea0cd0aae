//! A secret set's bodies: its entry in `GET /secrets`, and
//! `GET /secrets/{set}` with field names, never values.

use jiff::Timestamp;

use super::{FieldNameView, SecretSetDetailView, SecretSetView};
use crate::org::{SecretSet, SetStatus};

/// A secret set in `GET /secrets`.
pub(crate) fn secret_set_view(set: &SecretSet, now: Timestamp) -> SecretSetView {
    let status = set.status(now);
    SecretSetView {
        name: set.name.clone(),
        kind: set.kind.as_str(),
        region: set.region.clone(),
        status: status.as_str(),
        error_message: match status {
            SetStatus::Failed => set.failure.clone(),
            _ => None,
        },
    }
}

/// `GET /secrets/{set}`.
pub(crate) fn secret_set_detail_view(set: &SecretSet, now: Timestamp) -> SecretSetDetailView {
    let view = secret_set_view(set, now);
    SecretSetDetailView {
        name: view.name,
        kind: view.kind,
        region: view.region,
        status: view.status,
        error_message: view.error_message,
        secrets: set
            .keys
            .iter()
            .map(|k| FieldNameView {
                field_name: k.clone(),
            })
            .collect(),
        host: set.host.clone(),
    }
}

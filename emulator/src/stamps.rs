//! Instants and ids as the emulator computes and writes them: `t + d` saturating, API
//! timestamps, and uuids as strings in the state file.

use std::time::Duration;

use jiff::Timestamp;

/// Uuids as strings in the state file (the `uuid` crate is built without serde here).
pub(super) mod uuid_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(d)?;
        Uuid::parse_str(&text).map_err(D::Error::custom)
    }
}

/// `t + d`, saturating at the end of time.
pub(super) fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add(d).unwrap_or(Timestamp::MAX)
}

/// API timestamps: RFC 3339, milliseconds, `Z`.
pub fn format_ts(t: Timestamp) -> String {
    format!("{t:.3}")
}

//! Who claims which agent name: agent name -> the resources naming it, oldest first, fed by
//! the watch ([`NameIndex`]); the ownership step ([`super::ownership`]) reads it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::broadcast;

use crate::crd::PipecatAgent;

/// A resource's claim on an agent name, ordered oldest first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Claim {
    /// Creation time (seconds since the epoch; `i64::MAX` when unknown).
    pub created: i64,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl Claim {
    /// The claim of a resource.
    pub fn of(agent: &PipecatAgent) -> Self {
        Claim {
            created: agent
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|Time(t)| t.as_second())
                .unwrap_or(i64::MAX),
            namespace: agent.namespace().unwrap_or_default(),
            name: agent.name_any(),
        }
    }

    fn object_ref(&self) -> ObjectRef<PipecatAgent> {
        ObjectRef::new(&self.name).within(&self.namespace)
    }
}

/// Agent name -> the resources claiming it, fed by the watch streams.
pub struct NameIndex {
    /// Each name's claims, sorted oldest first, without duplicates. A sorted `Vec`, not a
    /// `BTreeSet`: nearly every name has one claim, and a set's first node holds eleven.
    claims: Mutex<HashMap<String, Vec<Claim>>>,
    released: broadcast::Sender<ObjectRef<PipecatAgent>>,
}

impl Default for NameIndex {
    fn default() -> Self {
        NameIndex {
            claims: Mutex::new(HashMap::new()),
            released: broadcast::channel(1024).0,
        }
    }
}

impl NameIndex {
    /// Records that `agent` exists (watch apply events).
    pub fn upsert(&self, agent: &PipecatAgent) {
        let claim = Claim::of(agent);
        let mut claims = self.claims.lock().expect("name index lock");
        match claims.entry(agent.agent_name().to_string()) {
            Entry::Vacant(v) => {
                v.insert(vec![claim]);
            }
            Entry::Occupied(mut o) => {
                let set = o.get_mut();
                if let Err(at) = set.binary_search(&claim) {
                    set.insert(at, claim);
                }
            }
        }
    }

    /// Records that `agent` is gone; the other claimants of its name are re-queued.
    pub fn remove(&self, agent: &PipecatAgent) {
        let name = agent.agent_name().to_string();
        let waiting: Vec<Claim> = {
            let mut claims = self.claims.lock().expect("name index lock");
            let Some(set) = claims.get_mut(&name) else {
                return;
            };
            if let Ok(at) = set.binary_search(&Claim::of(agent)) {
                set.remove(at);
            }
            let rest = set.clone();
            if set.is_empty() {
                claims.remove(&name);
            }
            rest
        };
        for claim in waiting {
            let _ = self.released.send(claim.object_ref());
        }
    }

    /// Claims on `name` older than `mine`, oldest first.
    pub fn older_than(&self, name: &str, mine: &Claim) -> Vec<Claim> {
        let claims = self.claims.lock().expect("name index lock");
        claims
            .get(name)
            .map(|set| set.iter().take_while(|c| *c < mine).cloned().collect())
            .unwrap_or_default()
    }

    /// Re-queue requests for claimants whose owner went away.
    pub fn subscribe(&self) -> broadcast::Receiver<ObjectRef<PipecatAgent>> {
        self.released.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(ns: &str, name: &str, created: i64, agent_name: &str) -> PipecatAgent {
        let mut a: PipecatAgent = serde_json::from_value(serde_json::json!({
            "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatAgent",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"image": "a/b:1", "agentName": agent_name}
        }))
        .unwrap();
        a.metadata.creation_timestamp = Some(Time(jiff::Timestamp::from_second(created).unwrap()));
        a
    }

    #[test]
    fn the_oldest_claim_wins_and_release_requeues_the_rest() {
        let index = NameIndex::default();
        let old = agent("team-a", "bot", 100, "shared");
        let new = agent("team-b", "bot", 200, "shared");
        let other = agent("team-c", "bot", 50, "unrelated");
        for a in [&old, &new, &other] {
            index.upsert(a);
        }
        assert!(index.older_than("shared", &Claim::of(&old)).is_empty());
        assert_eq!(
            index.older_than("shared", &Claim::of(&new)),
            vec![Claim::of(&old)]
        );

        let mut rx = index.subscribe();
        index.remove(&old);
        assert_eq!(
            rx.try_recv().unwrap(),
            ObjectRef::new("bot").within("team-b")
        );
        assert!(index.older_than("shared", &Claim::of(&new)).is_empty());
    }

    #[test]
    fn claims_stay_oldest_first_and_once_each_whatever_the_order_of_events() {
        let index = NameIndex::default();
        let (a, b, c) = (
            agent("ns", "a", 100, "shared"),
            agent("ns", "b", 200, "shared"),
            agent("ns", "c", 300, "shared"),
        );
        // Newest first, and repeated (every watch event of an object upserts it).
        for x in [&c, &a, &b, &a, &c] {
            index.upsert(x);
        }
        assert_eq!(
            index.older_than("shared", &Claim::of(&c)),
            vec![Claim::of(&a), Claim::of(&b)]
        );
        let mut rx = index.subscribe();
        index.remove(&b);
        assert_eq!(
            index.older_than("shared", &Claim::of(&c)),
            vec![Claim::of(&a)]
        );
        let released: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(
            released,
            [
                ObjectRef::new("a").within("ns"),
                ObjectRef::new("c").within("ns")
            ],
            "the remaining claimants, once each, oldest first"
        );
    }

    #[test]
    fn same_second_is_ordered_by_namespace_then_name() {
        let a = Claim::of(&agent("a", "x", 100, "n"));
        let b = Claim::of(&agent("b", "x", 100, "n"));
        assert!(a < b);
    }
}

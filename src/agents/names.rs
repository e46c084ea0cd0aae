//! Who claims which agent name: agent name -> the resources naming it, oldest first, fed by
//! the watch ([`NameIndex`]); the ownership step ([`super::ownership`]) reads it.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::broadcast;

use crate::crd::PipecatAgent;
use crate::runtime::key::Key;

/// A resource's claim on an agent name, ordered oldest first: creation time, then namespace,
/// then name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Creation time (seconds since the epoch; `i64::MAX` when unknown).
    pub created: i64,
    /// Namespace and name.
    key: Key,
}

impl Ord for Claim {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.created, self.namespace(), self.name()).cmp(&(
            other.created,
            other.namespace(),
            other.name(),
        ))
    }
}

impl PartialOrd for Claim {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
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
            key: Key::of(agent),
        }
    }

    /// The claiming resource's namespace.
    pub fn namespace(&self) -> &str {
        self.key.namespace().unwrap_or_default()
    }

    /// The claiming resource's name.
    pub fn name(&self) -> &str {
        self.key.name()
    }

    fn object_ref(&self) -> ObjectRef<PipecatAgent> {
        ObjectRef::new(self.name()).within(self.namespace())
    }
}

/// The claims on one name, sorted oldest first, without duplicates: nearly every name has one,
/// kept inline (a `Vec` would be one more allocation per agent, a `BTreeSet`'s first node room
/// for eleven).
#[derive(Debug)]
enum Claims {
    One(Claim),
    Many(Vec<Claim>),
}

impl Claims {
    fn as_slice(&self) -> &[Claim] {
        match self {
            Claims::One(c) => std::slice::from_ref(c),
            Claims::Many(v) => v,
        }
    }

    fn insert(&mut self, claim: Claim) {
        match self {
            Claims::One(c) if *c == claim => {}
            Claims::One(c) => {
                let mut v = vec![c.clone(), claim];
                v.sort();
                *self = Claims::Many(v);
            }
            Claims::Many(v) => {
                if let Err(at) = v.binary_search(&claim) {
                    v.insert(at, claim);
                }
            }
        }
    }

    /// Removes `claim`; true when no claim is left.
    fn remove(&mut self, claim: &Claim) -> bool {
        match self {
            Claims::One(c) => c == claim,
            Claims::Many(v) => {
                if let Ok(at) = v.binary_search(claim) {
                    v.remove(at);
                }
                if v.len() == 1 {
                    *self = Claims::One(v.remove(0));
                    false
                } else {
                    v.is_empty()
                }
            }
        }
    }
}

/// Agent name -> the resources claiming it, fed by the watch streams.
pub struct NameIndex {
    claims: Mutex<HashMap<Box<str>, Claims>>,
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
        match claims.get_mut(agent.agent_name()) {
            Some(set) => set.insert(claim),
            None => {
                claims.insert(agent.agent_name().into(), Claims::One(claim));
            }
        }
    }

    /// Records that `agent` is gone; the other claimants of its name are re-queued.
    pub fn remove(&self, agent: &PipecatAgent) {
        let name = agent.agent_name();
        let waiting: Vec<Claim> = {
            let mut claims = self.claims.lock().expect("name index lock");
            let Some(set) = claims.get_mut(name) else {
                return;
            };
            if set.remove(&Claim::of(agent)) {
                claims.remove(name);
                Vec::new()
            } else {
                set.as_slice().to_vec()
            }
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
            .map(|set| {
                set.as_slice()
                    .iter()
                    .take_while(|c| *c < mine)
                    .cloned()
                    .collect()
            })
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
        // By the namespace, then the name: not by the string "namespace/name" ('-' < '/').
        let longer = Claim::of(&agent("a-b", "x", 100, "n"));
        assert!(a < longer);
        let ay = Claim::of(&agent("a", "y", 100, "n"));
        assert!(a < ay && ay < longer);
        assert_eq!((longer.namespace(), longer.name()), ("a-b", "x"));
    }
}

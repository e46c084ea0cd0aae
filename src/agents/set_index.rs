//! Which `PipecatSecretSet`s manage the secret sets agents use, kept from the watches: the
//! sets by remote set name, and the agents by the set names they use. An agent pass asks for
//! its managed sets ([`SetIndex::used_by`]); a set whose state changed wakes only the agents
//! naming it ([`SetIndex::agents_naming`]), never a scan of every agent.
//!
//! Agents are forgotten on every exit ([`super::Context::forget`]); sets on their watch
//! deletion and after a re-list that no longer holds them.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;

use super::rotation::{ManagedSet, SetState, state};
use crate::crd::PipecatAgent;
use crate::crd::secret_set::{PipecatSecretSet, agent_uses_set};

type SetRef = ObjectRef<PipecatSecretSet>;
type AgentRef = ObjectRef<PipecatAgent>;

#[derive(Default)]
struct Inner {
    /// Each set resource, with the remote name it was indexed under.
    sets: HashMap<SetRef, (String, PipecatSecretSet)>,
    /// Remote set name -> the resources naming it.
    by_name: HashMap<String, HashSet<SetRef>>,
    /// Remote set name -> the agents naming it (in `secretSet` or `imagePullSecretSet`).
    agents: HashMap<String, HashSet<AgentRef>>,
    /// Agent -> the set names it was indexed under.
    agent_names: HashMap<AgentRef, Vec<String>>,
}

/// The index (shared by every scope's watches).
pub struct SetIndex {
    inner: Mutex<Inner>,
    /// Scopes whose sets are not listed yet (an agent pass waits for all of them).
    unsynced: tokio::sync::watch::Sender<usize>,
}

impl Default for SetIndex {
    fn default() -> Self {
        SetIndex::new(1)
    }
}

impl SetIndex {
    /// An empty index waiting for the first list of `scopes` watches.
    pub fn new(scopes: usize) -> Self {
        SetIndex {
            inner: Mutex::default(),
            unsynced: tokio::sync::watch::Sender::new(scopes),
        }
    }

    /// An index that does not wait for any list (tests, and an operator without set watches).
    pub fn synced() -> Self {
        SetIndex::new(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("set index lock")
    }

    /// Records a set; true when what agents see of it changed (name, region, account, state).
    pub fn upsert_set(&self, set: &PipecatSecretSet) -> bool {
        let key = ObjectRef::from_obj(set);
        let name = set.managed_set_name().to_string();
        let mut inner = self.lock();
        let changed = match inner.sets.get(&key) {
            Some((old_name, old)) => {
                *old_name != name
                    || old.region() != set.region()
                    || old.spec.credentials != set.spec.credentials
                    || state(old) != state(set)
            }
            None => true,
        };
        if let Some((old_name, _)) = inner.sets.get(&key).cloned() {
            remove_from(&mut inner.by_name, &old_name, &key);
        }
        inner
            .by_name
            .entry(name.clone())
            .or_default()
            .insert(key.clone());
        inner.sets.insert(key, (name, strip(set)));
        changed
    }

    /// Forgets a set.
    pub fn remove_set(&self, set: &PipecatSecretSet) {
        self.remove_set_ref(&ObjectRef::from_obj(set));
    }

    fn remove_set_ref(&self, key: &SetRef) {
        let mut inner = self.lock();
        if let Some((name, _)) = inner.sets.remove(key) {
            remove_from(&mut inner.by_name, &name, key);
        }
    }

    /// After a complete list of `namespace` (`None`: all): forgets the sets of that scope it no
    /// longer holds.
    pub fn listed(&self, namespace: Option<&str>, listed: &HashSet<SetRef>) {
        let gone = unlisted(self.lock().sets.keys(), namespace, listed);
        for r in gone {
            self.remove_set_ref(&r);
        }
    }

    /// Counts one scope as listed (also when sets cannot be listed at all, e.g. their CRD is
    /// not installed: the agents then behave as if no set were managed).
    pub fn scope_synced(&self) {
        self.unsynced.send_modify(|n| *n = n.saturating_sub(1));
    }

    /// Waits (up to `timeout`) until every scope's sets were listed; false on timeout.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let mut rx = self.unsynced.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Records the set names an agent uses.
    pub fn upsert_agent(&self, agent: &PipecatAgent) {
        let key = ObjectRef::from_obj(agent);
        let mut names: Vec<String> = [&agent.spec.secret_set, &agent.spec.image_pull_secret_set]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        names.dedup();
        let mut inner = self.lock();
        if inner.agent_names.get(&key) == Some(&names) {
            return;
        }
        inner.unlink_agent(&key);
        if names.is_empty() {
            return;
        }
        for n in &names {
            inner
                .agents
                .entry(n.clone())
                .or_default()
                .insert(key.clone());
        }
        inner.agent_names.insert(key, names);
    }

    /// Forgets an agent.
    pub fn remove_agent(&self, agent: &ObjectRef<PipecatAgent>) {
        self.lock().unlink_agent(agent);
    }

    /// After a complete list of the agents of `namespace` (`None`: all): forgets the agents of
    /// that scope it no longer holds (deleted while the watch was down).
    pub fn retain_agents(&self, namespace: Option<&str>, listed: &HashSet<AgentRef>) {
        let gone = unlisted(self.lock().agent_names.keys(), namespace, listed);
        for r in gone {
            self.remove_agent(&r);
        }
    }

    /// The agents whose spec names the set `set` manages (candidates: whether each really
    /// uses it is [`agent_uses_set`]'s to say).
    pub fn agents_naming(&self, set: &PipecatSecretSet) -> Vec<AgentRef> {
        let mut agents: Vec<AgentRef> = self
            .lock()
            .agents
            .get(set.managed_set_name())
            .map(|a| a.iter().cloned().collect())
            .unwrap_or_default();
        agents.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        agents
    }

    /// The managed sets `agent` uses, in the order of its fields (`secretSet`, then
    /// `imagePullSecretSet`). When several resources manage one set name for the agent, one
    /// that is not ready comes first (the agent waits for it).
    pub fn used_by(&self, agent: &PipecatAgent) -> Vec<ManagedSet> {
        let inner = self.lock();
        let mut out = Vec::new();
        for name in [&agent.spec.secret_set, &agent.spec.image_pull_secret_set]
            .into_iter()
            .flatten()
        {
            let Some(refs) = inner.by_name.get(name) else {
                continue;
            };
            let mut found: Vec<ManagedSet> = refs
                .iter()
                .filter_map(|r| inner.sets.get(r))
                .filter(|(_, set)| agent_uses_set(agent, set))
                .map(|(_, set)| ManagedSet::of(set))
                .collect();
            found.sort_by(|a, b| {
                let ready = |s: &ManagedSet| matches!(s.state, SetState::Ready(_));
                (ready(a), &a.resource).cmp(&(ready(b), &b.resource))
            });
            out.extend(found);
        }
        out
    }

    /// Sets indexed (tests).
    #[cfg(test)]
    pub fn set_count(&self) -> usize {
        self.lock().sets.len()
    }
}

/// A copy without what agents never read (managed fields, the spec's key list).
fn strip(set: &PipecatSecretSet) -> PipecatSecretSet {
    let mut set = set.clone();
    set.metadata.managed_fields = None;
    set.metadata.annotations = None;
    set
}

impl Inner {
    /// Removes an agent from the index, under every set name it was recorded with.
    fn unlink_agent(&mut self, agent: &AgentRef) {
        if let Some(old) = self.agent_names.remove(agent) {
            for n in old {
                remove_from(&mut self.agents, &n, agent);
            }
        }
    }
}

/// The keys of scope `namespace` (`None`: all) that a complete list no longer holds.
fn unlisted<'a, K>(
    keys: impl Iterator<Item = &'a ObjectRef<K>>,
    namespace: Option<&str>,
    listed: &HashSet<ObjectRef<K>>,
) -> Vec<ObjectRef<K>>
where
    K: kube::Resource + 'a,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    keys.filter(|r| namespace.is_none() || r.namespace.as_deref() == namespace)
        .filter(|r| !listed.contains(*r))
        .cloned()
        .collect()
}

fn remove_from<K: Eq + std::hash::Hash>(
    map: &mut HashMap<String, HashSet<K>>,
    name: &str,
    key: &K,
) {
    if let Some(set) = map.get_mut(name) {
        set.remove(key);
        if set.is_empty() {
            map.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn agent(name: &str, env: Option<&str>, pull: Option<&str>) -> PipecatAgent {
        let mut a: PipecatAgent = serde_json::from_value(serde_json::json!({
            "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatAgent",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"image": "acme/bot:1"}
        }))
        .unwrap();
        a.spec.secret_set = env.map(Into::into);
        a.spec.image_pull_secret_set = pull.map(Into::into);
        a
    }

    fn set(name: &str, ready_revision: Option<i64>) -> PipecatSecretSet {
        let mut s: PipecatSecretSet = serde_json::from_value(serde_json::json!({
            "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatSecretSet",
            "metadata": {"name": name, "namespace": "ns", "generation": 1},
            "spec": {"secretRef": {"name": "values"}}
        }))
        .unwrap();
        if let Some(r) = ready_revision {
            let st = s.status.get_or_insert_with(Default::default);
            st.revision = Some(r);
            st.ready_revision = Some(r);
            st.remote_status = Some("ready".into());
            st.conditions.push(Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "SetReady".into(),
                message: "ready".into(),
                observed_generation: Some(1),
                last_transition_time: Time(jiff::Timestamp::from_second(1).unwrap()),
            });
        }
        s
    }

    #[test]
    fn an_agent_finds_the_sets_it_uses_and_a_set_finds_the_agents_naming_it() {
        let index = SetIndex::synced();
        let a = agent("a", Some("env"), Some("pull"));
        let b = agent("b", Some("env"), None);
        let c = agent("c", Some("other"), None);
        for x in [&a, &b, &c] {
            index.upsert_agent(x);
        }
        assert!(index.upsert_set(&set("env", None)));
        assert!(index.upsert_set(&set("pull", Some(1))));
        let names = |v: Vec<ManagedSet>| v.into_iter().map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(names(index.used_by(&a)), ["env", "pull"]);
        assert_eq!(names(index.used_by(&b)), ["env"]);
        assert!(index.used_by(&c).is_empty(), "other is not managed");
        let woken = index.agents_naming(&set("env", None));
        assert_eq!(
            woken.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );

        // The same state again is no change (no wake-up); a new ready revision is.
        assert!(!index.upsert_set(&set("pull", Some(1))));
        assert!(index.upsert_set(&set("pull", Some(2))));
        assert_eq!(index.used_by(&a)[1].state, SetState::Ready(2));

        // An agent that stops naming a set is no longer woken by it; a forgotten one neither.
        index.upsert_agent(&agent("a", None, Some("pull")));
        assert_eq!(index.agents_naming(&set("env", None)).len(), 1);
        index.remove_agent(&ObjectRef::from_obj(&b));
        assert!(index.agents_naming(&set("env", None)).is_empty());
        // A re-list without `a`: forgotten too.
        index.retain_agents(Some("ns"), &HashSet::new());
        assert!(index.agents_naming(&set("pull", None)).is_empty());

        index.remove_set(&set("env", None));
        assert!(index.used_by(&b).is_empty());
        let mut listed = HashSet::new();
        listed.insert(ObjectRef::from_obj(&set("env", None)));
        index.listed(Some("ns"), &listed);
        assert_eq!(index.set_count(), 0, "pull was not listed again");
    }

    #[tokio::test]
    async fn passes_wait_until_every_scope_was_listed() {
        let index = SetIndex::new(2);
        assert!(!index.wait_synced(Duration::from_millis(10)).await);
        index.scope_synced();
        assert!(!index.wait_synced(Duration::from_millis(10)).await);
        index.scope_synced();
        assert!(index.wait_synced(Duration::from_millis(10)).await);
    }
}

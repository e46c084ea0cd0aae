//! The per-object memory every kind keeps ([`Memory`]): one entry per object, of a type the kind
//! supplies, keyed by namespace and name ([`Key`]) and started afresh when a new object (another
//! uid) takes an old name; forgotten on every way out ([`Memory::forget`],
//! [`Memory::retain_listed`]), with the kind's farewell (its gauges) run for each entry that goes.
//!
//! The memory also keeps where each of its objects stands in the background lane's queue
//! ([`super::pacer::Due`]), so that leaving the memory always leaves the queue too.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Resource;
use kube::runtime::reflector::ObjectRef;

use super::key::Key;
use super::pacer::{Due, Position, Queue, Stamp};

/// An object's uid in 16 bytes: a UUID (what the API server assigns) as its number, any other
/// string by its hash; `None` and `""` alike. Only compared: a new uid under an old name is a
/// new object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Uid(u128);

impl Uid {
    /// The uid of `obj`.
    pub fn of<K: Resource>(obj: &K) -> Uid {
        Uid::parse(obj.meta().uid.as_deref())
    }

    /// `uid` in 16 bytes.
    pub fn parse(uid: Option<&str>) -> Uid {
        let uid = uid.unwrap_or_default();
        if uid.is_empty() {
            return Uid(0);
        }
        let mut n: u128 = 0;
        let mut digits = 0;
        for c in uid.chars() {
            match c.to_digit(16) {
                Some(d) if digits < 32 => {
                    n = (n << 4) | u128::from(d);
                    digits += 1;
                }
                None if c == '-' => {}
                _ => return Uid::hashed(uid),
            }
        }
        if digits == 32 {
            Uid(n)
        } else {
            Uid::hashed(uid)
        }
    }

    fn hashed(uid: &str) -> Uid {
        let half = |salt: u8| {
            let mut h = std::hash::DefaultHasher::new();
            (salt, uid).hash(&mut h);
            u128::from(h.finish())
        };
        Uid((half(0) << 64) | half(1))
    }
}

struct Record<E> {
    uid: Uid,
    /// Where the object stands in the background lane's queue (`None`: out of the lane).
    queued: Option<Stamp>,
    entry: E,
}

struct Inner<E> {
    records: HashMap<Key, Record<E>>,
    due: Due,
}

impl<E> Inner<E> {
    /// Moves `key`'s record to `to` in the queue (`None`: out of the lane).
    fn place(due: &mut Due, key: &Key, record: &mut Record<E>, to: Option<Position>) {
        let to = to.map(|p| Stamp::of(p, record.queued, now()));
        Inner::restamp(due, key, record, to);
    }

    fn restamp(due: &mut Due, key: &Key, record: &mut Record<E>, to: Option<Stamp>) {
        if record.queued != to {
            due.moved(key, record.queued, to);
            record.queued = to;
        }
    }
}

/// tokio's clock (the same as std's, except in tests that pause it).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

type Farewell<E> = Box<dyn Fn(&Key, E) + Send + Sync>;

/// One kind's per-object memory: entries of type `E` for objects of kind `K`.
pub struct Memory<K, E> {
    inner: Mutex<Inner<E>>,
    farewell: Farewell<E>,
    kind: PhantomData<fn(&K)>,
}

impl<K: Resource, E: Default> Memory<K, E> {
    /// An empty memory; `farewell` sees every entry that goes (forgotten, or replaced by a new
    /// object under its name).
    pub fn new(farewell: impl Fn(&Key, E) + Send + Sync + 'static) -> Self {
        Memory {
            inner: Mutex::new(Inner {
                records: HashMap::new(),
                due: Due::default(),
            }),
            farewell: Box::new(farewell),
            kind: PhantomData,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<E>> {
        self.inner.lock().expect("memory lock")
    }

    /// Runs `f` on `obj`'s entry, made afresh when there is none or it belongs to an older
    /// object under the same name (whose farewell runs first).
    pub fn with<R>(&self, obj: &K, f: impl FnOnce(&mut E) -> R) -> R {
        self.with_lane(obj, |e, _| f(e))
    }

    /// As [`Memory::with`], and `f` may also move the object in the background lane's queue
    /// (its second argument: `Some(position)` in the lane, `None` out of it; left as it is,
    /// the object stays where it stands).
    pub fn with_lane<R>(&self, obj: &K, f: impl FnOnce(&mut E, &mut Option<Position>) -> R) -> R {
        let (key, uid) = (Key::of(obj), Uid::of(obj));
        let mut inner = self.lock();
        let Inner { records, due } = &mut *inner;
        let record = records.entry(key.clone()).or_insert_with(|| Record {
            uid,
            queued: None,
            entry: E::default(),
        });
        if record.uid != uid {
            // A new object under an old name: nothing of the old one applies.
            Inner::place(due, &key, record, None);
            let old = std::mem::replace(
                record,
                Record {
                    uid,
                    queued: None,
                    entry: E::default(),
                },
            );
            (self.farewell)(&key, old.entry);
        }
        let mut lane = record.queued.map(Stamp::position);
        let out = f(&mut record.entry, &mut lane);
        Inner::place(due, &key, record, lane);
        out
    }

    /// Reads `obj`'s entry (`None`: none, or an older object's), remembering nothing new.
    pub fn get<R>(&self, obj: &K, f: impl FnOnce(Option<&E>) -> R) -> R {
        let uid = Uid::of(obj);
        let inner = self.lock();
        f(inner
            .records
            .get(&Key::of(obj))
            .filter(|r| r.uid == uid)
            .map(|r| &r.entry))
    }

    /// Places `obj` in the background lane's queue from what `lane` makes of its entry (as
    /// [`Memory::get`]): `Some(position)` in the lane, `None` out of it. An object out of the lane
    /// with no entry leaves nothing behind; one in the lane gets an entry. Returns the lane.
    pub fn sort(
        &self,
        obj: &K,
        lane: impl FnOnce(Option<&E>) -> Option<Position>,
    ) -> Option<Position> {
        let uid = Uid::of(obj);
        let key = Key::of(obj);
        {
            let mut inner = self.lock();
            let Inner { records, due } = &mut *inner;
            if let Some(record) = records.get_mut(&key).filter(|r| r.uid == uid) {
                let to = lane(Some(&record.entry));
                Inner::place(due, &key, record, to);
                return to;
            }
        }
        let to = lane(None);
        if to.is_some() {
            self.with_lane(obj, |_, l| *l = to);
        }
        to
    }

    /// Changes `obj`'s entry if it has one (of this object), remembering nothing new.
    pub fn update(&self, obj: &K, f: impl FnOnce(&mut E)) {
        let uid = Uid::of(obj);
        if let Some(r) = self
            .lock()
            .records
            .get_mut(&Key::of(obj))
            .filter(|r| r.uid == uid)
        {
            f(&mut r.entry);
        }
    }

    /// Runs `f` on every entry, with its key and uid.
    pub fn for_each(&self, mut f: impl FnMut(&Key, Uid, &mut E)) {
        for (key, r) in self.lock().records.iter_mut() {
            f(key, r.uid, &mut r.entry);
        }
    }

    /// Forgets an object that left (deleted, or out of the watched set).
    pub fn forget(&self, key: &Key) {
        let gone = {
            let mut inner = self.lock();
            let Inner { records, due } = &mut *inner;
            records
                .remove(key)
                .inspect(|r| due.moved(key, r.queued, None))
        };
        if let Some(gone) = gone {
            (self.farewell)(key, gone.entry);
        }
    }

    /// After a complete (re-)list of `namespace` (`None`: all namespaces): forgets the objects
    /// of that scope that the list (`listed`) no longer holds (deleted while the watch was down).
    pub fn retain_listed(&self, namespace: Option<&str>, listed: &HashSet<ObjectRef<K>>)
    where
        K: kube::runtime::reflector::Lookup<DynamicType = ()>,
    {
        let gone: Vec<Key> = self
            .lock()
            .records
            .keys()
            .filter(|k| namespace.is_none() || k.namespace() == namespace)
            .filter(|k| !listed.contains(&k.object_ref()))
            .cloned()
            .collect();
        for key in gone {
            self.forget(&key);
        }
    }

    /// How many objects are remembered.
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// True when no object is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Resource, E: Default + Send> Queue for Memory<K, E> {
    fn len(&self) -> usize {
        self.lock().due.len()
    }

    fn next_due(
        &self,
        after: Option<&(Stamp, Key)>,
        now: Instant,
        period: Duration,
    ) -> Option<(Stamp, Key)> {
        self.lock().due.next_due(after, now, period)
    }

    fn started(&self, key: &Key, at: Instant) {
        let mut inner = self.lock();
        let Inner { records, due } = &mut *inner;
        if let Some(record) = records.get_mut(key)
            && record.queued.is_some()
        {
            Inner::restamp(due, key, record, Some(Stamp::Last(at)));
        }
    }

    fn backlog(&self, now: Instant, period: Duration) -> usize {
        self.lock().due.backlog(now, period)
    }

    fn oldest(&self) -> Option<Stamp> {
        self.lock().due.oldest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::PipecatAgent;
    use std::sync::Arc;

    fn agent(ns: &str, name: &str, uid: &str) -> PipecatAgent {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatAgent",
            "metadata": {"name": name, "namespace": ns, "uid": uid},
            "spec": {"image": "a/b:1"}
        }))
        .unwrap()
    }

    type Farewells = Arc<Mutex<Vec<(String, u32)>>>;

    fn memory() -> (Memory<PipecatAgent, u32>, Farewells) {
        let seen = Farewells::default();
        let s = seen.clone();
        let m = Memory::new(move |k: &Key, e: u32| {
            s.lock().unwrap().push((format!("{k:?}"), e));
        });
        (m, seen)
    }

    #[test]
    fn a_key_is_namespace_and_name_only() {
        let k = Key::of(&agent("ns", "a", "u1"));
        assert_eq!(
            k,
            Key::of(&agent("ns", "a", "u2")),
            "the uid is not part of it"
        );
        assert_eq!((k.namespace(), k.name()), (Some("ns"), "a"));
        assert_eq!(
            k.object_ref::<PipecatAgent>(),
            ObjectRef::new("a").within("ns")
        );
        assert!(k.object_ref::<PipecatAgent>().extra.uid.is_none());
        assert_eq!(Key::new(None, "c").namespace(), None);
        assert_eq!(
            Key::of_ref(&ObjectRef::<PipecatAgent>::new("b").within("x")).name(),
            "b"
        );
        assert_eq!(std::mem::size_of::<Key>(), 16);
    }

    #[test]
    fn uids_compare_as_their_strings_do() {
        let u = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(Uid::parse(Some(u)), Uid(0x0f8fad5bd9cb469fa16570867728950e));
        assert_eq!(Uid::parse(Some(u)), Uid::parse(Some(&u.replace('-', ""))));
        assert_ne!(
            Uid::parse(Some(u)),
            Uid::parse(Some("0f8fad5b-d9cb-469f-a165-70867728950f"))
        );
        assert_eq!(Uid::parse(None), Uid::parse(Some("")));
        assert_ne!(Uid::parse(Some("u1")), Uid::parse(Some("u2")));
        assert_eq!(Uid::parse(Some("u1")), Uid::parse(Some("u1")));
        assert_ne!(Uid::parse(Some("u1")), Uid::parse(None));
    }

    #[test]
    fn a_new_object_under_an_old_name_starts_afresh() {
        let (m, seen) = memory();
        m.with(&agent("ns", "a", "u1"), |e| *e = 7);
        assert_eq!(m.get(&agent("ns", "a", "u1"), |e| e.copied()), Some(7));
        assert_eq!(m.get(&agent("ns", "a", "u2"), |e| e.copied()), None);
        assert_eq!(m.with(&agent("ns", "a", "u2"), |e| *e), 0);
        assert_eq!(*seen.lock().unwrap(), [("\"ns/a\"".to_string(), 7)]);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn every_way_out_forgets_the_entry_and_its_place_in_the_queue() {
        let (m, seen) = memory();
        let (a, b, c) = (
            agent("ns", "a", "u1"),
            agent("ns", "b", "u2"),
            agent("other", "c", "u3"),
        );
        for o in [&a, &b, &c] {
            m.sort(o, |_| Some(None));
        }
        assert_eq!((m.len(), Queue::len(&m)), (3, 3));
        m.forget(&Key::of(&a));
        assert_eq!((m.len(), Queue::len(&m)), (2, 2));
        m.retain_listed(Some("ns"), &HashSet::new());
        assert_eq!(
            (m.len(), Queue::len(&m)),
            (1, 1),
            "c is in another namespace"
        );
        m.with(&agent("other", "c", "u4"), |_| ());
        assert_eq!(
            Queue::len(&m),
            0,
            "a new object under c's name is not queued"
        );
        assert_eq!(seen.lock().unwrap().len(), 3);
        // Out of the lane with no entry: nothing remembered.
        assert_eq!(m.sort(&a, |_| None), None);
        assert_eq!(m.len(), 1);
        m.sort(&a, |_| Some(None));
        m.sort(&a, |_| None);
        assert_eq!(
            (m.len(), Queue::len(&m)),
            (2, 0),
            "out of the lane, entry kept"
        );
    }
}

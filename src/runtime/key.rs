//! How the runtime names an object in its maps and queues ([`Key`]): namespace and name in one
//! shared string, without the uid and resourceVersion `ObjectRef::from_obj` carries.

use std::fmt;
use std::sync::Arc;

use kube::Resource;
use kube::runtime::reflector::ObjectRef;

/// An object's name within its namespace, as one shared string `namespace/name` (neither
/// may contain a `/`): 16 bytes in a map, one small allocation, cloned without copying.
/// Unlike `ObjectRef::from_obj`, it carries no uid or resourceVersion.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(Arc<str>);

impl Key {
    /// The key of `name` in `namespace` (`None`: a cluster-scoped object).
    pub fn new(namespace: Option<&str>, name: &str) -> Key {
        let ns = namespace.unwrap_or_default();
        let mut s = String::with_capacity(ns.len() + 1 + name.len());
        s.push_str(ns);
        s.push('/');
        s.push_str(name);
        Key(s.into())
    }

    /// The key of `obj`.
    pub fn of<K: Resource>(obj: &K) -> Key {
        let meta = obj.meta();
        Key::new(
            meta.namespace.as_deref(),
            meta.name.as_deref().unwrap_or_default(),
        )
    }

    /// The key of the object `r` refers to.
    pub fn of_ref<K: kube::runtime::reflector::Lookup + ?Sized>(r: &ObjectRef<K>) -> Key {
        Key::new(r.namespace.as_deref(), &r.name)
    }

    fn split(&self) -> (&str, &str) {
        self.0.split_once('/').unwrap_or(("", &self.0))
    }

    /// The object's namespace (`None`: cluster-scoped).
    pub fn namespace(&self) -> Option<&str> {
        Some(self.split().0).filter(|ns| !ns.is_empty())
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        self.split().1
    }

    /// A reference to the object for a reflector store or a controller: name and namespace
    /// only (stores compare nothing else).
    pub fn object_ref<K>(&self) -> ObjectRef<K>
    where
        K: kube::runtime::reflector::Lookup<DynamicType = ()>,
    {
        let r = ObjectRef::new(self.name());
        match self.namespace() {
            Some(ns) => r.within(ns),
            None => r,
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

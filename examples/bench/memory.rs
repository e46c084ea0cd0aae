//! Memory: the operator's resident set (phase 5), and what one agent and one event cost once
//! deserialized, measured with a counting allocator in the bench's own process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use kube::api::Api;
use pipecat_operator::crd::PipecatAgent;
use serde_json::{Value, json};

use crate::procs::status_bytes;
use crate::stats::round1;

const MIB: f64 = 1024.0 * 1024.0;

/// Counts the bench's live heap, to estimate what the operator keeps in memory per object.
struct CountingAlloc;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        ALLOCATIONS.fetch_sub(1, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Live heap bytes and allocations per value of `T` deserialized from `json` (the way a watch
/// event becomes an object in a reflector's store), averaged over many copies.
fn heap_per_value<T: serde::de::DeserializeOwned>(json: &[u8]) -> Value {
    const COPIES: isize = 2000;
    let (bytes0, allocs0) = (
        LIVE_BYTES.load(Ordering::Relaxed),
        ALLOCATIONS.load(Ordering::Relaxed),
    );
    let kept: Vec<T> = (0..COPIES)
        .filter_map(|_| serde_json::from_slice(json).ok())
        .collect();
    let (bytes1, allocs1) = (
        LIVE_BYTES.load(Ordering::Relaxed),
        ALLOCATIONS.load(Ordering::Relaxed),
    );
    let n = kept.len().max(1) as isize;
    drop(kept);
    json!({"bytes": (bytes1 - bytes0) / n, "allocations": (allocs1 - allocs0) / n})
}

/// What one agent and one event cost in memory: the agent's JSON size and heap once
/// deserialized (as the operator's reflector keeps it), with and without
/// `metadata.managedFields`, and the heap of one event as the event recorder caches it (without
/// the fields the server adds).
pub async fn object_costs(client: &kube::Client, ns: &str, name: &str) -> anyhow::Result<Value> {
    let api: Api<PipecatAgent> = Api::namespaced(client.clone(), ns);
    let obj = api.get(name).await?;
    let full = serde_json::to_vec(&obj)?;
    let mut trimmed = obj.clone();
    trimmed.metadata.managed_fields = None;
    let without = serde_json::to_vec(&trimmed)?;
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let event = events
        .list(&kube::api::ListParams::default().limit(1))
        .await?
        .items
        .into_iter()
        .next()
        .map(|mut e| {
            e.metadata.managed_fields = None;
            e.metadata.uid = None;
            e.metadata.resource_version = None;
            e.metadata.creation_timestamp = None;
            e
        });
    let event_heap = match &event {
        Some(e) => heap_per_value::<k8s_openapi::api::events::v1::Event>(&serde_json::to_vec(e)?),
        None => Value::Null,
    };
    Ok(json!({
        "agentJsonBytes": full.len(),
        "agentJsonBytesWithoutManagedFields": without.len(),
        "agentHeap": heap_per_value::<PipecatAgent>(&full),
        "agentHeapWithoutManagedFields": heap_per_value::<PipecatAgent>(&without),
        "eventHeap": event_heap,
    }))
}

/// The operator's resident set: before and after cold convergence, at the end, and its peak.
pub struct Memory {
    peak: f64,
    before_cold: f64,
    after_cold: f64,
    end: f64,
}

impl Memory {
    /// Reads the peak and current RSS of `pid` (before stopping it), with the figures of the
    /// cold phase.
    pub fn measure(pid: u32, before_cold: f64, after_cold: f64) -> Memory {
        Memory {
            peak: status_bytes(pid, "VmHWM"),
            before_cold,
            after_cold,
            end: status_bytes(pid, "VmRSS"),
        }
    }

    /// The `memory` entry of the results.
    pub fn to_json(&self) -> Value {
        json!({
            "peakRssMiB": round1(self.peak / MIB),
            "rssBeforeColdMiB": round1(self.before_cold / MIB),
            "rssAfterColdMiB": round1(self.after_cold / MIB),
            "rssEndMiB": round1(self.end / MIB),
        })
    }
}

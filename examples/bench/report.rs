//! The results of a run: one JSON object (upserted by agent count into the results file) and
//! the table printed at the end.

use std::path::Path;

use anyhow::Context as _;
use serde_json::{Value, json};
use testkit::controlplane::KUBE_VERSION;

use crate::Args;
use crate::budget::Budget;
use crate::cold::Cold;
use crate::floor::Floor;
use crate::latency::Reaction;
use crate::machine::source;
use crate::memory::Memory;
use crate::stats::secs;
use crate::steady::Steady;

/// Everything a run measured.
pub struct Results {
    pub date: jiff::Timestamp,
    pub machine: Value,
    /// CPU seconds of the idle control plane over `args.idle`.
    pub idle_cpu: Value,
    pub floor: Floor,
    pub cold: Cold,
    pub steady: Steady,
    pub reaction: Reaction,
    pub memory: Memory,
    pub operator_log: Value,
    /// One list call against one read.
    pub list_probe: Value,
    pub budget: Option<Budget>,
}

impl Results {
    /// The run as stored in the results file.
    pub fn to_json(&self, args: &Args) -> Value {
        json!({
            "agents": args.agents,
            "date": self.date.to_string(),
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "machine": self.machine,
            "source": source(&args.operator_bin),
            "settings": {
                "operatorConcurrency": args.concurrency,
                "resyncSeconds": secs(args.resync),
                "pollIntervalMs": args.poll_interval.as_millis() as u64,
                "maxPollIntervalMs": args.max_poll_interval.as_millis() as u64,
                "clientConcurrency": args.client_concurrency,
                "apiRateLimit": 0,
                "operatorEnv": args.operator_env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                "kubeApiserver": KUBE_VERSION,
            },
            "idle": {
                "seconds": secs(args.idle),
                "cpuSeconds": self.idle_cpu,
            },
            "floor": self.floor.to_json(),
            "cold": self.cold.to_json(args.agents, self.floor.time),
            "steady": self.steady.to_json(),
            "reaction": self.reaction.to_json(),
            "memory": self.memory.to_json(),
            "operatorLog": self.operator_log,
            "listProbe": self.list_probe,
            "budget": self.budget.as_ref().map(Budget::to_json),
        })
    }
}

/// Upserts the run (by agent count) into the results file.
pub fn save(path: &Path, run: Value) -> anyhow::Result<()> {
    let mut runs: Vec<Value> = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.get("runs").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    runs.retain(|r| r["agents"] != run["agents"]);
    runs.push(run);
    runs.sort_by_key(|r| r["agents"].as_u64().unwrap_or(0));
    let text = serde_json::to_string_pretty(&json!({ "runs": runs }))?;
    std::fs::write(path, text + "\n").with_context(|| format!("failed to write {}", path.display()))
}

/// Prints the run as a table of figures.
pub fn print_table(run: &Value) {
    let fmt_map = |v: &Value| -> String {
        v.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "none".into())
    };
    let m = &run["machine"];
    let cold = &run["cold"];
    let steady = &run["steady"];
    let reaction = &run["reaction"]["latencyMs"];
    let settings = &run["settings"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    println!(
        "\n## {} agents ({}; machine: {}, {} CPUs, nproc {})",
        run["agents"],
        text(&run["date"]),
        text(&m["cpuModel"]),
        m["logicalCpus"],
        text(&m["nproc"])
    );
    println!(
        "operator: built from {} at {}; HEAD now {}, uncommitted src changes {}",
        run["source"]["operatorBuiltFrom"],
        text(&run["source"]["operatorBinaryBuilt"]),
        text(&run["source"]["commit"]),
        run["source"]["uncommittedSrcChanges"]
    );
    println!(
        "settings: operator concurrency {}, resync {} s, poll {} ms, client concurrency {}, api-rate-limit 0",
        settings["operatorConcurrency"],
        settings["resyncSeconds"],
        settings["pollIntervalMs"],
        settings["clientConcurrency"]
    );
    let rows: Vec<(&str, String)> = vec![
        (
            "floor (create + finalizer + status)",
            format!(
                "{} s ({} writes)",
                run["floor"]["seconds"], run["floor"]["writes"]
            ),
        ),
        ("  CPU seconds", fmt_map(&run["floor"]["cpuSeconds"])),
        (
            "  apiserver mean latency (ms)",
            fmt_map(&run["floor"]["requests"]["meanServerLatencyMs"]),
        ),
        (
            "idle control plane CPU seconds",
            format!(
                "{} in {} s",
                fmt_map(&run["idle"]["cpuSeconds"]),
                run["idle"]["seconds"]
            ),
        ),
        (
            "cold convergence",
            format!(
                "{} s = {}x floor{}",
                cold["seconds"],
                cold["ratioToFloor"],
                if cold["converged"] == true {
                    ""
                } else {
                    " (NOT CONVERGED)"
                }
            ),
        ),
        (
            "  per agent create -> Ready (ms)",
            format!(
                "p50 {}, p99 {}, max {}",
                cold["perAgentCreateToReadyMs"]["p50"],
                cold["perAgentCreateToReadyMs"]["p99"],
                cold["perAgentCreateToReadyMs"]["max"]
            ),
        ),
        (
            "  Pipecat calls",
            format!(
                "{} ({} per agent)",
                fmt_map(&cold["pipecatCalls"]),
                cold["pipecatCallsPerAgent"]
            ),
        ),
        (
            "  operator writes",
            format!(
                "{} ({} per agent): {}",
                cold["operatorWrites"],
                cold["operatorWritesPerAgent"],
                fmt_map(&cold["operatorRequests"]["writes"])
            ),
        ),
        (
            "  apiserver mean latency (ms)",
            fmt_map(&cold["operatorRequests"]["meanServerLatencyMs"]),
        ),
        (
            "  reconciles",
            format!(
                "{} (mean {} ms)",
                fmt_map(&cold["reconciles"]["byResult"]),
                cold["reconciles"]["meanMs"]
            ),
        ),
        (
            "  per agent / event (bytes)",
            format!(
                "agent JSON {} ({} without managedFields), agent heap {} ({} without), event heap {}",
                cold["perObject"]["agentJsonBytes"],
                cold["perObject"]["agentJsonBytesWithoutManagedFields"],
                cold["perObject"]["agentHeap"]["bytes"],
                cold["perObject"]["agentHeapWithoutManagedFields"]["bytes"],
                cold["perObject"]["eventHeap"]["bytes"]
            ),
        ),
        (
            "  operator reads",
            fmt_map(&cold["operatorRequests"]["reads"]),
        ),
        ("  CPU seconds", fmt_map(&cold["cpuSeconds"])),
        ("  peak connections", fmt_map(&cold["peakConnections"])),
        (
            "steady state",
            format!(
                "{} s ({} resync periods)",
                steady["seconds"], steady["resyncPeriods"]
            ),
        ),
        (
            "  Pipecat calls / min",
            fmt_map(&steady["pipecatCallsPerMinute"]),
        ),
        (
            "  apiserver writes / min",
            format!(
                "{} (update calls {}, status writes {})",
                fmt_map(&steady["apiserverWritesPerMinute"]),
                steady["updateCalls"],
                steady["statusWrites"]
            ),
        ),
        (
            "  apiserver reads / min",
            fmt_map(&steady["apiserverReadsPerMinute"]),
        ),
        ("  CPU seconds", fmt_map(&steady["cpuSeconds"])),
        (
            "reaction latency (ms)",
            format!(
                "p50 {}, p99 {}, max {} ({} of {} matched)",
                reaction["p50"],
                reaction["p99"],
                reaction["max"],
                run["reaction"]["matched"],
                run["reaction"]["changes"]
            ),
        ),
        (
            "operator peak RSS (VmHWM)",
            format!("{} MiB", run["memory"]["peakRssMiB"]),
        ),
        (
            "operator log",
            format!(
                "{} lines, {} WARN, {} ERROR",
                run["operatorLog"]["lines"],
                run["operatorLog"]["warn"],
                run["operatorLog"]["error"]
            ),
        ),
    ];
    let mut rows = rows;
    let probe = &run["listProbe"];
    rows.push((
        "one list call vs one read",
        format!(
            "{} ms, {} bytes vs {} ms, {} bytes",
            probe["listMs"], probe["listBytes"], probe["getMs"], probe["getBytes"]
        ),
    ));
    let budget = &run["budget"];
    if !budget.is_null() {
        rows.push((
            "budget phase",
            format!(
                "--api-rate-limit {} --api-burst {}, resync {} s, emulator latency {} ms, changes {} s after each restart",
                budget["apiRateLimit"],
                budget["apiBurst"],
                budget["resyncSeconds"],
                budget["emulatorLatencyMs"],
                budget["changesAfterSeconds"]
            ),
        ));
        if let Some(reps) = budget["repetitions"].as_array() {
            for (i, r) in reps.iter().enumerate() {
                let lat: Vec<String> = r["patchToUpdateMs"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|v| {
                                v.as_f64()
                                    .map_or("not seen".into(), |ms| format!("{ms:.0}"))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let lat = if lat.len() <= 10 {
                    lat.join(", ")
                } else {
                    format!("{} changes", lat.len())
                };
                rows.push((
                    "  restart: patch -> update (ms)",
                    format!(
                        "#{}: {lat}; {} calls/s, peak {} in 1 s, beyond the bucket {}, {} agents read in {} s ({} reads of other agents while a change waited)",
                        i + 1,
                        r["pipecatCallsPerSecond"],
                        r["peakCallsPerSecond"],
                        r["bucketExcess"],
                        r["agentsRead"],
                        r["seconds"],
                        r["backgroundReadsWhileAChangeWaited"]
                    ),
                ));
            }
        }
        let d = &budget["patchToUpdateMs"];
        rows.push((
            "  all changes: patch -> update (ms)",
            format!(
                "p50 {}, p99 {}, max {} ({} not seen)",
                d["p50"], d["p99"], d["max"], budget["changesNotSeen"]
            ),
        ));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<width$}  {v}");
    }
}

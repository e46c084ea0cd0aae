//! Scale benchmark of the operator: how its cost grows with the number of agents, against the
//! lowest cost the control plane allows. It prints figures and writes them as JSON; it asserts
//! nothing about wall-clock times.
//!
//! One run per agent count, on a dedicated kube-apiserver + etcd (the `testkit` harness), with the
//! Pipecat Cloud emulator in-process (zero delays, one API key) and the operator's release binary
//! as a child process (`--api-rate-limit 0`, a short poll interval):
//!
//! 1. floor: a bare client does only the unavoidable work for N agents (create, add the
//!    finalizer, write the status: three writes each) in a fresh namespace;
//! 2. cold convergence: N PipecatAgents created at once, timed until all are `Ready=True`,
//!    with the Pipecat calls by kind and the operator's apiserver requests (from
//!    kube-apiserver's `/metrics`, minus the bench's own creates);
//! 3. steady state: several resync periods with nothing changing (Pipecat calls and apiserver
//!    writes per minute: the goal for writes is zero);
//! 4. reaction latency: `spec.image` patches matched to the operator's `update_agent` calls in
//!    the emulator journal (p50, p99);
//! 5. memory: the operator's peak RSS (`VmHWM`);
//! 6. with `--budget-rate`, the API budget: the operator restarted with a rate limit (and the
//!    emulator with a latency) over the converged agents, spec changes made while its
//!    start-up pass and resyncs queue for the budget (patch -> update call, the peak call rate
//!    in any second).
//!
//! `hack/bench.sh` builds what is needed and runs it for several counts;
//! `cargo run --release --example bench -- --agents 1000` runs one (build the operator first
//! with `cargo build --release --bin pipecat-operator`). Results are upserted, by agent count,
//! into `target/bench/results.json`; the operator's log goes to `target/bench/operator-N.log`.
//!
//! This file holds the flags and the order of the phases; each phase has its own module
//! (`floor`, `cold`, `steady`, `latency`, `memory`), over the bench's world (`world`: control
//! plane and emulator), the operator process (`operator`), the objects it creates (`fleet`), the
//! figures it reads (`apiserver`, `procs`, `machine`, `stats`) and the results (`report`).

mod apiserver;
mod budget;
mod cold;
mod fleet;
mod floor;
mod latency;
mod machine;
mod memory;
mod operator;
mod procs;
mod report;
mod stats;
mod steady;
mod world;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;

use budget::Budget;
use cold::Cold;
use floor::Floor;
use latency::Reaction;
use memory::Memory;
use operator::{Launch, Operator};
use procs::{Pids, cpu_delta};
use report::Results;
use steady::Steady;
use world::World;

/// The emulator's one API key.
const API_KEY: &str = "pk_bench_local_emulator_key";
/// The agents' image, and the one the reaction phase changes it to.
const IMAGE: &str = "bench/voice-agent:1";
const CHANGED_IMAGE: &str = "bench/voice-agent:2";

/// Scale benchmark of pipecat-operator (one agent count per run).
#[derive(Parser, Debug)]
#[command(name = "bench")]
struct Args {
    /// Number of PipecatAgents.
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// Operator `--concurrency` (reconciles at once).
    #[arg(long, default_value_t = 32)]
    concurrency: u16,
    /// Operator `--resync-interval`.
    #[arg(long, default_value = "30s", value_parser = pipecat_operator::duration::parse)]
    resync: Duration,
    /// Operator `--poll-interval`.
    #[arg(long, default_value = "100ms", value_parser = pipecat_operator::duration::parse)]
    poll_interval: Duration,
    /// Operator `--max-poll-interval`.
    #[arg(long, default_value = "1s", value_parser = pipecat_operator::duration::parse)]
    max_poll_interval: Duration,
    /// How long to observe the steady state (default: 3.5 resync intervals).
    #[arg(long, value_parser = pipecat_operator::duration::parse)]
    steady: Option<Duration>,
    /// Requests in flight of the bench's own client (creates, and the floor's writes).
    #[arg(long, default_value_t = 32)]
    client_concurrency: usize,
    /// Spec changes for the reaction latency.
    #[arg(long, default_value_t = 50)]
    changes: usize,
    /// Pause between two spec changes.
    #[arg(long, default_value = "100ms", value_parser = pipecat_operator::duration::parse)]
    change_spacing: Duration,
    /// How long to measure the idle control plane before the operator starts (its CPU baseline).
    #[arg(long, default_value = "10s", value_parser = pipecat_operator::duration::parse)]
    idle: Duration,
    /// Give up waiting for cold convergence after this long.
    #[arg(long, default_value = "15m", value_parser = pipecat_operator::duration::parse)]
    timeout: Duration,
    /// Extra argument of the operator (repeatable), e.g. `--operator-arg=--foo=1`.
    #[arg(long = "operator-arg", allow_hyphen_values = true)]
    operator_arg: Vec<String>,
    /// Run the budget phase: the operator's `--api-rate-limit` there.
    #[arg(long)]
    budget_rate: Option<f64>,
    /// The operator's `--api-burst` in the budget phase (default: the operator's own, 20).
    #[arg(long)]
    budget_burst: Option<u32>,
    /// The operator's `--resync-interval` in the budget phase.
    #[arg(long, default_value = "60s", value_parser = pipecat_operator::duration::parse)]
    budget_resync: Duration,
    /// The emulator's latency per request in the budget phase.
    #[arg(long, default_value = "0", value_parser = pipecat_operator::duration::parse)]
    budget_latency: Duration,
    /// From the operator's restart to the first spec change.
    #[arg(long, default_value = "25s", value_parser = pipecat_operator::duration::parse)]
    budget_wait: Duration,
    /// Spec changes per restart.
    #[arg(long, default_value_t = 1)]
    budget_changes: usize,
    /// Pause between two of those changes.
    #[arg(long, default_value = "200ms", value_parser = pipecat_operator::duration::parse)]
    budget_spacing: Duration,
    /// Restarts (each with its changes).
    #[arg(long, default_value_t = 3)]
    budget_repeats: usize,
    /// How long to wait for the changes' update calls.
    #[arg(long, default_value = "120s", value_parser = pipecat_operator::duration::parse)]
    budget_timeout: Duration,
    /// Extra environment of the operator, `KEY=VALUE` (repeatable), e.g. `MALLOC_ARENA_MAX=2`.
    #[arg(long = "operator-env", value_parser = parse_env)]
    operator_env: Vec<(String, String)>,
    /// Start the operator under this command (split at spaces; the operator's path and
    /// arguments follow it), at every start. E.g. a heap profile:
    /// `--operator-wrapper "heaptrack -o target/heap/operator"` (writes
    /// `target/heap/operator.zst`; read it with `heaptrack_print -p target/heap/operator.zst`).
    /// The figures (RSS, CPU, connections) are read from the operator process itself, which
    /// then does not die with the bench.
    #[arg(long)]
    operator_wrapper: Option<String>,
    /// The operator binary (a release build).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/pipecat-operator"))]
    operator_bin: PathBuf,
    /// Results file (the run for this agent count is replaced, others are kept).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench/results.json"))]
    out: PathBuf,
}

/// Times one `GET /agents?includeActiveDeployment=true` (every agent at once) and one
/// `GET /agents/{name}`, with the size of each answer.
async fn list_probe(world: &World, n: usize) -> anyhow::Result<serde_json::Value> {
    let http = reqwest::Client::new();
    let base = world.emu.base_url();
    let time = |url: String| {
        let http = http.clone();
        async move {
            let t0 = std::time::Instant::now();
            let body = http
                .get(url)
                .bearer_auth(API_KEY)
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            anyhow::Ok((t0.elapsed().as_secs_f64() * 1000.0, body.len()))
        }
    };
    let (list_ms, list_bytes) = time(format!("{base}/agents?includeActiveDeployment=true")).await?;
    let (get_ms, get_bytes) = time(format!("{base}/agents/{}", fleet::agent_name(n / 2))).await?;
    println!(
        "==> one list call: {list_ms:.1} ms, {list_bytes} bytes; one read: {get_ms:.1} ms, {get_bytes} bytes"
    );
    Ok(serde_json::json!({
        "listMs": stats::round1(list_ms),
        "listBytes": list_bytes,
        "getMs": stats::round1(get_ms),
        "getBytes": get_bytes,
    }))
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let n = args.agents;
    anyhow::ensure!(n > 0, "--agents must be at least 1");
    let steady = args.steady.unwrap_or(args.resync.mul_f64(3.5));
    let date = jiff::Timestamp::now();
    let machine = machine::machine();
    let out_dir = args.out.parent().map(Path::to_path_buf).unwrap_or_default();
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("failed to create {}", out_dir.display()))?;
    println!(
        "==> {n} agents: operator concurrency {}, resync {:?}, poll {:?}; client concurrency {}",
        args.concurrency, args.resync, args.poll_interval, args.client_concurrency
    );

    let world = World::start().await?;
    // Warm-up, so that neither measured phase pays for the apiserver's first requests.
    let warm_ns = world.namespace("bench-warmup").await?;
    floor::write_ready_agents(&world.client, &warm_ns, n.min(64), args.client_concurrency).await?;

    let mut pids = Pids {
        operator: 0,
        apiserver: world.cp.apiserver_pid().unwrap_or(0),
        etcd: world.cp.etcd_pid().unwrap_or(0),
    };

    // 1. The floor.
    let floor = Floor::run(&world, &pids, n, args.client_concurrency).await?;

    // The control plane's own cost with nobody talking to it.
    let cpu_before = pids.cpu();
    tokio::time::sleep(args.idle).await;
    let idle_cpu = cpu_delta(cpu_before, pids.cpu());

    // The operator, watching a namespace of its own.
    let ns = world.namespace("bench-agents").await?;
    world.create_api_key_secret(&ns).await?;
    let log_path = out_dir.join(format!("operator-{n}.log"));
    let mut operator = Operator::start(
        &args,
        &world.cp,
        &ns,
        &world.emu.base_url(),
        &log_path,
        &Launch::unlimited(&args),
    )?;
    operator.wait_ready(Duration::from_secs(60)).await?;
    pids.operator = operator.pid();

    // 2. Cold convergence.
    let cold = Cold::run(&world, &operator, &pids, &ns, &args, floor.time).await?;

    // 3. Steady state.
    let steady = Steady::run(&world, &operator, &pids, steady, args.resync).await?;

    // One list call against one read (what list-based drift detection would trade).
    let list_probe = list_probe(&world, n).await?;

    // 4. Reaction latency.
    let reaction = Reaction::run(&world, &ns, n, args.changes, args.change_spacing).await?;

    // 5. Memory, then stop everything.
    let memory = Memory::measure(pids.operator, cold.rss_before, cold.rss_after);
    operator.stop();
    let operator_log = operator::log_summary(&log_path);

    // 6. The API budget.
    let budget = match args.budget_rate {
        Some(_) => Some(Budget::run(&world, &args, &mut pids, &ns, &out_dir).await?),
        None => None,
    };
    world.shutdown().await?;

    let run = Results {
        date,
        machine,
        idle_cpu,
        floor,
        cold,
        steady,
        reaction,
        memory,
        operator_log,
        list_probe,
        budget,
    }
    .to_json(&args);
    report::print_table(&run);
    report::save(&args.out, run)?;
    println!("\nresults: {}", args.out.display());
    println!("operator log: {}", log_path.display());
    Ok(())
}

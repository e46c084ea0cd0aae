//! A local emulator of the Pipecat Cloud management API.
//!
//! It answers as Pipecat's official OpenAPI contract says (`/v1/agents`,
//! `/v1/public/{agent}/start`, `/v1/secrets`, `/v1/regions`; the contract is vendored in
//! `contract/pipecat-cloud/` and embedded by [`Contract`]), for the operator's tests and for
//! users who want to try manifests offline: each API key is an organization, agents go through
//! deployments whose lifecycle (reconciliation, readiness, crashes, pull failures) is computed
//! from timestamps, secret sets provision asynchronously, and sessions fill an agent's pool up to
//! `maxAgents`. In strict mode ([`Config::strict`]) it validates every request and its own
//! answers against the contract and journals each violation.
//!
//! Beside the API, an admin API under `/_emulator/` (no auth) injects faults, reads the
//! journal of requests, changes delays and failure patterns at run time, edits agents out of
//! band (drift) and ends sessions. [`AdminClient`] wraps it for tests. `docs/EMULATOR.md`
//! describes both.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use pipecat_cloud_emulator::{self as emulator, Config};
//! let handle = emulator::start(Config {
//!     api_keys: vec!["pk_test".into()],
//!     ..Config::default()
//! })
//! .await?;
//! println!("API at {}", handle.base_url());
//! handle.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod admin;
mod agents;
mod api;
mod assumptions;
mod body;
mod client;
mod config;
mod contract;
mod deployment;
mod error;
mod faults;
mod journal;
mod org;
mod pattern;
mod persist;
mod regions;
mod secret_sets;
mod server;
mod sessions;
mod settings;
mod stamps;
mod state;
mod views;

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub use admin::{ConfigUpdate, ResetOptions, RuntimeConfig, SessionInfo, Stats};
pub use assumptions::{MAX_AGENTS_LIMIT, Profile, SEED_FIELDS, docker_hub_image};
pub use client::AdminClient;
pub use contract::{Contract, OPENAPI_JSON, Violation};
pub use faults::{ActiveFault, Fault, FaultBody};
pub use journal::{Counts, JournalEntry, JournalFilter};

use faults::Faults;
use journal::Journal;
use pattern::Pattern;
pub use regions::{Region, default_regions};
use settings::Settings;
use state::State;

/// Everything the emulator needs to start. `Config::default()` listens on `127.0.0.1:0` with
/// zero delays, no failure patterns, no keys (any bearer token is accepted as its own
/// organization) and no state file.
#[derive(Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Private API keys; each one is a separate organization. Empty: any bearer token is
    /// accepted and is its own organization.
    pub api_keys: Vec<String>,
    /// `(public, private)` key pairs: the public key may start sessions of the private key's
    /// organization.
    pub public_keys: Vec<(String, String)>,
    /// From a deployment's creation to its pods being ready (or its failure showing).
    pub ready_delay: Duration,
    /// From a deployment's creation to `reconciledDeploymentId` catching up (never before
    /// `ready_delay`).
    pub reconcile_delay: Duration,
    /// From `PUT /secrets/{set}` to the set being ready.
    pub secret_ready_delay: Duration,
    /// Images (glob, or regex starting with `^`) whose deployments crash.
    pub crash_image_pattern: Option<String>,
    /// Images whose deployments fail to pull (`PCC_IMAGE_PULL_UNAUTHORIZED`).
    pub pull_fail_image_pattern: Option<String>,
    /// Secret set names whose provisioning fails.
    pub secret_fail_pattern: Option<String>,
    /// Load state from this file at start and save it there on change and on shutdown.
    pub state_file: Option<PathBuf>,
    /// How many journal entries to keep (counts are kept for every request).
    pub journal_capacity: usize,
    /// How agent reads and writes answer (`full`, `seed`, `rewriting`).
    pub profile: Profile,
    /// Added to every `/v1` request before it is handled (a real service's round trip:
    /// network and processing). Zero answers at once.
    pub latency: Duration,
    /// Strict mode: every `/v1` request is checked against the official contract (unknown
    /// fields and `null` for a field not marked nullable are refused with a 400), every answer
    /// of the emulator's own is checked too, and each violation is journaled.
    pub strict: bool,
    /// The regions organizations may use (`GET /regions`; creates and `PUT /secrets` refuse
    /// others). Default: the contract's example list ([`default_regions`]).
    pub regions: Vec<Region>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            api_keys: Vec::new(),
            public_keys: Vec::new(),
            ready_delay: Duration::ZERO,
            reconcile_delay: Duration::ZERO,
            secret_ready_delay: Duration::ZERO,
            crash_image_pattern: None,
            pull_fail_image_pattern: None,
            secret_fail_pattern: None,
            state_file: None,
            journal_capacity: 100_000,
            profile: Profile::Full,
            latency: Duration::ZERO,
            strict: false,
            regions: default_regions(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field(
                "api_keys",
                &format_args!("[{} redacted]", self.api_keys.len()),
            )
            .field(
                "public_keys",
                &format_args!("[{} redacted]", self.public_keys.len()),
            )
            .field("ready_delay", &self.ready_delay)
            .field("reconcile_delay", &self.reconcile_delay)
            .field("secret_ready_delay", &self.secret_ready_delay)
            .field("crash_image_pattern", &self.crash_image_pattern)
            .field("pull_fail_image_pattern", &self.pull_fail_image_pattern)
            .field("secret_fail_pattern", &self.secret_fail_pattern)
            .field("state_file", &self.state_file)
            .field("journal_capacity", &self.journal_capacity)
            .field("profile", &self.profile)
            .field("latency", &self.latency)
            .field("strict", &self.strict)
            .field("regions", &self.regions)
            .finish()
    }
}

fn compile(pattern: Option<&str>, what: &str) -> anyhow::Result<Option<Pattern>> {
    pattern
        .map(|p| Pattern::image(p).with_context(|| format!("invalid {what}")))
        .transpose()
}

impl Config {
    fn settings(&self) -> anyhow::Result<Settings> {
        if self.regions.is_empty() {
            anyhow::bail!("no regions configured: give at least one");
        }
        Ok(Settings {
            profile: self.profile,
            ready_delay: self.ready_delay,
            reconcile_delay: self.reconcile_delay,
            secret_ready_delay: self.secret_ready_delay,
            crash_image: compile(self.crash_image_pattern.as_deref(), "crash image pattern")?,
            pull_fail_image: compile(
                self.pull_fail_image_pattern.as_deref(),
                "pull-failure image pattern",
            )?,
            secret_fail: compile(
                self.secret_fail_pattern.as_deref(),
                "secret failure pattern",
            )?,
            regions: self.regions.clone(),
        })
    }
}

/// A stable, non-reversible name for the organization of a key (FNV-1a), so that the state
/// file never holds keys.
fn org_key(api_key: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in api_key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("org-{hash:016x}")
}

/// Which keys exist and which organization each one opens.
pub(crate) struct Auth {
    private: HashMap<String, String>,
    public: HashMap<String, String>,
    open: bool,
}

impl Auth {
    fn new(config: &Config) -> anyhow::Result<Self> {
        let private: HashMap<String, String> = config
            .api_keys
            .iter()
            .filter(|k| !k.is_empty())
            .map(|k| (k.clone(), org_key(k)))
            .collect();
        let open = private.is_empty();
        let mut public = HashMap::new();
        for (i, (public_key, private_key)) in config.public_keys.iter().enumerate() {
            if !open && !private.contains_key(private_key) {
                anyhow::bail!(
                    "public key pair {} names a private key that is not among the API keys",
                    i + 1
                );
            }
            public.insert(public_key.clone(), org_key(private_key));
        }
        Ok(Self {
            private,
            public,
            open,
        })
    }

    /// The organization of a private key.
    fn private_org(&self, token: &str) -> Option<String> {
        if token.is_empty() {
            return None;
        }
        if self.open {
            return Some(org_key(token));
        }
        self.private.get(token).cloned()
    }

    /// The organization of a key that may start sessions (public or private).
    fn session_org(&self, token: &str) -> Option<String> {
        self.public
            .get(token)
            .cloned()
            .or_else(|| self.private_org(token))
    }
}

/// The bearer token of a request, if any.
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Locks a mutex, recovering from a panicked holder (the data stays consistent: every change
/// is applied under the lock in one step).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What every request handler shares.
pub(crate) struct Shared {
    state: Mutex<State>,
    journal: Mutex<Journal>,
    faults: Mutex<Faults>,
    /// Number of active faults, read without locking on every request.
    fault_count: AtomicUsize,
    /// The latency added to every `/v1` request, in microseconds.
    latency_us: AtomicU64,
    /// Strict mode (see [`Config::strict`]).
    strict: AtomicBool,
    auth: Auth,
    dirty: Notify,
    persistent: bool,
}

/// A duration in whole microseconds (saturating).
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Shared {
    /// The latency added to every `/v1` request.
    fn latency(&self) -> Duration {
        Duration::from_micros(self.latency_us.load(Ordering::Relaxed))
    }

    /// Changes the latency added to every `/v1` request (from the next request on).
    fn set_latency(&self, latency: Duration) {
        self.latency_us.store(micros(latency), Ordering::Relaxed);
    }

    /// Whether strict mode is on.
    fn strict(&self) -> bool {
        self.strict.load(Ordering::Relaxed)
    }

    /// Turns strict mode on or off (from the next request on).
    fn set_strict(&self, strict: bool) {
        self.strict.store(strict, Ordering::Relaxed);
    }

    /// Runs `f` on the organization `org` under the state lock.
    fn with_org<R>(
        &self,
        org: &str,
        f: impl FnOnce(&mut org::Org, &Settings, jiff::Timestamp) -> R,
    ) -> R {
        lock(&self.state).with_org(org, f)
    }

    /// Marks the state as changed, for the state file.
    fn changed(&self) {
        if self.persistent {
            self.dirty.notify_one();
        }
    }
}

/// A running emulator.
pub struct Handle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    saver: Option<JoinHandle<()>>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").field("addr", &self.addr).finish()
    }
}

impl Handle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT` (a wildcard listen address is shown as loopback).
    pub fn root_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        format!("http://{addr}")
    }

    /// The API base URL, `http://HOST:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.root_url())
    }

    /// A client of the admin API.
    pub fn admin(&self) -> AdminClient {
        AdminClient::new(self.root_url())
    }

    /// Fails, listing them, when strict mode journaled any contract violation since the last
    /// journal reset (read in process, without a request).
    pub fn check_contract(&self) -> anyhow::Result<()> {
        self.contract_check().check()
    }

    /// A handle on strict mode's findings that outlives this one (e.g. for a test's `Drop`).
    pub fn contract_check(&self) -> ContractCheck {
        ContractCheck {
            shared: self.shared.clone(),
        }
    }

    /// Stops accepting connections, lets open requests finish (up to 5 s), and saves the state
    /// file when there is one.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        if let Err(e) = self.server.await {
            tracing::warn!(error = %e, "emulator server task failed");
        }
        if let Some(saver) = self.saver
            && let Err(e) = saver.await
        {
            tracing::warn!(error = %e, "emulator state saver failed");
        }
    }
}

/// Reads strict mode's findings of a running emulator, in process.
pub struct ContractCheck {
    shared: Arc<Shared>,
}

impl fmt::Debug for ContractCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContractCheck").finish_non_exhaustive()
    }
}

impl ContractCheck {
    /// Fails, listing them, when strict mode journaled any contract violation since the last
    /// journal reset (evicted entries counted too).
    pub fn check(&self) -> anyhow::Result<()> {
        let kept = lock(&self.shared.journal);
        let entries = kept.query(&JournalFilter {
            violations: true,
            ..JournalFilter::default()
        });
        journal::violation_report(kept.counts().violations, &entries)
    }
}

/// Binds the listen address, loads the state file if any, and serves in the background.
pub async fn start(config: Config) -> anyhow::Result<Handle> {
    let settings = config.settings()?;
    let auth = Auth::new(&config)?;
    let mut state = State::new(settings);
    if let Some(path) = &config.state_file
        && let Some(snapshot) = persist::load(path)?
    {
        state.restore(snapshot);
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("failed to listen on {}", config.listen))?;
    let addr = listener
        .local_addr()
        .context("failed to read the listen address")?;
    let shared = Arc::new(Shared {
        state: Mutex::new(state),
        journal: Mutex::new(Journal::new(config.journal_capacity)),
        faults: Mutex::new(Faults::default()),
        fault_count: AtomicUsize::new(0),
        latency_us: AtomicU64::new(micros(config.latency)),
        strict: AtomicBool::new(config.strict),
        auth,
        dirty: Notify::new(),
        persistent: config.state_file.is_some(),
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let shared_handle = shared.clone();
    let router = server::router(shared.clone());
    let server = tokio::spawn(server::serve(
        listener,
        shared.clone(),
        router,
        shutdown_rx.clone(),
    ));
    let saver = config
        .state_file
        .clone()
        .map(|path| tokio::spawn(persist::saver(shared, path, shutdown_rx)));
    if config.api_keys.is_empty() {
        tracing::warn!(
            "no API keys configured: any bearer token is accepted as its own organization"
        );
    }
    tracing::info!(%addr, "pipecat cloud emulator started");
    Ok(Handle {
        addr,
        shared: shared_handle,
        shutdown,
        server,
        saver,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_keys_are_stable_and_hide_the_key() {
        assert_eq!(org_key("pk_a"), org_key("pk_a"));
        assert_ne!(org_key("pk_a"), org_key("pk_b"));
        assert!(!org_key("pk_secret").contains("secret"));
    }

    #[test]
    fn auth_modes() {
        let closed = Auth::new(&Config {
            api_keys: vec!["a".into()],
            public_keys: vec![("pub".into(), "a".into())],
            ..Config::default()
        })
        .unwrap();
        assert_eq!(closed.private_org("a"), Some(org_key("a")));
        assert_eq!(closed.private_org("pub"), None);
        assert_eq!(closed.session_org("pub"), Some(org_key("a")));
        assert_eq!(closed.private_org("b"), None);
        let open = Auth::new(&Config::default()).unwrap();
        assert_eq!(open.private_org("anything"), Some(org_key("anything")));
        assert!(
            Auth::new(&Config {
                api_keys: vec!["a".into()],
                public_keys: vec![("pub".into(), "zzz".into())],
                ..Config::default()
            })
            .is_err()
        );
    }

    #[test]
    fn config_debug_redacts_keys() {
        let config = Config {
            api_keys: vec!["pk_live_secret".into()],
            ..Config::default()
        };
        let text = format!("{config:?}");
        assert!(!text.contains("pk_live_secret"));
        assert!(text.contains("1 redacted"));
    }

    #[test]
    fn bearer_parsing() {
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer  k1 ".parse().unwrap());
        assert_eq!(bearer(&h), Some("k1"));
        h.insert("authorization", "Basic k1".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}

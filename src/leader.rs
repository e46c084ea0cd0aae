//! Leader election on a `coordination.k8s.io/v1` Lease, the way client-go does it: the holder
//! renews the lease every retry period; a standby takes over once it has seen the same record,
//! unrenewed, for a whole lease duration (local time only, so clock skew does not matter); a
//! leader that cannot renew within the renew deadline has lost, and must stop at once; on
//! shutdown the holder releases the lease so a standby takes over immediately.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

/// Leader election flags (each default lives in its attribute).
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Elect a leader through a Lease so that only one replica reconciles.
    #[arg(long, env = "PIPECAT_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub leader_election_namespace: String,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "PIPECAT_LEADER_ELECTION_ID",
        default_value = "pipecat-operator"
    )]
    pub leader_election_id: String,
    /// How long the leader's lease is valid without renewal (a standby takes over after it).
    #[arg(long, env = "PIPECAT_LEASE_DURATION", default_value = "15s", value_parser = crate::duration::parse)]
    pub lease_duration: Duration,
    /// A leader that could not renew its lease for this long stops reconciling.
    #[arg(long, env = "PIPECAT_RENEW_DEADLINE", default_value = "10s", value_parser = crate::duration::parse)]
    pub renew_deadline: Duration,
    /// Interval of lease renewals and acquisition attempts.
    #[arg(long, env = "PIPECAT_RETRY_PERIOD", default_value = "2s", value_parser = crate::duration::parse)]
    pub retry_period: Duration,
}

impl Args {
    /// The election settings, with this instance's identity: the pod name (`POD_NAME`), else
    /// the host name and process id.
    pub fn config(&self) -> Config {
        Config {
            namespace: self.leader_election_namespace.clone(),
            name: self.leader_election_id.clone(),
            identity: std::env::var("POD_NAME")
                .unwrap_or_else(|_| format!("{}-{}", hostname(), std::process::id())),
            lease_duration: self.lease_duration,
            renew_deadline: self.renew_deadline,
            retry_period: self.retry_period,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "pipecat-operator".into())
}

/// Leader election settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This instance's identity (the pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long gives up.
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    pub retry_period: Duration,
}

/// The record as last seen, and when (local clock) it was first seen.
struct Observed {
    key: (Option<String>, Option<MicroTime>, Option<i32>),
    at: Instant,
}

/// Tries to acquire and renew one Lease.
pub struct Elector {
    api: Api<Lease>,
    cfg: Config,
    observed: Option<Observed>,
}

impl Elector {
    /// An elector for `cfg`.
    pub fn new(client: kube::Client, cfg: Config) -> Self {
        Elector {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
        }
    }

    fn duration_secs(&self) -> i32 {
        self.cfg.lease_duration.as_secs().max(1) as i32
    }

    /// One attempt: `Ok(true)` when this instance holds the lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let Some(lease) = self.api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.cfg.identity.clone()),
                    lease_duration_seconds: Some(self.duration_secs()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let key = (
            spec.holder_identity.clone(),
            spec.renew_time.clone(),
            spec.lease_duration_seconds,
        );
        if self.observed.as_ref().is_none_or(|o| o.key != key) {
            self.observed = Some(Observed {
                key,
                at: Instant::now(),
            });
        }
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let mine = holder == Some(self.cfg.identity.as_str());
        let valid_for = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        let seen_for = self
            .observed
            .as_ref()
            .map(|o| o.at.elapsed())
            .unwrap_or_default();
        if holder.is_some() && !mine && seen_for < valid_for {
            return Ok(false);
        }
        let new_spec = LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.duration_secs()),
            acquire_time: if mine {
                spec.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(!mine)),
            ..spec
        };
        let updated = Lease {
            metadata: lease.metadata.clone(),
            spec: Some(new_spec),
        };
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (if held) so that a standby can take over at once.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(lease) = self.api.get_opt(&self.cfg.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        let now = MicroTime(jiff::Timestamp::now());
        let released = Lease {
            metadata: lease.metadata.clone(),
            spec: Some(LeaseSpec {
                holder_identity: None,
                lease_duration_seconds: Some(1),
                renew_time: Some(now.clone()),
                acquire_time: Some(now),
                ..spec
            }),
        };
        self.api
            .replace(&self.cfg.name, &PostParams::default(), &released)
            .await?;
        Ok(())
    }
}

/// Held leadership: renewed in the background until released or lost.
pub struct Leadership {
    lost: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Elector>,
}

impl Leadership {
    /// Resolves when the lease is lost (not renewed within the renew deadline, or taken).
    pub async fn lost(&mut self) {
        while !*self.lost.borrow() {
            if self.lost.changed().await.is_err() {
                return;
            }
        }
    }

    /// Stops renewing and releases the lease.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Ok(mut elector) = self.task.await {
            match elector.release().await {
                Ok(()) => info!(lease = %elector.cfg.name, "released the leader lease"),
                Err(e) => warn!(error = %e, "failed to release the leader lease"),
            }
        }
    }
}

/// Waits until this instance holds the lease (or `cancel` resolves: `None`).
pub async fn acquire(
    client: kube::Client,
    cfg: Config,
    cancel: impl std::future::Future<Output = ()>,
) -> Option<Leadership> {
    let mut elector = Elector::new(client, cfg.clone());
    tokio::pin!(cancel);
    info!(lease = %cfg.name, namespace = %cfg.namespace, identity = %cfg.identity, "waiting for the leader lease");
    loop {
        match elector.try_acquire_or_renew().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => warn!(error = %e, "failed to acquire the leader lease"),
        }
        let pause = crate::jitter::jitter(cfg.retry_period, 0.2);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = &mut cancel => return None,
        }
    }
    info!(lease = %cfg.name, identity = %cfg.identity, "acquired the leader lease");
    let (lost_tx, lost_rx) = watch::channel(false);
    let (stop_tx, mut stop_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut last_renew = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(cfg.retry_period) => {}
                _ = &mut stop_rx => return elector,
            }
            let attempt =
                tokio::time::timeout(cfg.renew_deadline, elector.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(true)) => last_renew = Instant::now(),
                Ok(Ok(false)) => {
                    warn!(lease = %cfg.name, "the leader lease was taken by another instance");
                    let _ = lost_tx.send(true);
                    return elector;
                }
                Ok(Err(e)) => warn!(error = %e, "failed to renew the leader lease"),
                Err(_) => warn!("renewing the leader lease timed out"),
            }
            if last_renew.elapsed() > cfg.renew_deadline {
                warn!(lease = %cfg.name, "could not renew the leader lease within the renew deadline");
                let _ = lost_tx.send(true);
                return elector;
            }
        }
    });
    Some(Leadership {
        lost: lost_rx,
        stop: Some(stop_tx),
        task,
    })
}

//! The bench's world: a dedicated kube-apiserver + etcd with the CRDs applied (the shared test
//! harness), the Pipecat Cloud emulator in-process (zero delays, one API key), and the
//! namespaces and API key secret the phases use.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use pipecat_cloud_emulator::{self as emulator, AdminClient};
use serde_json::json;
use testkit::controlplane::ControlPlane;

use crate::API_KEY;

/// The control plane, a client of it, and the emulator.
pub struct World {
    pub cp: Arc<ControlPlane>,
    pub client: kube::Client,
    pub emu: emulator::Handle,
    pub admin: AdminClient,
}

impl World {
    /// Starts the control plane (and applies the CRDs) and the emulator.
    pub async fn start() -> anyhow::Result<World> {
        println!("==> starting kube-apiserver + etcd (dedicated)");
        let cp = Arc::new(tokio::task::spawn_blocking(ControlPlane::start_dedicated).await?);
        {
            let cp = cp.clone();
            tokio::task::spawn_blocking(move || cp.apply_crds()).await?;
        }
        let client = cp.client();
        let emu = emulator::start(emulator::Config {
            api_keys: vec![API_KEY.to_string()],
            journal_capacity: 1_000_000,
            ..Default::default()
        })
        .await?;
        let admin: AdminClient = emu.admin();
        Ok(World {
            cp,
            client,
            emu,
            admin,
        })
    }

    /// A fresh namespace named after `prefix`.
    pub async fn namespace(&self, prefix: &'static str) -> anyhow::Result<String> {
        let cp = self.cp.clone();
        Ok(tokio::task::spawn_blocking(move || cp.namespace(prefix)).await?)
    }

    /// The Secret holding the emulator's API key, in `ns`, as the operator expects it.
    pub async fn create_api_key_secret(&self, ns: &str) -> anyhow::Result<()> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "pipecat-api-key"},
            "stringData": {"api-key": API_KEY},
        }))?;
        secrets.create(&PostParams::default(), &secret).await?;
        Ok(())
    }

    /// kube-apiserver's port (to count the operator's connections to it).
    pub fn apiserver_port(&self) -> u16 {
        self.cp
            .server_url()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// Stops the emulator, then the control plane.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.emu.shutdown().await;
        let cp = self.cp;
        tokio::task::spawn_blocking(move || drop(cp)).await?;
        Ok(())
    }
}

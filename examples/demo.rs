//! The one-command demo (`hack/demo.sh`): a real kube-apiserver + etcd on loopback, the Pipecat
//! Cloud emulator and the operator, with `examples/voice-starter.yaml` applied and Ready.
//! No cloud account and no Docker needed. Runs until Ctrl-C (or exits at once with `--exit`).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipecat_operator::cloud;
use pipecat_operator::controller::{self, Context};
use pipecat_operator::emulator;
use testkit::controlplane::{ControlPlane, client_from_kubeconfig, describe_output};

const DEMO_KEY: &str = "pk_demo_local_emulator_key";

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl is on PATH")
}

fn step(msg: &str) {
    println!("\n==> {msg}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let exit_after = std::env::args().any(|a| a == "--exit");
    let started = Instant::now();
    let root = env!("CARGO_MANIFEST_DIR");

    step("starting kube-apiserver and etcd on loopback (envtest-style, no Docker)");
    let cp = tokio::task::spawn_blocking(ControlPlane::start_dedicated).await?;
    let kubeconfig = cp.kubeconfig_path().to_path_buf();
    println!(
        "    apiserver {}  kubeconfig {}",
        cp.server_url(),
        kubeconfig.display()
    );

    step("installing the PipecatAgent CRD (crds/)");
    cp.apply_crds();

    step("starting the Pipecat Cloud emulator");
    let emu = emulator::start(emulator::Config {
        api_keys: vec![DEMO_KEY.to_string()],
        ready_delay: Duration::from_secs(2),
        reconcile_delay: Duration::from_secs(3),
        ..Default::default()
    })
    .await?;
    let admin = emu.admin();
    admin
        .create_secret_set(
            DEMO_KEY,
            "voice-starter-secrets",
            &[("OPENAI_API_KEY", "sk-demo")],
        )
        .await?;
    admin
        .create_image_pull_secret_set(DEMO_KEY, "dockerhub-credentials", "docker.io", "user:token")
        .await?;
    println!(
        "    API {}  (secret sets voice-starter-secrets and dockerhub-credentials created)",
        emu.base_url()
    );

    step("creating namespace bots and the API key Secret");
    for args in [
        vec!["create", "namespace", "bots"],
        vec![
            "-n",
            "bots",
            "create",
            "secret",
            "generic",
            "pipecat-api-key",
            &format!("--from-literal=api-key={DEMO_KEY}"),
        ],
    ] {
        let out = kubectl(&kubeconfig, &args);
        anyhow::ensure!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            describe_output(&out)
        );
    }

    step("starting the operator (logs: .demo/operator.log)");
    let log_dir = std::path::Path::new(root).join(".demo");
    std::fs::create_dir_all(&log_dir)?;
    let log = std::fs::File::create(log_dir.join("operator.log"))?;
    tracing_subscriber::fmt()
        .with_env_filter("info,kube=warn")
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(log))
        .init();
    let ctx = Arc::new(Context::new(
        client_from_kubeconfig(&kubeconfig),
        cloud::Client::new(cloud::ClientConfig {
            base_url: emu.base_url(),
            timeout: Duration::from_secs(10),
        })?,
        controller::Config {
            poll_interval: Duration::from_secs(1),
            max_poll_interval: Duration::from_secs(5),
            resync_interval: Duration::from_secs(15),
            ..Default::default()
        },
    ));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(controller::run(ctx, async move {
        let _ = stop_rx.await;
    }));

    step("kubectl apply -f examples/voice-starter.yaml");
    let example = format!("{root}/examples/voice-starter.yaml");
    let out = kubectl(&kubeconfig, &["apply", "-f", &example]);
    print!("{}", String::from_utf8_lossy(&out.stdout));
    anyhow::ensure!(out.status.success(), "{}", describe_output(&out));

    step("kubectl wait --for=condition=Ready pipecatagent/voice-starter -n bots");
    let out = kubectl(
        &kubeconfig,
        &[
            "wait",
            "--for=condition=Ready",
            "pipecatagent/voice-starter",
            "-n",
            "bots",
            "--timeout=120s",
        ],
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
    anyhow::ensure!(out.status.success(), "{}", describe_output(&out));

    step("kubectl get pipecatagents -A");
    print!(
        "{}",
        String::from_utf8_lossy(&kubectl(&kubeconfig, &["get", "pipecatagents", "-A"]).stdout)
    );

    step("status of bots/voice-starter");
    let out = kubectl(
        &kubeconfig,
        &[
            "get",
            "pipecatagent",
            "voice-starter",
            "-n",
            "bots",
            "-o",
            "jsonpath={.status}",
        ],
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    println!("{}", serde_saphyr::to_string(&status)?);
    println!(
        "converged in {:.1}s from a cold start of the control plane",
        started.elapsed().as_secs_f64()
    );

    let root_url = emu.root_url();
    println!(
        "\nTry it (in another shell):
  export KUBECONFIG={kc}
  kubectl get pca -A -w                                   # watch the agents
  kubectl -n bots patch pca voice-starter --type merge -p '{{\"spec\":{{\"image\":\"your-dockername/voice-starter:0.2\"}}}}'
  kubectl -n bots describe pca voice-starter              # conditions and events
  curl -s -H 'Authorization: Bearer {key}' {api}/agents/voice-starter   # the emulated Pipecat Cloud
  curl -s -X PATCH -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\
       -d '{{\"image\":\"someone/else:latest\"}}' {root_url}/_emulator/agents/voice-starter   # drift: the operator reverts it
  kubectl -n bots delete pca voice-starter                # deletes the remote agent too
Stop with Ctrl-C: everything (apiserver, etcd, emulator, operator) is torn down.",
        kc = kubeconfig.display(),
        key = DEMO_KEY,
        api = emu.base_url(),
    );

    if !exit_after {
        tokio::signal::ctrl_c().await?;
    }
    println!("\nstopping");
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), operator).await;
    emu.shutdown().await;
    drop(cp);
    Ok(())
}

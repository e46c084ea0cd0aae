//! The one-command demo (`hack/demo.sh`): a real kube-apiserver + etcd on loopback, the Pipecat
//! Cloud emulator and the operator, with `examples/secret-sets.yaml` applied: the voice-starter
//! agent, whose secrets come from Kubernetes Secrets through two PipecatSecretSets, waits for
//! them, becomes Ready, and is redeployed once when a key is rotated.
//! No cloud account and no Docker needed. Runs until Ctrl-C (or exits at once with `--exit`).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipecat_cloud_emulator as emulator;
use pipecat_operator::agents::Context;
use pipecat_operator::cloud;
use pipecat_operator::controllers;
use pipecat_operator::runtime;
use pipecat_operator::secret_sets;
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

    step("installing the PipecatAgent and PipecatSecretSet CRDs (crds/)");
    cp.apply_crds();

    step("starting the Pipecat Cloud emulator");
    let emu = emulator::start(emulator::Config {
        api_keys: vec![DEMO_KEY.to_string()],
        ready_delay: Duration::from_secs(2),
        reconcile_delay: Duration::from_secs(3),
        // A secret set provisions for a few seconds after each change, as in Pipecat Cloud.
        secret_ready_delay: Duration::from_secs(3),
        // Every request and answer is checked against Pipecat Cloud's official contract.
        strict: true,
        ..Default::default()
    })
    .await?;
    println!(
        "    API {}  (no secret sets: they come from Kubernetes Secrets)",
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
    let kube = client_from_kubeconfig(&kubeconfig);
    let api = cloud::Client::new(cloud::ClientConfig {
        base_url: emu.base_url(),
        timeout: Duration::from_secs(10),
    })?;
    let config = runtime::Config {
        poll_interval: Duration::from_secs(1),
        max_poll_interval: Duration::from_secs(5),
        resync_interval: Duration::from_secs(15),
        ..Default::default()
    };
    // The operator's own namespace (its secret set digest key) is `default` here.
    let ctx = Arc::new(Context::new(kube.clone(), api.clone(), config.clone()));
    let sets = Arc::new(secret_sets::Context::new(
        kube,
        api,
        config,
        "default".into(),
        ctx.events.clone(),
        ctx.metrics.clone(),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let operator = tokio::spawn(controllers::run(ctx, sets, stopped(stop_rx)));

    step(
        "kubectl apply -f examples/secret-sets.yaml   (2 Secrets, 2 PipecatSecretSets, the agent)",
    );
    let example = format!("{root}/examples/secret-sets.yaml");
    let out = kubectl(&kubeconfig, &["apply", "-f", &example]);
    print!("{}", String::from_utf8_lossy(&out.stdout));
    anyhow::ensure!(out.status.success(), "{}", describe_output(&out));

    step("the agent waits while its secret sets provision");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = kubectl(
            &kubeconfig,
            &[
                "get",
                "pca",
                "voice-starter",
                "-n",
                "bots",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Synced\")].reason}",
            ],
        );
        if String::from_utf8_lossy(&out.stdout) == "SecretSetNotReady" || Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    print!(
        "{}",
        String::from_utf8_lossy(&kubectl(&kubeconfig, &["get", "pcss,pca", "-n", "bots"]).stdout)
    );

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

    step("kubectl get pipecat -A   (the category: secret sets and agents)");
    print!(
        "{}",
        String::from_utf8_lossy(&kubectl(&kubeconfig, &["get", "pipecat", "-A"]).stdout)
    );

    step("rotating a key: kubectl -n bots patch secret voice-starter-env ...");
    for args in [
        vec![
            "-n",
            "bots",
            "patch",
            "secret",
            "voice-starter-env",
            "--type",
            "merge",
            "-p",
            r#"{"stringData":{"OPENAI_API_KEY":"sk-rotated"}}"#,
        ],
        vec![
            "-n",
            "bots",
            "wait",
            "pca/voice-starter",
            "--for=jsonpath={.status.secretSetRevisions[?(@.name==\"voice-starter-secrets\")].revision}=2",
            "--timeout=60s",
        ],
        vec![
            "-n",
            "bots",
            "wait",
            "pca/voice-starter",
            "--for=condition=Ready",
            "--timeout=60s",
        ],
    ] {
        let out = kubectl(&kubeconfig, &args);
        print!("{}", String::from_utf8_lossy(&out.stdout));
        anyhow::ensure!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            describe_output(&out)
        );
    }
    let out = kubectl(
        &kubeconfig,
        &[
            "-n",
            "bots",
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=voice-starter,reason=Updated",
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
        ],
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));

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
  kubectl -n bots patch secret voice-starter-env --type merge -p '{{\"stringData\":{{\"OPENAI_API_KEY\":\"sk-again\"}}}}\'
  kubectl -n bots get pcss -o wide                         # the set's Revision goes up, then Ready
  kubectl -n bots get events --field-selector involvedObject.name=voice-starter,reason=Updated   # one redeploy
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
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), operator).await;
    let contract = emu.check_contract();
    emu.shutdown().await;
    drop(cp);
    contract
}

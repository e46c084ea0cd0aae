//! The `export` command, the migration path from `pcc deploy`: reads the agents of a Pipecat
//! Cloud account and prints `PipecatAgent` manifests that take them over explicitly
//! (`spec.adopt: true`) with exactly their current configuration, so that
//! `pipecat-operator export | kubectl apply -f -` is the whole migration: the operator adopts
//! each agent without changing it.

use std::io::Write;

use crate::cloud::types::{Agent, defaults};
use crate::cloud::{self, ApiKey};
use crate::crd::{
    AgentProfile, AudioFilter, AutoScaling, Credentials, DEFAULT_SECRET_KEY, KrispViva,
    PipecatAgent, PipecatAgentSpec, SecretKeyRef, is_valid_agent_name,
};

/// Flags of `pipecat-operator export`.
#[derive(Clone, Debug, clap::Args)]
pub struct ExportArgs {
    /// How to reach Pipecat Cloud.
    #[command(flatten)]
    pub api: cloud::ClientConfig,
    /// The Pipecat Cloud Private API key (never printed).
    #[arg(long, env = "PIPECAT_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// Namespace of the printed resources.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Secret of that namespace the resources read the API key from (key `api-key`); the
    /// operator's default credentials when unset.
    #[arg(long)]
    pub secret_name: Option<String>,
    /// Export only these agents (comma-separated); all of them when empty.
    #[arg(long, value_delimiter = ',')]
    pub agent: Vec<String>,
}

/// Prints the manifests to `out`; returns how many agents were exported.
pub async fn run(args: &ExportArgs, out: &mut impl Write) -> anyhow::Result<usize> {
    let key = ApiKey::new(args.api_key.clone());
    anyhow::ensure!(
        !key.is_empty(),
        "no API key: set PIPECAT_API_KEY or --api-key"
    );
    let client = cloud::Client::new(args.api.clone())?;
    let mut names: Vec<String> = client
        .list_agents(&key)
        .await?
        .into_iter()
        .map(|a| a.name)
        .filter(|n| args.agent.is_empty() || args.agent.contains(n))
        .collect();
    names.sort();
    let mut count = 0;
    for name in names {
        let agent = client.get_agent(&key, &name).await?;
        match manifest(&agent, args) {
            Some(resource) => {
                writeln!(out, "---")?;
                write!(out, "{}", serde_saphyr::to_string(&resource)?)?;
                count += 1;
            }
            None => writeln!(
                out,
                "# agent {name}: skipped: Pipecat Cloud reports no image for it (built from a Pipecat Cloud build? write its manifest with spec.buildId)"
            )?,
        }
    }
    Ok(count)
}

/// The resource that adopts `agent` as it is (`None` when its image is not reported). Fields
/// at Pipecat Cloud's defaults are left out, as a person would write the manifest.
pub fn manifest(agent: &Agent, args: &ExportArgs) -> Option<PipecatAgent> {
    let deployed = agent.manifest_spec()?;
    let image = deployed.image.clone()?;
    let scaling = agent
        .auto_scaling
        .as_ref()
        .or(deployed.auto_scaling.as_ref());
    let (resource_name, agent_name) = if is_valid_agent_name(&agent.name) {
        (agent.name.clone(), None)
    } else {
        (
            agent.name.to_lowercase().replace('_', "-"),
            Some(agent.name.clone()),
        )
    };
    let mut spec: PipecatAgentSpec =
        serde_json::from_value(serde_json::json!({})).expect("an empty spec has defaults");
    spec.agent_name = agent_name;
    spec.image = Some(image);
    spec.image_pull_secret_set = deployed.image_pull_secret_name.clone();
    spec.secret_set = deployed
        .env_from_secret_names
        .as_ref()
        .and_then(|n| n.first().cloned());
    spec.auto_scaling = scaling
        .and_then(|s| Some((s.min_replicas?, s.max_replicas?)))
        .map(|(min, max)| AutoScaling {
            min_agents: min as i32,
            max_agents: max as i32,
        });
    spec.krisp_viva = agent
        .krisp_viva
        .as_ref()
        .and_then(|k| match k.audio_filter.as_deref() {
            Some("tel") => Some(AudioFilter::Tel),
            Some("pro") => Some(AudioFilter::Pro),
            _ => None,
        })
        .map(|f| KrispViva {
            audio_filter: Some(f),
        });
    spec.agent_profile = match agent.agent_profile.as_deref() {
        Some("agent-2x") => Some(AgentProfile::Agent2x),
        Some("agent-3x") => Some(AgentProfile::Agent3x),
        _ => None,
    };
    spec.max_session_duration = agent
        .max_session_duration
        .filter(|d| *d != defaults::MAX_SESSION_DURATION)
        .map(|d| d as i32);
    spec.region = agent.region.clone();
    spec.credentials = args.secret_name.clone().map(|name| Credentials {
        secret_ref: SecretKeyRef {
            name,
            key: DEFAULT_SECRET_KEY.into(),
        },
    });
    spec.adopt = true;
    let mut resource = PipecatAgent::new(&resource_name, spec);
    resource.metadata.namespace = Some(args.namespace.clone());
    Some(resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ExportArgs {
        ExportArgs {
            api: cloud::ClientConfig::default(),
            api_key: "pk".into(),
            namespace: "bots".into(),
            secret_name: Some("team-key".into()),
            agent: Vec::new(),
        }
    }

    #[test]
    fn an_agent_becomes_a_manifest_that_adopts_it_as_it_is() {
        let agent: Agent = serde_json::from_value(serde_json::json!({
            "name": "voice-starter",
            "region": "us-west",
            "autoScaling": {"minReplicas": 1, "maxReplicas": 10},
            "agentProfile": "agent-2x",
            "maxSessionDuration": 7200,
            "krispViva": {"audioFilter": "tel"},
            "deployment": {"manifest": {"spec": {
                "image": "acme/bot:1",
                "imagePullSecretName": "pull",
                "envFromSecretNames": ["env"],
                "krispModels": {"enabled": false}
            }}}
        }))
        .unwrap();
        let r = manifest(&agent, &args()).unwrap();
        assert_eq!(r.metadata.name.as_deref(), Some("voice-starter"));
        assert_eq!(r.metadata.namespace.as_deref(), Some("bots"));
        let s = &r.spec;
        assert!(s.adopt);
        assert_eq!(s.image.as_deref(), Some("acme/bot:1"));
        assert_eq!(s.secret_set.as_deref(), Some("env"));
        assert_eq!(s.image_pull_secret_set.as_deref(), Some("pull"));
        assert_eq!(
            s.auto_scaling
                .as_ref()
                .map(|a| (a.min_agents, a.max_agents)),
            Some((1, 10))
        );
        assert_eq!(s.agent_profile, Some(AgentProfile::Agent2x));
        assert_eq!(s.max_session_duration, None, "the default is left out");
        assert_eq!(
            s.enable_krisp, None,
            "never written: Pipecat Cloud removed it"
        );
        assert_eq!(
            s.krisp_viva.as_ref().and_then(|k| k.audio_filter),
            Some(AudioFilter::Tel)
        );
        assert_eq!(s.region.as_deref(), Some("us-west"));
        assert_eq!(s.credentials.as_ref().unwrap().secret_ref.name, "team-key");
        // The same configuration: the operator plans nothing for it.
        let desired = crate::agents::plan::desired(&r);
        let cmp = crate::agents::compare::compare(&desired.config, &desired.omitted, &agent);
        assert!(cmp.differ.is_empty(), "{cmp:?}");
    }

    #[test]
    fn an_agent_without_a_reported_image_is_skipped() {
        let agent: Agent = serde_json::from_value(serde_json::json!({"name": "built"})).unwrap();
        assert!(manifest(&agent, &args()).is_none());
    }
}

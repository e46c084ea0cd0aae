//! The CRD: the committed YAML is what the binary generates, and the CEL rules accept and reject
//! what they should (evaluated client-side; the end-to-end suite checks them on a real
//! apiserver).

use pipecat_operator::crd::{PipecatAgent, crd_yaml, is_valid_agent_name, reflow_description};

fn agent(yaml: &str) -> PipecatAgent {
    serde_saphyr::from_str(yaml).expect("test manifest parses")
}

const SEED: &str = r#"
apiVersion: pipecat.daily.co/v1alpha1
kind: PipecatAgent
metadata: {name: voice-starter, namespace: bots}
spec:
  image: your-dockername/voice-starter:0.1
  nodeType: arm
  imagePullSecretSet: dockerhub-credentials
  secretSet: voice-starter-secrets
  autoScaling: {minAgents: 1, maxAgents: 10}
  enableKrisp: false
"#;

fn with_spec(extra: &str) -> PipecatAgent {
    agent(&format!(
        "apiVersion: pipecat.daily.co/v1alpha1\nkind: PipecatAgent\nmetadata: {{name: voice-starter, namespace: bots}}\nspec: {extra}\n"
    ))
}

fn errors(a: &PipecatAgent) -> String {
    match a.validate_cel() {
        Ok(()) => String::new(),
        Err(e) => format!("{e:?}"),
    }
}

#[test]
fn committed_crd_matches_the_generated_one() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/pipecatagents.pipecat.daily.co.yaml"
    ))
    .expect("crds/pipecatagents.pipecat.daily.co.yaml exists");
    assert!(
        committed == crd_yaml(),
        "crds/ is stale: run `cargo run -- crd pipecatagents > crds/pipecatagents.pipecat.daily.co.yaml`"
    );
}

#[test]
fn the_files_of_crds_one_after_the_other_are_what_crd_prints() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("crds/ exists")
        .map(|e| e.expect("crds/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let joined: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("a CRD file"))
        .collect();
    assert!(
        joined == pipecat_operator::crd::all_crds_yaml(),
        "`cat crds/*.yaml` differs from `pipecat-operator crd`: regenerate each file with `cargo run -- crd <plural>`"
    );
}

#[test]
fn helm_chart_carries_the_same_crd() {
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts/pipecat-operator/crds/pipecatagents.pipecat.daily.co.yaml");
    let copy = std::fs::read_to_string(&chart).unwrap_or_else(|e| {
        panic!(
            "the chart carries no CRD at {} ({e}): copy crds/pipecatagents.pipecat.daily.co.yaml there",
            chart.display()
        )
    });
    assert!(
        copy == crd_yaml(),
        "the chart's CRD is stale: copy crds/pipecatagents.pipecat.daily.co.yaml to {}",
        chart.display()
    );
}

#[test]
fn crd_names_and_columns() {
    let yaml = crd_yaml();
    let crd: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    let spec = &crd["spec"];
    assert_eq!(spec["group"], "pipecat.daily.co");
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["kind"], "PipecatAgent");
    assert_eq!(spec["names"]["categories"][0], "pipecat");
    assert_eq!(spec["names"]["shortNames"][0], "pca");
    let version = &spec["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for want in ["Ready", "Sessions", "Deployment", "Image", "Age"] {
        assert!(
            columns.contains(&want),
            "missing column {want}: {columns:?}"
        );
    }
    // Field docs are user documentation for `kubectl explain`.
    let props = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let doc = props["autoScaling"]["properties"]["minAgents"]["description"]
        .as_str()
        .unwrap();
    assert!(doc.contains("scale to zero"), "{doc}");
    assert_eq!(props["nodeType"]["default"], "arm");
    assert_eq!(props["deletionPolicy"]["default"], "Delete");
}

#[test]
fn seed_example_is_valid() {
    assert_eq!(errors(&agent(SEED)), "");
    let file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/voice-starter.yaml"
    ))
    .unwrap();
    assert_eq!(errors(&agent(&file)), "", "examples/voice-starter.yaml");
}

#[test]
fn image_xor_build_id() {
    let both = with_spec("{image: a/b:1, buildId: 3f1c9a2e-1d2b-4c5d-8e9f-0a1b2c3d4e5f}");
    assert!(errors(&both).contains("exactly one of spec.image or spec.buildId"));
    let neither = with_spec("{secretSet: abc}");
    assert!(errors(&neither).contains("exactly one of spec.image or spec.buildId"));
    let build = with_spec("{buildId: 3f1c9a2e-1d2b-4c5d-8e9f-0a1b2c3d4e5f}");
    assert_eq!(errors(&build), "");
}

#[test]
fn autoscaling_bounds() {
    let bad = with_spec("{image: a/b:1, autoScaling: {minAgents: 5, maxAgents: 2}}");
    assert!(
        errors(&bad).contains("minAgents must not be greater than autoScaling.maxAgents"),
        "{}",
        errors(&bad)
    );
    let ok = with_spec("{image: a/b:1, autoScaling: {minAgents: 0, maxAgents: 1}}");
    assert_eq!(errors(&ok), "");
}

#[test]
fn metadata_name_must_be_a_valid_agent_name_unless_agent_name_is_set() {
    let bad = agent(
        "apiVersion: pipecat.daily.co/v1alpha1\nkind: PipecatAgent\nmetadata: {name: voice.starter, namespace: bots}\nspec: {image: a/b:1}\n",
    );
    assert!(
        errors(&bad).contains("set spec.agentName"),
        "{}",
        errors(&bad)
    );
    let fixed = agent(
        "apiVersion: pipecat.daily.co/v1alpha1\nkind: PipecatAgent\nmetadata: {name: voice.starter, namespace: bots}\nspec: {image: a/b:1, agentName: voice-starter}\n",
    );
    assert_eq!(errors(&fixed), "");
}

#[test]
fn agent_name_and_region_are_immutable() {
    let old = with_spec("{image: a/b:1, region: us-west}");
    let moved = with_spec("{image: a/b:1, region: eu-central}");
    let e = format!("{:?}", moved.validate_cel_update(&old).unwrap_err());
    assert!(e.contains("spec.region is immutable"), "{e}");
    let dropped = with_spec("{image: a/b:1}");
    assert!(
        dropped.validate_cel_update(&old).is_err(),
        "removing the region is a change"
    );
    let same = with_spec("{image: a/b:2, region: us-west}");
    assert!(same.validate_cel_update(&old).is_ok());

    let renamed = with_spec("{image: a/b:1, agentName: other-name, region: us-west}");
    let e = format!("{:?}", renamed.validate_cel_update(&old).unwrap_err());
    assert!(e.contains("spec.agentName is immutable"), "{e}");
    // Spelling out the default name is not a change.
    let explicit = with_spec("{image: a/b:1, agentName: voice-starter, region: us-west}");
    assert!(explicit.validate_cel_update(&old).is_ok());
}

#[test]
fn agent_name_rule_matches_the_api() {
    for ok in ["ab", "voice-starter", "a1", &"a".repeat(54)] {
        assert!(is_valid_agent_name(ok), "{ok}");
    }
    for bad in [
        "a",
        "-ab",
        "ab-",
        "Voice",
        "voice_starter",
        "voice.starter",
        &"a".repeat(55),
    ] {
        assert!(!is_valid_agent_name(bad), "{bad}");
    }
}

/// Every `description` string of the CRD with its path.
fn descriptions(value: &serde_json::Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match v.as_str() {
                    Some(text) if key == "description" => out.push((path.to_string(), text.into())),
                    _ => descriptions(v, &format!("{path}.{key}"), out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                descriptions(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// A newline inside a paragraph that does not start a list item: the doc comments' wrapping.
fn hard_breaks(text: &str) -> Vec<String> {
    text.split("\n\n")
        .flat_map(|paragraph| paragraph.split('\n').skip(1))
        .filter(|line| {
            let line = line.trim_start();
            let digits = line.bytes().take_while(u8::is_ascii_digit).count();
            !(line.starts_with("- ")
                || line.starts_with("* ")
                || (digits > 0 && line[digits..].starts_with(". ")))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn descriptions_read_as_paragraphs_in_kubectl_explain() {
    let crd: serde_json::Value = serde_saphyr::from_str(&crd_yaml()).unwrap();
    let mut all = Vec::new();
    descriptions(&crd, "", &mut all);
    assert!(
        all.len() > 20,
        "the CRD documents its fields: {}",
        all.len()
    );
    let wrapped: Vec<_> = all
        .iter()
        .filter(|(_, text)| !hard_breaks(text).is_empty())
        .collect();
    assert!(
        wrapped.is_empty(),
        "descriptions with a line break inside a paragraph: {wrapped:#?}"
    );
    // The doc comments do wrap: the reflow is what joins them (a multi-line doc comment).
    let (_, adopt) = all
        .iter()
        .find(|(path, _)| path.ends_with(".spec.properties.adopt"))
        .expect("spec.adopt is documented");
    assert!(
        adopt.starts_with("Take over an agent of this name that already exists in Pipecat Cloud (made with `pcc deploy`, the dashboard"),
        "{adopt}"
    );
}

#[test]
fn reflow_keeps_paragraph_breaks_and_list_items() {
    let doc = "First paragraph, wrapped\nat an arbitrary column\n  and indented.\n\nSecond paragraph:\n- one item,\n  wrapped\n- `two`\n1. numbered\n\n\nThird.";
    assert_eq!(
        reflow_description(doc),
        "First paragraph, wrapped at an arbitrary column and indented.\n\nSecond paragraph:\n- one item, wrapped\n- `two`\n1. numbered\n\nThird."
    );
    // A line that merely starts with code is a continuation, not an item.
    assert_eq!(
        reflow_description("made with\n`pcc deploy`, or\n2024 ways."),
        "made with `pcc deploy`, or 2024 ways."
    );
    let single = "One line only.";
    assert_eq!(reflow_description(single), single);
}

#[test]
fn secret_sets_example_is_valid_and_its_agent_uses_both_sets() {
    use pipecat_operator::crd::secret_set::{PipecatSecretSet, agent_uses_set};
    let file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/secret-sets.yaml"
    ))
    .unwrap();
    let (mut agents, mut sets, mut secrets) = (Vec::new(), Vec::new(), Vec::new());
    for doc in file.split("\n---\n") {
        let kind: serde_json::Value = serde_saphyr::from_str(doc).expect("a YAML document");
        match kind["kind"].as_str() {
            Some("PipecatAgent") => agents.push(agent(doc)),
            Some("PipecatSecretSet") => {
                let set: PipecatSecretSet =
                    serde_saphyr::from_str(doc).expect("a PipecatSecretSet");
                assert!(set.validate_cel().is_ok(), "{:?}", set.validate_cel());
                sets.push(set);
            }
            Some("Secret") => secrets.push(
                serde_saphyr::from_str::<k8s_openapi::api::core::v1::Secret>(doc)
                    .expect("a Secret"),
            ),
            other => panic!("unexpected document {other:?}"),
        }
    }
    assert_eq!((agents.len(), sets.len(), secrets.len()), (1, 2, 2));
    let a = &agents[0];
    assert_eq!(errors(a), "");
    for set in &sets {
        assert!(
            agent_uses_set(a, set),
            "the agent does not use {:?}",
            set.metadata.name
        );
        let secret = &set.spec.secret_ref.name;
        assert!(
            secrets
                .iter()
                .any(|s| s.metadata.name.as_ref() == Some(secret)),
            "no Secret {secret} in the example"
        );
    }
}

mod secret_set {
    use pipecat_operator::crd::secret_set::{PipecatSecretSet, crd_yaml};

    fn set(spec: &str) -> PipecatSecretSet {
        set_named("agent-keys", spec)
    }

    fn set_named(name: &str, spec: &str) -> PipecatSecretSet {
        serde_saphyr::from_str(&format!(
            "apiVersion: pipecat.daily.co/v1alpha1\nkind: PipecatSecretSet\nmetadata: {{name: {name}, namespace: bots}}\nspec: {spec}\n"
        ))
        .expect("test manifest parses")
    }

    fn errors(s: &PipecatSecretSet) -> String {
        match s.validate_cel() {
            Ok(()) => String::new(),
            Err(e) => format!("{e:?}"),
        }
    }

    const FILE: &str = "crds/pipecatsecretsets.pipecat.daily.co.yaml";

    #[test]
    fn committed_crd_and_the_charts_copy_match_the_generated_one() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for path in [
            root.join(FILE),
            root.join("charts/pipecat-operator").join(FILE),
        ] {
            let committed = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{} is missing ({e})", path.display()));
            assert!(
                committed == crd_yaml(),
                "{} is stale: run `cargo run -- crd pipecatsecretsets > {FILE}` and copy it to charts/pipecat-operator/crds/",
                path.display()
            );
        }
    }

    #[test]
    fn names_columns_and_status() {
        let crd: serde_json::Value = serde_saphyr::from_str(&crd_yaml()).unwrap();
        let spec = &crd["spec"];
        assert_eq!(spec["group"], "pipecat.daily.co");
        assert_eq!(spec["scope"], "Namespaced");
        assert_eq!(spec["names"]["kind"], "PipecatSecretSet");
        assert_eq!(spec["names"]["plural"], "pipecatsecretsets");
        assert_eq!(spec["names"]["shortNames"][0], "pcss");
        assert_eq!(spec["names"]["categories"][0], "pipecat");
        let version = &spec["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert!(version["subresources"]["status"].is_object());
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        for want in ["Set", "Type", "Ready", "Reason", "Keys", "Age"] {
            assert!(
                columns.contains(&want),
                "missing column {want}: {columns:?}"
            );
        }
        let props = &version["schema"]["openAPIV3Schema"]["properties"];
        assert_eq!(props["spec"]["properties"]["type"]["default"], "Env");
        assert_eq!(
            props["spec"]["properties"]["deletionPolicy"]["default"],
            "Delete"
        );
        let status = &props["status"]["properties"];
        for field in [
            "observedGeneration",
            "conditions",
            "setName",
            "region",
            "remoteStatus",
            "keys",
            "valuesDigest",
            "revision",
            "readyRevision",
            "errorMessage",
        ] {
            assert!(status[field].is_object(), "status.{field} is missing");
        }
    }

    #[test]
    fn cel_rules_say_what_to_fix() {
        assert_eq!(errors(&set("{secretRef: {name: values}}")), "");
        assert_eq!(
            errors(&set(
                "{secretRef: {name: values}, keys: [{key: a, as: A}, {key: b}]}"
            )),
            ""
        );
        let e = errors(&set(
            "{secretRef: {name: values}, type: ImagePull, keys: [{key: a}]}",
        ));
        assert!(e.contains("spec.keys applies to env sets only"), "{e}");
        let e = errors(&set("{secretRef: {name: values}, host: ghcr.io}"));
        assert!(
            e.contains("spec.host applies to image-pull sets only"),
            "{e}"
        );
        assert_eq!(
            errors(&set(
                "{secretRef: {name: values}, type: ImagePull, host: ghcr.io}"
            )),
            ""
        );
        let e = errors(&set(
            "{secretRef: {name: values}, keys: [{key: a, as: X}, {key: b, as: X}]}",
        ));
        assert!(e.contains("give each a distinct `as`"), "{e}");
        let e = errors(&set_named("ab", "{secretRef: {name: values}}"));
        assert!(e.contains("set spec.setName to a valid name"), "{e}");
        assert_eq!(
            errors(&set_named(
                "ab",
                "{secretRef: {name: values}, setName: abc}"
            )),
            ""
        );
    }

    #[test]
    fn set_name_type_and_region_are_immutable() {
        let old = set("{secretRef: {name: values}, region: us-west}");
        let renamed = set("{secretRef: {name: values}, region: us-west, setName: other-set}");
        let e = format!("{:?}", renamed.validate_cel_update(&old).unwrap_err());
        assert!(e.contains("spec.setName is immutable"), "{e}");
        let retyped = set("{secretRef: {name: values}, region: us-west, type: ImagePull}");
        let e = format!("{:?}", retyped.validate_cel_update(&old).unwrap_err());
        assert!(e.contains("spec.type is immutable"), "{e}");
        let moved = set("{secretRef: {name: values}, region: eu-central}");
        let e = format!("{:?}", moved.validate_cel_update(&old).unwrap_err());
        assert!(e.contains("spec.region is immutable"), "{e}");
        let rotated = set("{secretRef: {name: other-values}, region: us-west}");
        assert!(rotated.validate_cel_update(&old).is_ok());
    }
}

#[test]
fn the_chart_carries_the_same_warnings_policy() {
    // In the chart's crds/ (installed with the CRDs, skipped when it exists, like them), so a
    // cluster that applied crds/ first installs the chart without an ownership conflict.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts/pipecat-operator/crds/warnings.pipecat.daily.co.yaml");
    let copy = std::fs::read_to_string(&path).expect("the chart's crds/ has the warnings policy");
    assert!(
        copy == pipecat_operator::crd::warnings::warnings_yaml(),
        "{} is stale: copy crds/warnings.pipecat.daily.co.yaml there",
        path.display()
    );
}

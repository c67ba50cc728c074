//! Every core object the knative/ overlays render parses with k8s-openapi
//! with no unknown field, and a seeded typo in a copy of each kind is caught.

use std::collections::BTreeMap;

use knative_check::{check_core, describe, is_core, render, with_nested_typo};
use serde_norway::Value;

const TARGETS: &[&str] = &["overlays/parkd", "overlays/spinkube"];

fn core_objects() -> Vec<Value> {
    let mut all = Vec::new();
    for target in TARGETS {
        let objects = render(target).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(objects.len() > 20, "{target} rendered only {} objects", objects.len());
        all.extend(objects);
    }
    all.into_iter()
        .filter(|o| is_core(o.get("apiVersion").and_then(Value::as_str).unwrap_or_default()))
        .collect()
}

#[test]
fn every_core_object_parses_without_unknown_fields() {
    let objects = core_objects();
    let errors: Vec<String> =
        objects.iter().filter_map(|o| check_core(o).err()).map(|e| format!("{e:#}")).collect();
    assert!(errors.is_empty(), "core objects with problems:\n{}", errors.join("\n"));
}

#[test]
fn a_typo_in_a_copy_of_each_core_kind_is_caught() {
    let mut first_of_kind = BTreeMap::new();
    for object in core_objects() {
        let key = format!(
            "{} {}",
            object.get("apiVersion").and_then(Value::as_str).unwrap_or_default(),
            object.get("kind").and_then(Value::as_str).unwrap_or_default()
        );
        first_of_kind.entry(key).or_insert(object);
    }
    assert!(first_of_kind.len() >= 15, "expected the core kinds of the base, got {first_of_kind:?}");
    for (kind, object) in first_of_kind {
        check_core(&object).unwrap_or_else(|e| panic!("{kind}: the original must pass: {e:#}"));
        let (bad, path) = with_nested_typo(&object).unwrap_or_else(|| panic!("{kind}: no field to misspell"));
        let error =
            check_core(&bad).expect_err(&format!("{}: a typo at {path} was not caught", describe(&object)));
        let message = format!("{error:#}");
        assert!(
            message.contains(&format!("{}x", path.rsplit('.').next().unwrap()))
                || message.contains("does not parse"),
            "{kind}: the error should name the misspelt field {path}: {message}"
        );
    }
}

/// kustomize reads only below knative/, so Mosquitto's configuration is
/// copied there: the copy must stay deploy/mosquitto's (plus the cluster's
/// own lines at the end).
#[test]
fn the_cluster_mosquitto_configuration_is_deploy_mosquittos() {
    let root = knative_check::repo_root();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(
        read("knative/base/mosquitto/acl"),
        read("deploy/mosquitto/acl"),
        "copy deploy/mosquitto/acl to knative/base/mosquitto/"
    );
    let cluster = read("knative/base/mosquitto/mosquitto.conf");
    assert!(
        cluster.starts_with(&read("deploy/mosquitto/mosquitto.conf")),
        "knative/base/mosquitto/mosquitto.conf must start with deploy/mosquitto/mosquitto.conf"
    );
}

/// The container build and the forge workflow cannot run here (no container
/// engine): check what can be checked, that what they name exists.
#[test]
fn the_container_build_and_the_workflow_name_what_exists() {
    let root = knative_check::repo_root();
    let containerfile = std::fs::read_to_string(root.join("Containerfile")).unwrap();
    assert!(
        containerfile.matches("\nFROM ").count() + usize::from(containerfile.starts_with("FROM ")) >= 2,
        "multi-stage"
    );
    assert!(containerfile.contains("\nUSER 65532:65532"), "runs as a fixed non-root user");
    for script in ["scripts/build-components.sh", "rust-toolchain.toml", "spin.toml"] {
        assert!(containerfile.contains(script) && root.join(script).exists(), "{script}");
    }
    // Every .wasm that spin.toml names is one the build copies (its pattern).
    let spin = std::fs::read_to_string(root.join("spin.toml")).unwrap();
    let sources: Vec<&str> =
        spin.lines().filter_map(|l| l.strip_prefix("source = \"")?.strip_suffix(".wasm\"")).collect();
    assert!(
        sources.len() >= 3 && sources.iter().all(|s| s.starts_with("target/wasm32-wasip2/release/")),
        "{sources:?}"
    );

    let workflow: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(root.join(".forgejo/workflows/release.yaml")).unwrap(),
    )
    .unwrap();
    let jobs = workflow["jobs"].as_mapping().expect("jobs");
    let runs: String = jobs
        .values()
        .flat_map(|job| job["steps"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|step| step.get("run").and_then(|r| r.as_str()).map(str::to_owned))
        .collect::<Vec<_>>()
        .join("\n");
    for needed in ["bash .ci/run", "docker build -f Containerfile", "docker push", "spin registry push"] {
        assert!(runs.contains(needed), "the workflow should run `{needed}`");
    }
    for word in runs.split_whitespace().filter(|w| w.starts_with("scripts/") || w.starts_with(".ci/")) {
        assert!(root.join(word).exists(), "the workflow runs {word}, which does not exist");
    }
}

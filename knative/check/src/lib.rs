//! Strict parsing of the core Kubernetes objects in `knative/`: every object
//! the overlays render is deserialised into its `k8s-openapi` type, and any
//! field the type does not know (a typo, a field of another version) is an
//! error, named by its path.

pub mod wiring;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::{apps, autoscaling, batch, core, networking, policy, rbac};
use serde::de::DeserializeOwned;
use serde_norway::Value;

/// The repository root (this crate lives in knative/check).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The kubectl that renders kustomizations: $PARKING_KUBECTL (scripts/test.sh
/// sets the pinned one bootstrap.sh installs), else the one on PATH.
fn kubectl() -> String {
    std::env::var("PARKING_KUBECTL").unwrap_or_else(|_| "kubectl".to_owned())
}

/// Renders a kustomization (a folder under knative/) into its objects.
pub fn render(kustomization: &str) -> Result<Vec<Value>> {
    render_dir(&repo_root().join("knative").join(kustomization))
}

/// Renders the kustomization in `dir` (anywhere) into its objects.
pub fn render_dir(dir: &Path) -> Result<Vec<Value>> {
    let output = Command::new(kubectl()).arg("kustomize").arg(dir).output().with_context(|| {
        format!("running {} kustomize: run scripts/bootstrap.sh --test-servers", kubectl())
    })?;
    if !output.status.success() {
        bail!("kubectl kustomize {}: {}", dir.display(), String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8(output.stdout)?;
    let mut objects = Vec::new();
    for document in serde_norway::Deserializer::from_str(&text) {
        let value = Value::deserialize(document).context("kustomize printed YAML that does not parse")?;
        if !value.is_null() {
            objects.push(value);
        }
    }
    Ok(objects)
}

use serde::Deserialize;

/// `apiVersion kind name` of an object, for messages.
pub fn describe(object: &Value) -> String {
    let field = |k: &str| object.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    let name = object.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("?");
    format!("{} {} {name}", field("apiVersion"), field("kind"))
}

/// Whether an apiVersion belongs to Kubernetes itself (not a CRD's group).
pub fn is_core(api_version: &str) -> bool {
    match api_version.rsplit_once('/') {
        None => true,
        Some((group, _)) => !group.contains('.') || group.ends_with(".k8s.io"),
    }
}

/// Parses `object` as `T`, returning the paths of the fields `T` ignored.
fn unknown_fields<T: DeserializeOwned>(object: &Value) -> Result<Vec<String>> {
    let mut unknown = Vec::new();
    let _: T = serde_ignored::deserialize(object.clone(), |path| unknown.push(path.to_string()))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(unknown)
}

/// Checks one core object: Ok(()) when `k8s-openapi` knows every field.
pub fn check_core(object: &Value) -> Result<()> {
    let api = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    let unknown = match (api, kind) {
        ("v1", "Namespace") => unknown_fields::<core::v1::Namespace>(object),
        ("v1", "ConfigMap") => unknown_fields::<core::v1::ConfigMap>(object),
        ("v1", "Secret") => unknown_fields::<core::v1::Secret>(object),
        ("v1", "Service") => unknown_fields::<core::v1::Service>(object),
        ("v1", "ServiceAccount") => unknown_fields::<core::v1::ServiceAccount>(object),
        ("v1", "PersistentVolumeClaim") => unknown_fields::<core::v1::PersistentVolumeClaim>(object),
        ("v1", "ResourceQuota") => unknown_fields::<core::v1::ResourceQuota>(object),
        ("v1", "LimitRange") => unknown_fields::<core::v1::LimitRange>(object),
        ("apps/v1", "Deployment") => unknown_fields::<apps::v1::Deployment>(object),
        ("apps/v1", "StatefulSet") => unknown_fields::<apps::v1::StatefulSet>(object),
        ("batch/v1", "Job") => unknown_fields::<batch::v1::Job>(object),
        ("batch/v1", "CronJob") => unknown_fields::<batch::v1::CronJob>(object),
        ("autoscaling/v2", "HorizontalPodAutoscaler") => {
            unknown_fields::<autoscaling::v2::HorizontalPodAutoscaler>(object)
        }
        ("policy/v1", "PodDisruptionBudget") => unknown_fields::<policy::v1::PodDisruptionBudget>(object),
        ("networking.k8s.io/v1", "NetworkPolicy") => unknown_fields::<networking::v1::NetworkPolicy>(object),
        ("networking.k8s.io/v1", "Ingress") => unknown_fields::<networking::v1::Ingress>(object),
        ("rbac.authorization.k8s.io/v1", "Role") => unknown_fields::<rbac::v1::Role>(object),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => unknown_fields::<rbac::v1::RoleBinding>(object),
        _ => bail!("{}: no k8s-openapi type mapped for {api} {kind}: add it to check_core", describe(object)),
    }
    .with_context(|| format!("{} does not parse", describe(object)))?;
    if !unknown.is_empty() {
        bail!("{}: unknown fields: {}", describe(object), unknown.join(", "));
    }
    Ok(())
}

/// Maps whose keys are data (labels, quantities, ConfigMap keys), where a
/// renamed key is not something a schema can catch.
const FREE_FORM: &[&str] = &[
    "labels",
    "annotations",
    "matchLabels",
    "data",
    "stringData",
    "binaryData",
    "nodeSelector",
    "hard",
    "requests",
    "limits",
    "default",
    "defaultRequest",
    "max",
    "min",
];

/// A copy of `object` with the deepest schema field (outside free-form maps)
/// renamed by one letter, and that field's path; None if it has none.
pub fn with_nested_typo(object: &Value) -> Option<(Value, String)> {
    fn deepest(value: &Value, path: &mut Vec<String>, parent: Option<&str>, best: &mut Option<Vec<String>>) {
        match value {
            Value::Mapping(map) => {
                if parent.is_some_and(|p| FREE_FORM.contains(&p)) {
                    return;
                }
                for (key, child) in map {
                    let Some(key) = key.as_str() else { continue };
                    if path.is_empty() && matches!(key, "apiVersion" | "kind") {
                        continue;
                    }
                    path.push(key.to_owned());
                    if best.as_ref().is_none_or(|b| path.len() > b.len()) {
                        *best = Some(path.clone());
                    }
                    deepest(child, path, Some(key), best);
                    path.pop();
                }
            }
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(i.to_string());
                    deepest(item, path, parent, best);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut best = None;
    deepest(object, &mut Vec::new(), None, &mut best);
    // A path ending in a list index cannot be renamed; drop to its key.
    let path = best?;
    let mut copy = object.clone();
    let mut node = &mut copy;
    for step in &path[..path.len() - 1] {
        node = match node {
            Value::Sequence(items) => &mut items[step.parse::<usize>().ok()?],
            other => other.get_mut(step.as_str())?,
        };
    }
    let key = path.last()?;
    let map = node.as_mapping_mut()?;
    let moved = map.remove(key.as_str())?;
    map.insert(Value::String(format!("{key}x")), moved);
    Some((copy, path.join(".")))
}

//! `spin.toml` (manifest version 2), as far as `parkd` uses it.
//!
//! One manifest serves both runtimes: `spin up` reads it as Spin does, and
//! `parkd` reads the same routes, components, variables and allowed hosts,
//! plus its own `[component.<id>.tool.parkd]` table (which Spin ignores) for
//! the event types a component subscribes to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

// The structs deny unknown fields, as Spin's own schema does: a key Spin
// would refuse fails here too, in the tests, before anyone runs `spin up`.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub spin_manifest_version: u32,
    pub application: Application,
    #[serde(default)]
    pub variables: BTreeMap<String, VariableDef>,
    #[serde(default)]
    pub trigger: Triggers,
    #[serde(default)]
    pub component: BTreeMap<String, ComponentDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub authors: Vec<String>,
    #[serde(default)]
    pub targets: Vec<toml::Value>,
    #[serde(default)]
    pub trigger: BTreeMap<String, toml::Table>,
    #[serde(default)]
    pub tool: ApplicationTools,
}

#[derive(Debug, Default, Deserialize)]
pub struct ApplicationTools {
    #[serde(default)]
    pub parkd: ParkdApplication,
}

/// `[application.tool.parkd]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParkdApplication {
    /// The route where `parkd` runs its in-process broker ingress (`POST`
    /// CloudEvents here and they reach every subscribed component).
    #[serde(default)]
    pub events_route: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDef {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct Triggers {
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTrigger {
    pub route: String,
    pub component: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub executor: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentDef {
    /// A local file: parkd does not fetch components from URLs or registries.
    pub source: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Environment variables the component sees, as under Spin.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub sqlite_databases: Vec<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    #[serde(default)]
    pub build: Option<toml::Table>,
    #[serde(default)]
    pub tool: ComponentTools,
}

#[derive(Debug, Default, Deserialize)]
pub struct ComponentTools {
    #[serde(default)]
    pub parkd: ParkdComponent,
}

/// `[component.<id>.tool.parkd]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParkdComponent {
    /// CloudEvent types delivered to this component, like a Knative Trigger's filter.
    #[serde(default)]
    pub subscribes: Vec<String>,
    /// MQTT topic filters whose messages parkd publishes retained. Spin's MQTT
    /// interface has no retain flag, so this is the host's decision, per component.
    #[serde(default)]
    pub mqtt_retain: Vec<String>,
    /// Takes a round of coalesced availability changes as one CloudEvents
    /// batch; without it, one event per request (as from a Knative trigger).
    #[serde(default)]
    pub takes_batches: bool,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<(Self, PathBuf)> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the manifest {}: run parkd from the repository root or pass --manifest",
                path.display()
            )
        })?;
        let manifest: Manifest =
            toml::from_str(&text).with_context(|| format!("{} is not a valid manifest", path.display()))?;
        if manifest.spin_manifest_version != 2 {
            bail!(
                "{}: spin_manifest_version {} is not supported; parkd reads version 2",
                path.display(),
                manifest.spin_manifest_version
            );
        }
        for trigger in &manifest.trigger.http {
            if !manifest.component.contains_key(&trigger.component) {
                bail!(
                    "{}: the HTTP trigger for route {:?} names component {:?}, which has no [component.{}] table",
                    path.display(),
                    trigger.route,
                    trigger.component,
                    trigger.component
                );
            }
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok((manifest, dir))
    }
}

/// Renders `{{ name }}` templates against resolved application variables.
pub fn render(template: &str, variables: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").with_context(|| format!("unclosed `{{{{` in {template:?}"))?;
        let name = after[..end].trim();
        let value = variables.get(name).with_context(|| {
            format!(
                "{template:?} refers to variable `{name}`, which the manifest's [variables] does not define"
            )
        })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Where an application variable's value comes from, first match wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariableSource {
    /// `--var name=value` on the command line.
    CommandLine,
    /// `PARKING_<NAME>` in the environment (parkd's own prefix).
    ParkingEnv,
    /// `SPIN_VARIABLE_<NAME>` (the prefix Spin's environment provider reads).
    SpinEnv,
    /// The manifest's default.
    Default,
}

/// Resolves every application variable; a required variable with no value is an error naming it.
pub fn resolve_variables(
    defs: &BTreeMap<String, VariableDef>,
    overrides: &BTreeMap<String, String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, (String, VariableSource)>> {
    let mut resolved = BTreeMap::new();
    for (name, def) in defs {
        let upper = name.to_ascii_uppercase();
        let found = overrides
            .get(name)
            .map(|v| (v.clone(), VariableSource::CommandLine))
            .or_else(|| env(&format!("PARKING_{upper}")).map(|v| (v, VariableSource::ParkingEnv)))
            .or_else(|| env(&format!("SPIN_VARIABLE_{upper}")).map(|v| (v, VariableSource::SpinEnv)))
            .or_else(|| def.default.clone().map(|v| (v, VariableSource::Default)));
        match found {
            Some(value) => {
                resolved.insert(name.clone(), value);
            }
            None if def.required => bail!(
                "application variable `{name}` is required and has no value: set PARKING_{upper} \
                 (or SPIN_VARIABLE_{upper}), or pass --var {name}=..."
            ),
            None => {}
        }
    }
    for name in overrides.keys() {
        if !defs.contains_key(name) {
            bail!("--var {name}: the manifest's [variables] has no variable `{name}`");
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_and_unknown_names_are_errors() {
        let vars = BTreeMap::from([("database_host".to_string(), "127.0.0.1:5432".to_string())]);
        assert_eq!(render("postgres://{{ database_host }}", &vars).unwrap(), "postgres://127.0.0.1:5432");
        assert_eq!(render("plain", &vars).unwrap(), "plain");
        let err = render("{{ nope }}", &vars).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
        assert!(render("{{ open", &vars).is_err());
    }

    #[test]
    fn variables_resolve_in_order_of_precedence() {
        let defs = BTreeMap::from([
            ("admin_token".to_string(), VariableDef { default: Some(String::new()), ..Default::default() }),
            (
                "database_url".to_string(),
                VariableDef { default: Some("sqlite".into()), ..Default::default() },
            ),
            ("region".to_string(), VariableDef { required: true, ..Default::default() }),
        ]);
        let env = |k: &str| match k {
            "PARKING_ADMIN_TOKEN" => Some("from-parking-env".to_string()),
            "SPIN_VARIABLE_ADMIN_TOKEN" => Some("from-spin-env".to_string()),
            "SPIN_VARIABLE_REGION" => Some("eu".to_string()),
            _ => None,
        };
        let overrides = BTreeMap::from([("database_url".to_string(), "postgres://x".to_string())]);
        let r = resolve_variables(&defs, &overrides, env).unwrap();
        assert_eq!(r["admin_token"], ("from-parking-env".into(), VariableSource::ParkingEnv));
        assert_eq!(r["database_url"], ("postgres://x".into(), VariableSource::CommandLine));
        assert_eq!(r["region"], ("eu".into(), VariableSource::SpinEnv));

        let err = resolve_variables(&defs, &BTreeMap::new(), |_| None).unwrap_err().to_string();
        assert!(err.contains("region") && err.contains("PARKING_REGION"), "{err}");
        let bad = BTreeMap::from([("typo".to_string(), "1".to_string())]);
        assert!(resolve_variables(&defs, &bad, |_| Some("x".into())).is_err());
    }

    #[test]
    fn unknown_keys_are_refused_as_spin_refuses_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spin.toml");
        let text = "spin_manifest_version = 2\n[application]\nname = \"x\"\n\
                    [component.a]\nsource = \"a.wasm\"\nallowed_outbound_host = [\"https://x\"]\n";
        std::fs::write(&path, text).unwrap();
        let err = format!("{:#}", Manifest::load(&path).unwrap_err());
        assert!(err.contains("allowed_outbound_host"), "{err}");
    }

    #[test]
    fn the_repository_manifest_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spin.toml");
        let (manifest, _) = Manifest::load(&path).unwrap();
        assert!(manifest.component.contains_key("sensor-event"));
        let sensor = &manifest.component["sensor-event"];
        assert!(sensor.tool.parkd.subscribes.iter().any(|t| t == "io.parking.sensor.uplink.v1"));
        assert_eq!(manifest.application.tool.parkd.events_route.as_deref(), Some("/api/v1/events"));
    }
}

//! `fermyon:spin/variables@2.0.0`: component variables.
//!
//! - linker: [`add_to_linker`];
//! - shared: [`VariablesCapability`], every component's variables rendered
//!   once at start from the resolved application variables;
//! - per instance: [`VariablesInstance`], that component's own map.
//!
//! A component sees only the variables its `[component.<id>.variables]`
//! declares, as in Spin.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use wasmtime::component::{HasSelf, Linker};

use crate::capabilities::bindings::fermyon::spin::variables::{self, Error, Host};

pub struct VariablesCapability {
    by_component: BTreeMap<String, Arc<BTreeMap<String, String>>>,
}

impl VariablesCapability {
    /// `components`: component id → its declared variables, already rendered.
    pub fn new(components: BTreeMap<String, BTreeMap<String, String>>) -> Arc<Self> {
        Arc::new(Self { by_component: components.into_iter().map(|(k, v)| (k, Arc::new(v))).collect() })
    }

    pub fn instance(&self, component: &str) -> VariablesInstance {
        VariablesInstance { values: self.by_component.get(component).cloned().unwrap_or_default() }
    }
}

pub struct VariablesInstance {
    values: Arc<BTreeMap<String, String>>,
}

/// Spin's rule for names: lower-case letters, digits and underscores, starting with a letter.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Host for VariablesInstance {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, Error>> {
        if !valid_name(&name) {
            return Ok(Err(Error::InvalidName(format!(
                "{name:?}: variable names are lower-case letters, digits and underscores"
            ))));
        }
        Ok(self.values.get(&name).cloned().ok_or_else(|| {
            Error::Undefined(format!("the component declares no variable {name:?} in spin.toml"))
        }))
    }
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut VariablesInstance,
) -> Result<()> {
    variables::add_to_linker::<T, HasSelf<VariablesInstance>>(linker, get)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capability() -> Arc<VariablesCapability> {
        VariablesCapability::new(BTreeMap::from([
            ("lot-admin".to_string(), BTreeMap::from([("admin_token".to_string(), "t0ken".to_string())])),
            (
                "sensor-event".to_string(),
                BTreeMap::from([("database_url".to_string(), "sqlite".to_string())]),
            ),
        ]))
    }

    #[tokio::test]
    async fn a_component_reads_its_own_variables_only() {
        let cap = capability();
        let mut admin = cap.instance("lot-admin");
        assert_eq!(admin.get("admin_token".into()).await.unwrap().unwrap(), "t0ken");
        let mut sensor = cap.instance("sensor-event");
        assert!(matches!(sensor.get("admin_token".into()).await.unwrap(), Err(Error::Undefined(_))));
        assert_eq!(sensor.get("database_url".into()).await.unwrap().unwrap(), "sqlite");
    }

    #[tokio::test]
    async fn invalid_names_are_rejected() {
        let mut v = capability().instance("lot-admin");
        for bad in ["ADMIN_TOKEN", "", "1x", "a-b"] {
            assert!(matches!(v.get(bad.into()).await.unwrap(), Err(Error::InvalidName(_))), "{bad}");
        }
    }
}

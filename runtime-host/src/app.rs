//! A loaded application: every component of the manifest compiled (or taken
//! from the cache), pre-instantiated, with its per-instance configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::WasiHttpCtx;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::capabilities::allowed_hosts::AllowedHosts;
use crate::capabilities::mqtt::MqttCapability;
use crate::capabilities::outbound_http::OutboundHttp;
use crate::capabilities::postgres::PostgresCapability;
use crate::capabilities::sqlite::SqliteCapability;
use crate::capabilities::variables::VariablesCapability;
use crate::engine::{self, Loaded, PoolLimits};
use crate::instance::{self, InstanceState};
use crate::manifest::{self, Manifest};

pub struct LoadedComponent {
    pub id: String,
    pub pre: ProxyPre<InstanceState>,
    pub allowed_hosts: AllowedHosts,
    pub sqlite_databases: Vec<String>,
    pub subscribes: Vec<String>,
    /// MQTT topic filters this component publishes retained.
    pub mqtt_retain: Arc<[String]>,
    /// Takes a round of coalesced changes as one CloudEvents batch.
    pub takes_batches: bool,
    pub environment: Vec<(String, String)>,
    pub max_memory_bytes: usize,
}

pub struct Capabilities {
    pub sqlite: Arc<SqliteCapability>,
    pub postgres: Arc<PostgresCapability>,
    pub variables: Arc<VariablesCapability>,
    pub mqtt: Arc<MqttCapability>,
}

pub struct App {
    pub engine: Engine,
    pub components: BTreeMap<String, Arc<LoadedComponent>>,
    pub capabilities: Capabilities,
    /// Every invocation is counted and timed here, and every derived event
    /// routed (`/metrics`).
    pub metrics: crate::metrics::HostMetrics,
    /// The application's tokens, for the checks parkd makes itself.
    pub credentials: crate::credentials::Credentials,
    /// How long one request may run inside a component before it is stopped.
    pub request_deadline: Duration,
}

/// What to load and with which settings.
pub struct LoadOptions<'a> {
    pub manifest: &'a Manifest,
    pub manifest_dir: &'a Path,
    pub variables: &'a BTreeMap<String, String>,
    pub cache_dir: PathBuf,
    pub pool: PoolLimits,
    /// Load only these components (all when empty), as one Knative Service does.
    pub only: Vec<String>,
}

impl App {
    pub async fn load(
        options: LoadOptions<'_>,
        sqlite: Arc<SqliteCapability>,
        postgres: Arc<PostgresCapability>,
    ) -> Result<Self> {
        let engine = engine::new_engine(&options.pool)?;
        engine::start_epoch_ticker(&engine);
        let linker = instance::linker(&engine)?;
        let mut components = BTreeMap::new();
        let mut component_variables = BTreeMap::new();
        for (id, def) in &options.manifest.component {
            if !options.only.is_empty() && !options.only.contains(id) {
                continue;
            }
            let source = options.manifest_dir.join(&def.source);
            let started = Instant::now();
            let engine2 = engine.clone();
            let cache_dir = options.cache_dir.clone();
            let source2 = source.clone();
            let (component, loaded) =
                tokio::task::spawn_blocking(move || engine::load_component(&engine2, &source2, &cache_dir))
                    .await??;
            let pre = prepare(&linker, &component, id, &source)?;
            let hosts = def
                .allowed_outbound_hosts
                .iter()
                .map(|h| manifest::render(h, options.variables))
                .collect::<Result<Vec<_>>>()
                .with_context(|| format!("component `{id}`: allowed_outbound_hosts"))?;
            let vars = def
                .variables
                .iter()
                .map(|(k, v)| Ok((k.clone(), manifest::render(v, options.variables)?)))
                .collect::<Result<BTreeMap<_, _>>>()
                .with_context(|| format!("component `{id}`: variables"))?;
            component_variables.insert(id.clone(), vars);
            tracing::info!(
                component = %id,
                from = match loaded { Loaded::FromCache => "cache", Loaded::Compiled => "compiled" },
                ms = started.elapsed().as_millis() as u64,
                "component loaded"
            );
            components.insert(
                id.clone(),
                Arc::new(LoadedComponent {
                    id: id.clone(),
                    pre,
                    allowed_hosts: AllowedHosts::parse(id, &hosts)?,
                    sqlite_databases: def.sqlite_databases.clone(),
                    subscribes: def.tool.parkd.subscribes.clone(),
                    mqtt_retain: def.tool.parkd.mqtt_retain.iter().cloned().collect(),
                    takes_batches: def.tool.parkd.takes_batches,
                    environment: def.environment.clone().into_iter().collect(),
                    max_memory_bytes: options.pool.max_memory_bytes,
                }),
            );
        }
        if !options.only.is_empty() {
            for wanted in &options.only {
                if !components.contains_key(wanted) {
                    anyhow::bail!(
                        "the manifest has no component `{wanted}`; it has: {}",
                        options.manifest.component.keys().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
            }
        }
        let variables = VariablesCapability::new(component_variables);
        let metrics = crate::metrics::HostMetrics::default();
        metrics.set_components_loaded(components.len());
        Ok(Self {
            engine,
            components,
            capabilities: Capabilities { sqlite, postgres, variables, mqtt: MqttCapability::new() },
            metrics,
            credentials: crate::credentials::Credentials::from_variables(options.variables),
            request_deadline: options.pool.request_deadline,
        })
    }

    /// The components subscribed to events of type `ty` (their Triggers).
    pub fn subscribers(&self, ty: &str) -> Vec<Arc<LoadedComponent>> {
        self.components.values().filter(|c| c.subscribes.iter().any(|s| s == ty)).cloned().collect()
    }

    /// A fresh store for one request to `component`, which traps once the
    /// request's deadline has passed.
    pub fn new_store(&self, component: &LoadedComponent) -> Store<InstanceState> {
        let state = InstanceState {
            wasi: WasiCtx::builder().inherit_stdout().inherit_stderr().envs(&component.environment).build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound_http: OutboundHttp::new(component.allowed_hosts.clone()),
            sqlite: self.capabilities.sqlite.instance(&component.sqlite_databases),
            postgres: self.capabilities.postgres.instance(component.allowed_hosts.clone()),
            variables: self.capabilities.variables.instance(&component.id),
            mqtt: self
                .capabilities
                .mqtt
                .instance(component.allowed_hosts.clone(), component.mqtt_retain.clone()),
            limits: StoreLimitsBuilder::new().memory_size(component.max_memory_bytes).build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s.limiter());
        // Yield to the scheduler every tick, so a busy guest shares the
        // runtime; past the deadline, trap: a spinning guest is stopped, not
        // left running detached.
        let deadline = Instant::now() + self.request_deadline;
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline { UpdateDeadline::Interrupt } else { UpdateDeadline::Yield(1) })
        });
        store.set_epoch_deadline(1);
        store
    }
}

/// Pre-instantiates a component: every import resolved against what parkd
/// provides, or an error that names the import it cannot satisfy.
pub fn prepare(
    linker: &wasmtime::component::Linker<InstanceState>,
    component: &wasmtime::component::Component,
    id: &str,
    source: &Path,
) -> Result<ProxyPre<InstanceState>> {
    let pre = linker.instantiate_pre(component).map_err(|e| {
        anyhow::anyhow!(
            "component `{id}` ({}) cannot be loaded: {e:#}. parkd provides WASI 0.2 and {}; \
             a parking function may import nothing else",
            source.display(),
            instance::CAPABILITIES.join(", ")
        )
    })?;
    ProxyPre::new(pre)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("component `{id}` does not export wasi:http/incoming-handler@0.2.0"))
}

/// Why a component could not answer a request.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// Every instance slot is busy: the caller should retry (503).
    #[error("every instance slot is busy; retry shortly")]
    Busy,
    /// The request ran past its deadline (503: it may succeed later); the
    /// guest was stopped and its instance, connections and locks released.
    #[error("component `{0}` did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The guest trapped or failed to answer (500).
    #[error("component `{0}` failed: {1:#}")]
    Failed(String, anyhow::Error),
}

impl App {
    /// Runs one request through `component` in a fresh instance and collects
    /// the whole answer; counts and times it.
    pub async fn invoke(
        &self,
        component: &Arc<LoadedComponent>,
        request: http::Request<http_body_util::Full<bytes::Bytes>>,
    ) -> Result<http::Response<bytes::Bytes>, InvokeError> {
        let started = std::time::Instant::now();
        let result = self.invoke_uncounted(component, request).await;
        let (code, response) = match &result {
            Ok(response) => (response.status().as_u16(), Some(response)),
            Err(InvokeError::Busy | InvokeError::Timeout(..)) => (503, None),
            Err(InvokeError::Failed(..)) => (500, None),
        };
        let uplinks = crate::metrics::subscribes_to_uplinks(&component.subscribes);
        self.metrics.record(&component.id, uplinks, started.elapsed(), code, response);
        result
    }

    /// The database pools as they are now, for `/metrics`.
    pub fn pool_stats(&self) -> Vec<crate::metrics::PoolStats> {
        let mut stats = self.capabilities.sqlite.pool_stats();
        stats.extend(self.capabilities.postgres.pool_stats());
        stats
    }

    async fn invoke_uncounted(
        &self,
        component: &Arc<LoadedComponent>,
        request: http::Request<http_body_util::Full<bytes::Bytes>>,
    ) -> Result<http::Response<bytes::Bytes>, InvokeError> {
        use http_body_util::BodyExt;
        use wasmtime_wasi_http::WasiHttpView;
        use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

        let id = component.id.clone();
        let failed = |e: anyhow::Error| InvokeError::Failed(id.clone(), e);
        let mut store = self.new_store(component);
        let mut request = request.map(|b| b.map_err(|never| -> wasmtime_wasi_http::Error { match never {} }));
        // wasi:http needs an authority; in-process deliveries have none.
        if request.uri().authority().is_none() && !request.headers().contains_key(http::header::HOST) {
            request.headers_mut().insert(http::header::HOST, http::HeaderValue::from_static("localhost"));
        }
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .map_err(|e| failed(e.into()))?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let out = store.data_mut().http().new_response_outparam(sender).map_err(|e| failed(e.into()))?;
        let pre = component.pre.clone();
        // Aborted when this request ends (answered, timed out, or its caller
        // gone): the guest's store, with its instance slot, database
        // connections and write turn, is dropped with it.
        let mut task = AbortOnDrop(tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await
        }));
        let answer = async {
            match receiver.await {
                Ok(Ok(response)) => {
                    let (parts, body) = response.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map_err(|e| failed(anyhow::anyhow!("reading the response body: {e}")))?;
                    Ok(http::Response::from_parts(parts, body.to_bytes()))
                }
                Ok(Err(code)) => Err(failed(anyhow::anyhow!("the component answered with error {code:?}"))),
                // The guest dropped the response without setting it: find out why.
                Err(_) => match (&mut task.0).await {
                    Ok(Err(e)) if is_pool_exhausted(&e) => Err(InvokeError::Busy),
                    Ok(Err(e)) => Err(failed(e.into())),
                    Ok(Ok(())) => Err(failed(anyhow::anyhow!("the component never set a response"))),
                    Err(join) => Err(failed(join.into())),
                },
            }
        };
        // A little past the guest's own deadline: a guest stuck in a host
        // call (which the epoch cannot interrupt) is stopped here.
        let deadline = self.request_deadline + crate::engine::EPOCH_TICK * 10;
        match tokio::time::timeout(deadline, answer).await {
            Ok(Err(InvokeError::Failed(_, e))) if is_past_deadline(&e) => {
                Err(InvokeError::Timeout(component.id.clone(), self.request_deadline))
            }
            Ok(result) => result,
            Err(_) => Err(InvokeError::Timeout(component.id.clone(), self.request_deadline)),
        }
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every instance slot of the pooling allocator is taken (by type, not message).
fn is_pool_exhausted(e: &wasmtime::Error) -> bool {
    e.chain().any(|cause| cause.is::<wasmtime::PoolConcurrencyLimitError>())
}

/// The guest was interrupted at its deadline (the epoch callback's trap).
fn is_past_deadline(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| cause.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt))
}

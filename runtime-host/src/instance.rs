//! The state of one component instance (one request), and the linker that
//! gives a component every capability parkd implements.

use anyhow::Result;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capabilities::mqtt::MqttInstance;
use crate::capabilities::outbound_http::OutboundHttp;
use crate::capabilities::postgres::PostgresInstance;
use crate::capabilities::sqlite::SqliteInstance;
use crate::capabilities::variables::VariablesInstance;
use crate::capabilities::{mqtt, postgres, sqlite, variables};

/// The `T` of `Store<T>`: WASI, wasi:http, and each capability's instance state.
pub struct InstanceState {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub outbound_http: OutboundHttp,
    pub sqlite: SqliteInstance,
    pub postgres: PostgresInstance,
    pub variables: VariablesInstance,
    pub mqtt: MqttInstance,
    pub limits: StoreLimits,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outbound_http }
    }
}

impl InstanceState {
    pub fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
    }
}

/// Everything a parking function may import; an import outside this set
/// fails at load time, naming the import.
pub fn linker(engine: &Engine) -> Result<Linker<InstanceState>> {
    let mut linker: Linker<InstanceState> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    sqlite::add_to_linker(&mut linker, |s| &mut s.sqlite)?;
    postgres::add_to_linker(&mut linker, |s| &mut s.postgres)?;
    variables::add_to_linker(&mut linker, |s| &mut s.variables)?;
    mqtt::add_to_linker(&mut linker, |s| &mut s.mqtt)?;
    Ok(linker)
}

/// The interfaces `linker` provides beyond WASI, for load errors.
pub const CAPABILITIES: &[&str] = &[
    "wasi:http/outgoing-handler@0.2.0",
    "fermyon:spin/sqlite@2.0.0",
    "spin:postgres/postgres@3.0.0",
    "fermyon:spin/variables@2.0.0",
    "fermyon:spin/mqtt@2.0.0",
];

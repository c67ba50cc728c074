//! `parkd`: the parking host.
//!
//! It runs the parking Wasm components on wasmtime, implements the Spin
//! capabilities they import (see [`capabilities`]), serves their HTTP routes,
//! and routes the events they derive in-process, as a Knative Broker would.
//!
//! Layout (the command line is `main.rs` and `cli/`, one file per command):
//! - running components: `engine` (wasmtime, the compiled-component cache),
//!   `app` (a loaded manifest: `manifest`, `routes`), `instance` (one
//!   request's state and linker), `capabilities` (one module per Spin
//!   capability), `database` (which one, its migrations; `spin_schema`)
//! - serving: `server` (the HTTP listener and host routes), `page`,
//!   `operator`, `find` (the pages), `metrics` (the one registry),
//!   `credentials`, `logging`, `shutdown` (signals and the drain)
//! - events: `eventing` (the in-process Broker and Triggers), `scheduler`
//!   (the PingSource stand-in), `bridge` (MQTT in, CloudEvents out),
//!   `mqtt_broker` and `inbox` (the embedded broker and its durable log)
//! - signs: `gateway` (terminal frames to SSE and WebSocket clients)
//! - wiring: `up` (the whole system on one machine), `demo`, `simulate`

pub mod app;
pub mod bridge;
pub mod capabilities;
pub mod credentials;
pub mod database;
pub mod demo;
pub mod engine;
pub mod eventing;
pub mod find;
pub mod gateway;
pub mod inbox;
pub mod instance;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod mqtt_broker;
pub mod operator;
pub mod page;
pub mod routes;
pub mod scheduler;
pub mod server;
pub mod shutdown;
pub mod simulate;
pub mod spin_schema;
pub mod up;

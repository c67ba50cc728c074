//! `parkd`: the parking host.
//!
//! It runs the parking Wasm components on wasmtime, implements the Spin
//! capabilities they import (see [`capabilities`]), serves their HTTP routes,
//! and routes the events they derive in-process, as a Knative Broker would.

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

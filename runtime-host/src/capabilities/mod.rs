//! The Spin capabilities a parking component may import, one module each.
//!
//! Every module has the same three parts:
//! - `add_to_linker`: what it adds to the linker;
//! - a `*Capability` type: the state it shares across requests (pools,
//!   clients, configuration), built once at start;
//! - a `*Instance` type: the state it gives each instance (its resources,
//!   the hosts it may reach), built per request from the capability.
//!
//! Adding a capability means adding a module here and a field to
//! [`crate::instance::InstanceState`].

pub mod allowed_hosts;
pub mod mqtt;
pub mod outbound_http;
pub mod postgres;
pub mod sqlite;
pub mod variables;

/// Tracks whether a statement opened or closed a transaction (its first
/// word after any comments). A connection released while this says "open"
/// is closed, never pooled.
pub(crate) fn transaction_state(statement: &str, before: bool) -> bool {
    let first = without_leading_comments(statement)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    match first.trim_end_matches(';') {
        "BEGIN" | "START" => true,
        "COMMIT" | "END" | "ROLLBACK" => false,
        _ => before,
    }
}

/// `statement` from its first word that is not in a `--` or `/* */` comment.
fn without_leading_comments(mut statement: &str) -> &str {
    loop {
        statement = statement.trim_start();
        if let Some(rest) = statement.strip_prefix("--") {
            statement = rest.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(rest) = statement.strip_prefix("/*") {
            statement = rest.split_once("*/").map_or("", |(_, after)| after);
        } else {
            return statement;
        }
    }
}

/// Host bindings for Spin's interfaces, generated from the project's WIT
/// (`wit/parking.wit`, world `capabilities`).
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "parking:platform/capabilities",
        imports: { default: async | trappable },
        additional_derives: [PartialEq],
        with: {
            "fermyon:spin/sqlite.connection": crate::capabilities::sqlite::SqliteConnection,
            "spin:postgres/postgres.connection": crate::capabilities::postgres::PgConnection,
            "fermyon:spin/mqtt.connection": crate::capabilities::mqtt::MqttConnection,
        },
    });
}

//! The embedded MQTT broker: with no broker given, `parkd up` runs one
//! in-process, so sensors (and `parkd simulate`) can publish with nothing
//! else installed. Production uses Mosquitto with per-sensor credentials.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Starts rumqttd on `listen` (MQTT 3.1.1) and waits until it accepts connections.
pub fn start_embedded(listen: SocketAddr) -> Result<()> {
    // rumqttd binds on its own thread and would only log a failure: check first.
    drop(std::net::TcpListener::bind(listen).with_context(|| {
        format!(
            "cannot run the embedded MQTT broker on {listen}: is a broker already there? \
             pass --mqtt mqtt://{listen} to use it, or --mqtt-listen ADDR for another address"
        )
    })?);
    let config: rumqttd::Config = toml::from_str(&format!(
        r#"
id = 0
[router]
id = 0
max_connections = 10000
max_outgoing_packet_count = 200
max_segment_size = 10485760
max_segment_count = 10

[v4.1]
name = "parkd-embedded"
listen = "{listen}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 1048576
max_inflight_count = 100
dynamic_filters = true
"#
    ))
    .context("embedded MQTT broker configuration")?;
    std::thread::Builder::new().name("parkd-mqtt".into()).spawn(move || {
        let mut broker = rumqttd::Broker::new(config);
        if let Err(e) = broker.start() {
            tracing::error!(error = %e, "the embedded MQTT broker stopped");
        }
    })?;
    let started = Instant::now();
    while std::net::TcpStream::connect(listen).is_err() {
        if started.elapsed() > Duration::from_secs(5) {
            bail!("the embedded MQTT broker did not listen on {listen} within 5 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

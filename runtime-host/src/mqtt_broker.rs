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
    while !answers_connect(listen) {
        if started.elapsed() > Duration::from_secs(5) {
            bail!("the embedded MQTT broker did not answer on {listen} within 5 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Whether an MQTT broker answers a CONNECT on `addr` with a CONNACK. A
/// bare TCP probe would make the broker log a failed connection.
fn answers_connect(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let client_id = b"parkd-probe";
    // CONNECT, MQTT 3.1.1: protocol name, level 4, clean session, keep-alive 60 s.
    let mut packet =
        vec![0x10, (10 + 2 + client_id.len()) as u8, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    packet.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    packet.extend_from_slice(client_id);
    let mut connack = [0u8; 4];
    let ok =
        stream.write_all(&packet).is_ok() && stream.read_exact(&mut connack).is_ok() && connack[0] == 0x20;
    // DISCONNECT, so the broker sees a clean goodbye.
    let _ = stream.write_all(&[0xE0, 0]);
    ok
}

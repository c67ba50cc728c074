//! The embedded MQTT brokers: with no broker given, `parkd up` runs one
//! in-process, so sensors (and `parkd simulate`) can publish with nothing
//! else installed. Production uses Mosquitto with per-sensor credentials.
//!
//! rumqttd (0.20) authenticates a client only when it connects and has no
//! per-topic rules, so anyone who may publish to it may publish anything,
//! terminal frames included. Frames therefore travel on a second, private
//! broker on loopback that admits only two credentials parkd makes up at
//! start: terminal-push's (it publishes) and the in-process gateway's (it
//! reads). A frame forged on the sensors' broker never reaches the gateway.
//!
//! rumqttd keeps messages in memory only, and acknowledges a QoS 1 publish
//! once its router has it. The sensors' broker therefore decodes MQTT with
//! [`DurableV4`]: a message on a sensor topic is appended to the durable
//! [`Inbox`] as it is decoded, before the router sees it, so no
//! acknowledgement leaves before the message is on disk (the bridge reads
//! the inbox, not the broker).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use rumqttd::protocol::v4::V4;
use rumqttd::protocol::{self, Packet, Protocol};

use crate::bridge::topics::{self, TopicMapping};
use crate::inbox::Inbox;

/// rumqttd's MQTT 3.1.1 codec, storing each message on a sensor topic in
/// the inbox as it is decoded. Decoding happens before the message reaches
/// rumqttd's router, which alone queues the PUBACK: a message that could
/// not be stored closes the connection unacknowledged, and the sensor
/// publishes it again.
#[derive(Clone)]
pub struct DurableV4 {
    inbox: Arc<Inbox>,
    mappings: Arc<Vec<TopicMapping>>,
}

impl Protocol for DurableV4 {
    fn read_mut(&mut self, stream: &mut BytesMut, max_size: usize) -> Result<Packet, protocol::Error> {
        let packet = V4.read_mut(stream, max_size)?;
        if let Packet::Publish(publish, _) = &packet {
            let topic = String::from_utf8_lossy(&publish.topic);
            if topics::resolve(&self.mappings, &topic).is_some()
                && let Err(e) = self.inbox.append(&topic, &publish.payload)
            {
                tracing::error!(
                    error = %format!("{e:#}"),
                    %topic,
                    "the embedded MQTT broker could not store a message in its inbox: closing the \
                     connection without acknowledging it (the sensor sends it again); free disk space \
                     or fix the data directory's permissions"
                );
                return Err(protocol::Error::IncorrectPacketFormat);
            }
        }
        Ok(packet)
    }

    fn write(&self, packet: Packet, write: &mut BytesMut) -> Result<usize, protocol::Error> {
        V4.write(packet, write)
    }
}

/// Starts rumqttd on `listen` (MQTT 3.1.1), storing what sensors publish on
/// `mappings`' topics in `inbox` before acknowledging it, and waits until
/// it accepts connections.
pub fn start_embedded(listen: SocketAddr, inbox: Arc<Inbox>, mappings: Vec<TopicMapping>) -> Result<()> {
    // rumqttd binds on its own thread and would only log a failure: check first.
    drop(std::net::TcpListener::bind(listen).with_context(|| {
        format!(
            "cannot run the embedded MQTT broker on {listen}: is a broker already there? \
             pass --mqtt mqtt://{listen} to use it, or --mqtt-listen ADDR for another address"
        )
    })?);
    let durable = DurableV4 { inbox, mappings: Arc::new(mappings) };
    start(listen, "parkd-embedded", &[], Some(durable))
}

/// The private broker of terminal frames, and who may use it.
#[derive(Debug, Clone)]
pub struct FrameBroker {
    pub address: SocketAddr,
    /// terminal-push's user name and password.
    pub publisher: (String, String),
    /// The gateway's.
    pub reader: (String, String),
}

impl FrameBroker {
    /// The URL the gateway subscribes with (its credential inside).
    pub fn reader_url(&self) -> String {
        format!("mqtt://{}:{}@{}", self.reader.0, self.reader.1, self.address)
    }
}

/// Starts the private frame broker on a free loopback port.
pub fn start_frame_broker() -> Result<FrameBroker> {
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free loopback port for the terminal frame broker")?;
    let credential = |user: &str| (user.to_owned(), uuid::Uuid::new_v4().simple().to_string());
    let broker =
        FrameBroker { address, publisher: credential("terminal-push"), reader: credential("parkd-gateway") };
    start(address, "parkd-frames", &[broker.publisher.clone(), broker.reader.clone()], None)?;
    Ok(broker)
}

/// Starts one rumqttd listener; with `users`, only they may connect; with
/// `durable`, it stores sensor messages before acknowledging them.
fn start(
    listen: SocketAddr,
    name: &str,
    users: &[(String, String)],
    durable: Option<DurableV4>,
) -> Result<()> {
    let auth = if users.is_empty() {
        String::new()
    } else {
        let entries = users.iter().map(|(u, p)| format!("{u:?} = {p:?}")).collect::<Vec<_>>().join("\n");
        format!("[v4.1.connections.auth]\n{entries}\n")
    };
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
name = "{name}"
listen = "{listen}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 1048576
max_inflight_count = 100
dynamic_filters = true
{auth}"#
    ))
    .context("embedded MQTT broker configuration")?;
    // What rumqttd's Broker::start does for one MQTT 3.1.1 listener, with
    // the codec chosen here.
    let settings = config.v4.and_then(|mut servers| servers.remove("1")).context("embedded MQTT listener")?;
    let router = rumqttd::Router::new(config.id, config.router).spawn();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the embedded MQTT broker's runtime")?;
    std::thread::Builder::new().name("parkd-mqtt".into()).spawn(move || {
        let result = runtime.block_on(async move {
            match durable {
                Some(codec) => {
                    rumqttd::Server::new(settings, router, codec).start(rumqttd::LinkType::Remote).await
                }
                None => rumqttd::Server::new(settings, router, V4).start(rumqttd::LinkType::Remote).await,
            }
        });
        if let Err(e) = result {
            tracing::error!(error = %e, "the embedded MQTT broker stopped");
        }
    })?;
    let started = Instant::now();
    while !answers_connect(listen, users.first()) {
        if started.elapsed() > Duration::from_secs(5) {
            bail!("the embedded MQTT broker did not answer on {listen} within 5 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Whether an MQTT broker answers a CONNECT on `addr` with a CONNACK. A
/// bare TCP probe would make the broker log a failed connection.
fn answers_connect(addr: SocketAddr, credential: Option<&(String, String)>) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut connack = [0u8; 4];
    let ok = stream.write_all(&connect_packet(credential)).is_ok()
        && stream.read_exact(&mut connack).is_ok()
        && connack[0] == 0x20
        && connack[3] == 0;
    // DISCONNECT, so the broker sees a clean goodbye.
    let _ = stream.write_all(&[0xE0, 0]);
    ok
}

/// An MQTT 3.1.1 CONNECT of the probe: clean session, keep-alive 60 s, and
/// the credential if one is given.
fn connect_packet(credential: Option<&(String, String)>) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    let flags: u8 = if credential.is_some() { 0xC2 } else { 0x02 };
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 60];
    field(&mut body, b"parkd-probe");
    if let Some((user, password)) = credential {
        field(&mut body, user.as_bytes());
        field(&mut body, password.as_bytes());
    }
    // The remaining length fits one byte: the credentials are short.
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_broker_admits_only_its_two_credentials() {
        let broker = start_frame_broker().unwrap();
        assert!(answers_connect(broker.address, Some(&broker.publisher)));
        assert!(answers_connect(broker.address, Some(&broker.reader)));
        assert!(!answers_connect(broker.address, None), "an anonymous client was admitted");
        let guess = ("terminal-push".to_owned(), "guess".to_owned());
        assert!(!answers_connect(broker.address, Some(&guess)), "a wrong password was admitted");
    }
}

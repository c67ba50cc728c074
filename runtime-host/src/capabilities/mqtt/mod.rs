//! `fermyon:spin/mqtt@2.0.0`: outbound MQTT (publish only, as in Spin).
//!
//! - linker: [`add_to_linker`];
//! - shared: [`MqttCapability`], one rumqttc client per (broker, credentials,
//!   client id), opened on first use and kept connected across instances, so
//!   a component that publishes on every request does not pay a TCP and MQTT
//!   handshake each time (rumqttc reconnects it in the background);
//! - per instance: [`MqttInstance`], the component's allowed hosts, the topics
//!   it publishes retained, and its open connections.
//!
//! Every `open` is checked against the component's `allowed_outbound_hosts`
//! (`mqtt://host:port`) before any connection is made. Spin's interface has
//! no retain flag: parkd publishes retained to the topics the component's
//! `[component.<id>.tool.parkd] mqtt_retain` lists (Spin ignores that table).

mod host;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
use tokio::sync::watch;
use wasmtime::component::{HasSelf, Linker, ResourceTable};

use crate::capabilities::allowed_hosts::AllowedHosts;
use crate::capabilities::bindings::fermyon::spin::mqtt;

/// Distinct broker clients one parkd keeps; past it `open` answers
/// `too-many-connections` (a component that invents client ids would
/// otherwise open a connection per request).
const MAX_CLIENTS: usize = 64;
/// Requests rumqttc buffers between a publish and the socket.
const CLIENT_QUEUE: usize = 1024;
/// The largest message a component may publish.
const MAX_PACKET_BYTES: usize = 1 << 20;

/// One guest connection: a handle on a shared client.
pub struct MqttConnection {
    client: Arc<SharedClient>,
}

/// Which shared client a guest's `open` maps to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    host: String,
    port: u16,
    /// `None`: the guest named no client id; all such opens share one client.
    client_id: Option<String>,
    username: String,
    password: String,
}

/// A client whose event loop runs in the background for as long as parkd does.
struct SharedClient {
    client: AsyncClient,
    connected: watch::Receiver<bool>,
    last_error: Arc<Mutex<Option<String>>>,
    address: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SharedClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Shared across requests: the clients, by address and credentials.
pub struct MqttCapability {
    clients: Mutex<HashMap<ClientKey, Arc<SharedClient>>>,
    connect_timeout: Duration,
}

impl MqttCapability {
    pub fn new() -> Arc<Self> {
        Self::with_connect_timeout(Duration::from_secs(5))
    }

    /// How long `open` waits for a broker's CONNACK before `connection-failed`.
    pub fn with_connect_timeout(connect_timeout: Duration) -> Arc<Self> {
        Arc::new(Self { clients: Mutex::new(HashMap::new()), connect_timeout })
    }

    /// `retain`: topic filters this component publishes retained.
    pub fn instance(self: &Arc<Self>, allowed: AllowedHosts, retain: Arc<[String]>) -> MqttInstance {
        MqttInstance { shared: self.clone(), allowed, retain, connections: ResourceTable::new() }
    }

    /// How many broker clients are open (tests check that instances share them).
    pub fn client_count(&self) -> usize {
        self.clients.lock().expect("client map lock").len()
    }

    fn client(&self, key: ClientKey, keep_alive: Duration) -> Result<Arc<SharedClient>, mqtt::Error> {
        let mut clients = self.clients.lock().expect("client map lock");
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        if clients.len() >= MAX_CLIENTS {
            return Err(mqtt::Error::TooManyConnections);
        }
        let client_id =
            key.client_id.clone().unwrap_or_else(|| format!("parkd-{}", uuid::Uuid::new_v4().simple()));
        let mut options = MqttOptions::new(client_id, &key.host, key.port);
        options.set_keep_alive(keep_alive).set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        if !key.username.is_empty() {
            options.set_credentials(&key.username, &key.password);
        }
        let (client, mut eventloop) = AsyncClient::new(options, CLIENT_QUEUE);
        let (connected_tx, connected) = watch::channel(false);
        let last_error = Arc::new(Mutex::new(None));
        let error_slot = last_error.clone();
        let address = format!("mqtt://{}:{}", key.host, key.port);
        let log_address = address.clone();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected_tx.send_replace(true);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if connected_tx.send_replace(false) {
                            tracing::warn!(broker = %log_address, error = %e, "outbound MQTT connection lost; reconnecting");
                        }
                        *error_slot.lock().expect("error slot lock") = Some(e.to_string());
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        let shared = Arc::new(SharedClient { client, connected, last_error, address, task });
        clients.insert(key, shared.clone());
        Ok(shared)
    }
}

pub struct MqttInstance {
    shared: Arc<MqttCapability>,
    allowed: AllowedHosts,
    retain: Arc<[String]>,
    connections: ResourceTable,
}

impl MqttInstance {
    /// Whether a message on `topic` is published retained.
    fn retained(&self, topic: &str) -> bool {
        self.retain.iter().any(|filter| rumqttc::matches(topic, filter))
    }
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut MqttInstance,
) -> Result<()> {
    mqtt::add_to_linker::<T, HasSelf<MqttInstance>>(linker, get)?;
    Ok(())
}

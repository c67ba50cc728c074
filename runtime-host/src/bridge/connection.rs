//! The bridge's MQTT connection, over MQTT 3.1.1 or MQTT 5. rumqttc has one
//! client per protocol version; the rest of the bridge sees one shape: a
//! message (with MQTT 5's user properties and content type, when there are
//! any), its acknowledgement, a publish and a subscribe.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5 as mqtt5;
use rumqttc::{TlsConfiguration, Transport};

use super::BridgeConfig;

/// Which MQTT the bridge speaks to the broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 3.1.1: every broker has it; messages carry only topic and payload.
    #[default]
    V311,
    /// MQTT 5: user properties carry binary-mode CloudEvents.
    V5,
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "3.1.1" | "3" | "4" => Ok(Self::V311),
            "5" | "5.0" => Ok(Self::V5),
            other => Err(format!("MQTT version {other:?}: expected 3.1.1 or 5")),
        }
    }
}

/// The largest packet the bridge reads. Past it rumqttc drops the connection
/// and the broker redelivers forever, so it is generous; brokers should cap
/// messages themselves (Mosquitto's `message_size_limit`).
const MAX_PACKET_BYTES: usize = 16 << 20;

/// One message from the broker.
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    /// MQTT 5 user properties, in order (none under 3.1.1).
    pub user_properties: Vec<(String, String)>,
    /// MQTT 5 content type.
    pub content_type: Option<String>,
}

/// What acknowledges one message: kept apart from it, because messages are
/// handled in any order but acknowledged in the order they arrived.
pub struct Receipt(ReceiptInner);

enum ReceiptInner {
    V311(rumqttc::Publish),
    V5(mqtt5::Publish),
}

#[derive(Clone)]
pub enum Client {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

pub enum EventLoop {
    V311(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// What the connection reports, in the bridge's terms.
pub enum Incoming {
    Connected {
        session_present: bool,
    },
    /// A subscription was confirmed, or refused (with the broker's reason).
    Subscribed(Result<(), String>),
    Message(Box<Message>, Receipt),
    /// The DISCONNECT asked for went out (after every request before it).
    Disconnected,
    Other,
    Lost(String),
}

/// A persistent session (fixed client id, no clean start, and under MQTT 5 a
/// session that outlives the connection), QoS 1 with manual acknowledgement.
pub fn connect(config: &BridgeConfig) -> Result<(Client, EventLoop)> {
    let transport = match &config.tls {
        Some(tls) => {
            Some(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls.client_config()?))))
        }
        None => None,
    };
    let keep_alive = Duration::from_secs(15);
    Ok(match config.protocol {
        Protocol::V311 => {
            let mut options = rumqttc::MqttOptions::new(&config.client_id, &config.host, config.port);
            options
                .set_keep_alive(keep_alive)
                .set_clean_session(false)
                .set_manual_acks(true)
                .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
            if let Some((user, password)) = &config.credentials {
                options.set_credentials(user, password);
            }
            if let Some(transport) = transport {
                options.set_transport(transport);
            }
            let (client, eventloop) = rumqttc::AsyncClient::new(options, 64);
            (Client::V311(client), EventLoop::V311(Box::new(eventloop)))
        }
        Protocol::V5 => {
            let mut options = rumqttc::v5::MqttOptions::new(&config.client_id, &config.host, config.port);
            options
                .set_keep_alive(keep_alive)
                .set_clean_start(false)
                // The session (and its unacknowledged messages) survives a
                // disconnect for as long as the broker allows.
                .set_session_expiry_interval(Some(u32::MAX))
                .set_manual_acks(true)
                .set_max_packet_size(Some(MAX_PACKET_BYTES as u32));
            if let Some((user, password)) = &config.credentials {
                options.set_credentials(user, password);
            }
            if let Some(transport) = transport {
                options.set_transport(transport);
            }
            let (client, eventloop) = rumqttc::v5::AsyncClient::new(options, 64);
            (Client::V5(client), EventLoop::V5(Box::new(eventloop)))
        }
    })
}

impl Client {
    pub async fn ack(&self, receipt: &Receipt) -> Result<(), String> {
        match (self, &receipt.0) {
            (Client::V311(client), ReceiptInner::V311(publish)) => {
                client.ack(publish).await.map_err(|e| e.to_string())
            }
            (Client::V5(client), ReceiptInner::V5(publish)) => {
                client.ack(publish).await.map_err(|e| e.to_string())
            }
            _ => Err("a message acknowledged on a connection of another MQTT version".to_owned()),
        }
    }

    pub async fn subscribe(&self, filter: &str) -> Result<(), String> {
        match self {
            Client::V311(client) => {
                client.subscribe(filter, rumqttc::QoS::AtLeastOnce).await.map_err(|e| e.to_string())
            }
            Client::V5(client) => client
                .subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Ends the connection normally; the broker keeps the session and the
    /// messages not acknowledged on it.
    pub async fn disconnect(&self) -> Result<(), String> {
        match self {
            Client::V311(client) => client.disconnect().await.map_err(|e| e.to_string()),
            Client::V5(client) => client.disconnect().await.map_err(|e| e.to_string()),
        }
    }

    /// Publishes at QoS 1, not retained.
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), String> {
        match self {
            Client::V311(client) => client
                .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
                .await
                .map_err(|e| e.to_string()),
            Client::V5(client) => client
                .publish(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, payload)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

impl EventLoop {
    pub async fn next(&mut self) -> Incoming {
        match self {
            EventLoop::V311(eventloop) => match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) => {
                    Incoming::Connected { session_present: ack.session_present }
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(ack))) => Incoming::Subscribed(match ack
                    .return_codes
                    .iter()
                    .find(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    Some(_) => Err("the broker refused the subscription".to_owned()),
                    None => Ok(()),
                }),
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish))) => {
                    let message = Message {
                        topic: publish.topic.clone(),
                        payload: publish.payload.clone(),
                        user_properties: Vec::new(),
                        content_type: None,
                    };
                    Incoming::Message(Box::new(message), Receipt(ReceiptInner::V311(publish)))
                }
                Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => Incoming::Disconnected,
                Ok(_) => Incoming::Other,
                Err(e) => Incoming::Lost(e.to_string()),
            },
            EventLoop::V5(eventloop) => match eventloop.poll().await {
                Ok(rumqttc::v5::Event::Incoming(mqtt5::Packet::ConnAck(ack))) => {
                    Incoming::Connected { session_present: ack.session_present }
                }
                Ok(rumqttc::v5::Event::Incoming(mqtt5::Packet::SubAck(ack))) => Incoming::Subscribed(
                    match ack
                        .return_codes
                        .iter()
                        .find(|c| !matches!(c, mqtt5::SubscribeReasonCode::Success(_)))
                    {
                        Some(code) => Err(format!("the broker refused the subscription: {code:?}")),
                        None => Ok(()),
                    },
                ),
                Ok(rumqttc::v5::Event::Incoming(mqtt5::Packet::Publish(publish))) => {
                    let (user_properties, content_type) = publish
                        .properties
                        .as_ref()
                        .map(|p| (p.user_properties.clone(), p.content_type.clone()))
                        .unwrap_or_default();
                    let message = Message {
                        // Topics are UTF-8 by the protocol; a broker that sent
                        // anything else gets it replaced, not a panic.
                        topic: String::from_utf8_lossy(&publish.topic).into_owned(),
                        payload: publish.payload.clone(),
                        user_properties,
                        content_type,
                    };
                    Incoming::Message(Box::new(message), Receipt(ReceiptInner::V5(publish)))
                }
                Ok(rumqttc::v5::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => Incoming::Disconnected,
                Ok(_) => Incoming::Other,
                Err(e) => Incoming::Lost(e.to_string()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_by_their_usual_names() {
        assert_eq!("5".parse::<Protocol>(), Ok(Protocol::V5));
        assert_eq!("3.1.1".parse::<Protocol>(), Ok(Protocol::V311));
        assert!("6".parse::<Protocol>().unwrap_err().contains("3.1.1 or 5"));
    }
}

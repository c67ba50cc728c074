//! Helpers for the terminal tests and benchmarks: provisioning, an MQTT
//! frame subscriber, and a Server-Sent Events reader.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::Parkd;

/// A token long enough to be accepted, distinct per terminal.
pub fn token_for(terminal: &str) -> String {
    format!("tok-{terminal}-0123456789abcdef")
}

impl Parkd {
    /// `PUT /api/v1/terminals/{terminal}` with the terminal's test token.
    pub async fn put_terminal(&self, terminal: &str, lot: &str, zones: Option<&[&str]>) -> reqwest::Response {
        let mut body = json!({ "lot": lot, "token": token_for(terminal) });
        if let Some(zones) = zones {
            body["zones"] = json!(zones);
        }
        self.client
            .put(self.url(&format!("/api/v1/terminals/{terminal}")))
            .json(&body)
            .send()
            .await
            .expect("PUT terminal")
    }
}

/// An MQTT message as a subscriber saw it.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retained: bool,
}

impl Message {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }
}

/// Subscribes to `filter` and waits for the broker's SUBACK.
pub async fn subscribe(
    port: u16,
    filter: &str,
) -> Result<(AsyncClient, tokio::sync::mpsc::UnboundedReceiver<Message>)> {
    let options = MqttOptions::new(format!("test-{}", uuid::Uuid::new_v4().simple()), "127.0.0.1", port);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    client.subscribe(filter, QoS::AtLeastOnce).await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut subscribed_tx = Some(subscribed_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(Message {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        retained: p.retain,
                    });
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(s) = subscribed_tx.take() {
                        let _ = s.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed).await.context("no SUBACK within 10 s")??;
    Ok((client, rx))
}

/// The next message whose JSON satisfies `want`, within `within`.
pub async fn next_matching(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Message>,
    within: Duration,
    want: impl Fn(&Message) -> bool,
) -> Result<Message> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(m)) if want(&m) => return Ok(m),
            Ok(Some(_)) => continue,
            Ok(None) => bail!("the subscriber stopped"),
            Err(_) => bail!("no matching message within {within:?}"),
        }
    }
}

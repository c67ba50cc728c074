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
    subscribe_as(port, filter, None).await
}

/// As [`subscribe`], with a user name and password.
pub async fn subscribe_as(
    port: u16,
    filter: &str,
    credentials: Option<(&str, &str)>,
) -> Result<(AsyncClient, tokio::sync::mpsc::UnboundedReceiver<Message>)> {
    let mut options = MqttOptions::new(format!("test-{}", uuid::Uuid::new_v4().simple()), "127.0.0.1", port);
    if let Some((user, password)) = credentials {
        options.set_credentials(user, password);
    }
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

/// One Server-Sent Event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// Takes the first whole event out of `buffer` (text read from a stream),
/// skipping comments and blocks without data; `None` until one is complete.
pub fn take_event(buffer: &mut String) -> Option<SseEvent> {
    while let Some(end) = buffer.find("\n\n") {
        let block: String = buffer.drain(..end + 2).collect();
        let mut event = SseEvent { event: "message".into(), ..Default::default() };
        let mut has_data = false;
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => event.id = Some(value.to_owned()),
                "event" => event.event = value.to_owned(),
                "data" => {
                    if has_data {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                    has_data = true;
                }
                _ => {}
            }
        }
        if has_data {
            return Some(event);
        }
    }
    None
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// A reader of a `text/event-stream` response.
pub struct SseStream {
    response: reqwest::Response,
    buffer: String,
}

impl SseStream {
    /// Opens `url` as an event stream; the response must be 200.
    pub async fn open(client: &reqwest::Client, url: &str, last_event_id: Option<u64>) -> Result<Self> {
        let mut request = client.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.with_context(|| format!("GET {url}"))?;
        if response.status() != reqwest::StatusCode::OK {
            bail!("GET {url}: {} {}", response.status(), response.text().await.unwrap_or_default());
        }
        Ok(Self { response, buffer: String::new() })
    }

    /// The next event (comments and bare `retry:` blocks skipped), within `within`.
    pub async fn next(&mut self, within: Duration) -> Result<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(event) = take_event(&mut self.buffer) {
                return Ok(event);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let chunk = self.next_chunk(left).await?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The answer's headers.
    pub fn headers(&self) -> &reqwest::header::HeaderMap {
        self.response.headers()
    }

    /// The next piece of the stream as it came off the connection, unparsed
    /// (a benchmark's clients record arrivals and parse afterwards), within
    /// `within`. Only for a stream read this way from its start.
    pub async fn next_chunk(&mut self, within: Duration) -> Result<bytes::Bytes> {
        match tokio::time::timeout(within, self.response.chunk()).await {
            Ok(Ok(Some(chunk))) => Ok(chunk),
            Ok(Ok(None)) => bail!("the stream ended"),
            Ok(Err(e)) => bail!("reading the stream: {e}"),
            Err(_) => bail!("no event within {within:?}"),
        }
    }

    /// The next `frame` event, skipping pings.
    pub async fn next_frame(&mut self, within: Duration) -> Result<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next(left).await?;
            if event.event == "frame" {
                return Ok(event);
            }
        }
    }
}

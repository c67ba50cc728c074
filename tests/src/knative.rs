//! Knative Eventing's data plane, played from the rendered objects: a Broker
//! ingress (HTTP, binary or structured CloudEvents) that delivers each event
//! to the subscriber of every Trigger whose filter matches, with the
//! Trigger's retry policy, and publishes a subscriber's reply back to the
//! Broker as Knative does (a reply is zero or one CloudEvent); and the
//! PingSource's tick.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_norway::Value;

/// One CloudEvent in flight: its attributes (without the `ce-` prefix), content type and data.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub attributes: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

impl Event {
    /// From an HTTP message in binary or structured content mode; None when it is neither.
    pub fn from_http(headers: &http::HeaderMap, body: Bytes) -> Option<Self> {
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
        if content_type.as_deref().is_some_and(|c| c.starts_with("application/cloudevents+json")) {
            return Self::structured(&body);
        }
        let attributes: BTreeMap<String, String> = headers
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().strip_prefix("ce-")?.to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        attributes.contains_key("type").then_some(Self { attributes, content_type, data: body })
    }

    fn structured(body: &[u8]) -> Option<Self> {
        let serde_json::Value::Object(mut fields) = serde_json::from_slice(body).ok()? else { return None };
        let data = match (fields.remove("data"), fields.remove("data_base64")) {
            (Some(serde_json::Value::String(s)), _) => Bytes::from(s),
            (Some(other), _) => Bytes::from(other.to_string()),
            (None, Some(serde_json::Value::String(b64))) => {
                use base64::Engine;
                Bytes::from(base64::engine::general_purpose::STANDARD.decode(b64).ok()?)
            }
            _ => Bytes::new(),
        };
        let content_type = fields.remove("datacontenttype").and_then(|v| v.as_str().map(str::to_owned));
        let attributes = fields
            .into_iter()
            .map(|(k, v)| (k, v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
            .collect();
        Some(Self { attributes, content_type, data })
    }

    pub fn kind(&self) -> &str {
        self.attributes.get("type").map(String::as_str).unwrap_or_default()
    }
}

/// A Trigger: its filter and where and how it delivers.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub name: String,
    pub filter: BTreeMap<String, String>,
    /// The subscriber's Knative Service and path.
    pub service: String,
    pub path: String,
    pub retry: u32,
    pub backoff_delay: Duration,
    pub exponential: bool,
}

/// ISO 8601 durations as Knative writes them (`PT0.5S`, `PT30S`, `PT1M`).
pub fn iso_duration(text: &str) -> Result<Duration> {
    let rest = text.strip_prefix("PT").with_context(|| format!("{text:?}: expected PT<n>S or PT<n>M"))?;
    let (number, unit) = rest.split_at(rest.len() - 1);
    let n: f64 = number.parse().with_context(|| format!("{text:?}: not a number"))?;
    Ok(Duration::from_secs_f64(match unit {
        "S" => n,
        "M" => n * 60.0,
        "H" => n * 3600.0,
        _ => bail!("{text:?}: unknown unit {unit}"),
    }))
}

fn text(value: &Value, path: &[&str]) -> Option<String> {
    path.iter().try_fold(value, |v, k| v.get(*k)).and_then(Value::as_str).map(str::to_owned)
}

/// The Triggers of `broker` among the rendered objects.
pub fn triggers(objects: &[Value], broker: &str) -> Result<Vec<Trigger>> {
    let mut out = Vec::new();
    for object in objects.iter().filter(|o| o["kind"].as_str() == Some("Trigger")) {
        if text(object, &["spec", "broker"]).as_deref() != Some(broker) {
            continue;
        }
        let name = text(object, &["metadata", "name"]).unwrap_or_default();
        let filter = object["spec"]["filter"]["attributes"]
            .as_mapping()
            .map(|m| {
                m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned()))).collect()
            })
            .unwrap_or_default();
        let subscriber = &object["spec"]["subscriber"];
        if text(subscriber, &["ref", "kind"]).as_deref() != Some("Service") {
            bail!("Trigger {name}: only Knative Service subscribers are played here");
        }
        let delivery = &object["spec"]["delivery"];
        out.push(Trigger {
            service: text(subscriber, &["ref", "name"]).unwrap_or_default(),
            path: text(subscriber, &["uri"]).unwrap_or_else(|| "/".to_owned()),
            retry: delivery["retry"].as_u64().unwrap_or(0) as u32,
            backoff_delay: text(delivery, &["backoffDelay"])
                .map(|d| iso_duration(&d))
                .transpose()?
                .unwrap_or(Duration::from_millis(200)),
            exponential: text(delivery, &["backoffPolicy"]).as_deref() != Some("linear"),
            name,
            filter,
        });
    }
    Ok(out)
}

/// What happened to one delivery, for assertions and for messages.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub trigger: String,
    pub event_type: String,
    pub status: Option<u16>,
    /// What became of the subscriber's reply.
    pub reply: Reply,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    None,
    /// One CloudEvent, published back to the Broker.
    Event(String),
    /// A body Knative does not take as an event (a CloudEvents batch, say): dropped.
    Dropped(String),
}

pub use knative_check::wiring::KAFKA_BROKER_INGRESS;

/// The Broker: its Triggers, the Knative Services' loopback addresses, and a log.
pub struct Broker {
    triggers: Vec<Trigger>,
    services: BTreeMap<String, String>,
    /// The path its ingress answers on (`/{namespace}/{broker}`).
    ingress_path: String,
    http: reqwest::Client,
    pub deliveries: Mutex<Vec<Delivery>>,
    /// Every event its ingress took, in order.
    pub received: Mutex<Vec<Event>>,
    /// While set, the ingress answers 503 (a Broker that is down).
    pub refusing: std::sync::atomic::AtomicBool,
}

impl Broker {
    pub fn new(triggers: Vec<Trigger>, services: BTreeMap<String, String>, ingress_path: &str) -> Arc<Self> {
        Arc::new(Self {
            triggers,
            services,
            ingress_path: ingress_path.to_owned(),
            http: reqwest::Client::new(),
            deliveries: Mutex::default(),
            received: Mutex::default(),
            refusing: Default::default(),
        })
    }

    /// The events its ingress took, in order.
    pub fn received(&self) -> Vec<Event> {
        self.received.lock().unwrap().clone()
    }

    /// Accepts an event and delivers it in the background, as the ingress does.
    pub fn publish(self: &Arc<Self>, event: Event) {
        for trigger in
            self.triggers.iter().filter(|t| t.filter.iter().all(|(k, v)| event.attributes.get(k) == Some(v)))
        {
            let (broker, trigger, event) = (self.clone(), trigger.clone(), event.clone());
            tokio::spawn(async move { broker.deliver(&trigger, event).await });
        }
    }

    async fn deliver(self: Arc<Self>, trigger: &Trigger, event: Event) {
        let Some(base) = self.services.get(&trigger.service) else {
            self.record(trigger, &event, None, Reply::Dropped(format!("no Service {}", trigger.service)));
            return;
        };
        let url = format!("{base}{}", trigger.path);
        let mut attempt = 0;
        loop {
            let mut request = self.http.post(&url).body(event.data.clone());
            for (name, value) in &event.attributes {
                request = request.header(format!("ce-{name}"), value);
            }
            if let Some(content_type) = &event.content_type {
                request = request.header("content-type", content_type);
            }
            let outcome = request.send().await;
            // Knative also retries 404 and 409; a wrong path never heals, so
            // here it fails at once and names the path.
            let retryable = match &outcome {
                Ok(r) => r.status().is_server_error() || r.status() == 429,
                Err(_) => true,
            };
            if retryable && attempt < trigger.retry {
                let factor = if trigger.exponential { 2u32.saturating_pow(attempt) } else { attempt + 1 };
                tokio::time::sleep(trigger.backoff_delay * factor).await;
                attempt += 1;
                continue;
            }
            let Ok(response) = outcome else {
                self.record(trigger, &event, None, Reply::Dropped("unreachable: dead-lettered".into()));
                return;
            };
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.unwrap_or_default();
            let reply = if !status.is_success() || body.is_empty() && !headers.contains_key("ce-type") {
                Reply::None
            } else {
                match Event::from_http(&headers, body) {
                    Some(reply) => {
                        let kind = reply.kind().to_owned();
                        self.publish(reply);
                        Reply::Event(kind)
                    }
                    None => Reply::Dropped(format!(
                        "not a CloudEvent ({})",
                        headers
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("no content type")
                    )),
                }
            };
            self.record(trigger, &event, Some(status.as_u16()), reply);
            return;
        }
    }

    fn record(&self, trigger: &Trigger, event: &Event, status: Option<u16>, reply: Reply) {
        self.deliveries.lock().unwrap().push(Delivery {
            trigger: trigger.name.clone(),
            event_type: event.kind().to_owned(),
            status,
            reply,
        });
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    /// Waits until a delivery by `trigger` is recorded; answers it.
    pub async fn delivered_by(&self, trigger: &str, within: Duration) -> Result<Delivery> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(d) = self.deliveries().into_iter().find(|d| d.trigger == trigger) {
                return Ok(d);
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "Trigger {trigger} delivered nothing within {within:?}; deliveries: {:?}",
                    self.deliveries()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the ingress answers a request: 202 for an event at its path
    /// (then delivered), 404 at another path, 400 for a body that is not an
    /// event, 503 while refusing.
    fn ingress(self: &Arc<Self>, path: &str, headers: &http::HeaderMap, body: Bytes) -> u16 {
        if path != self.ingress_path {
            return 404;
        }
        if self.refusing.load(std::sync::atomic::Ordering::SeqCst) {
            return 503;
        }
        match Event::from_http(headers, body) {
            Some(event) => {
                self.received.lock().unwrap().push(event.clone());
                self.publish(event);
                202
            }
            None => 400,
        }
    }

    /// Serves the Broker's ingress on `listener` (see [`Broker::ingress`]).
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let broker = self.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let broker = broker.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let status = broker.ingress(parts.uri.path(), &parts.headers, body);
                            let response = http::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::new()))
                                .unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

/// A PingSource's tick, as its adapter sends it: a `dev.knative.sources.ping`
/// event with the source's data and content type.
pub fn ping_event(ping_source: &Value) -> Result<Event> {
    let name = text(ping_source, &["metadata", "name"]).unwrap_or_default();
    let namespace = text(ping_source, &["metadata", "namespace"]).unwrap_or_else(|| "default".into());
    let schedule = text(ping_source, &["spec", "schedule"]).context("a PingSource has a schedule")?;
    parkd::scheduler::Schedule::parse(&schedule).with_context(|| format!("PingSource {name}: schedule"))?;
    let attributes = BTreeMap::from([
        ("specversion".to_owned(), "1.0".to_owned()),
        ("id".to_owned(), uuid::Uuid::new_v4().to_string()),
        ("type".to_owned(), "dev.knative.sources.ping".to_owned()),
        ("source".to_owned(), format!("/apis/v1/namespaces/{namespace}/pingsources/{name}")),
        ("time".to_owned(), chrono::Utc::now().to_rfc3339()),
    ]);
    Ok(Event {
        attributes,
        content_type: text(ping_source, &["spec", "contentType"]),
        data: Bytes::from(text(ping_source, &["spec", "data"]).unwrap_or_default()),
    })
}

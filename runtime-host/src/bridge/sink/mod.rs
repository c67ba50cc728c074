//! Where the bridge delivers events, chosen by URL: in-process (`parkd up`),
//! any CloudEvents HTTP endpoint (a Knative Broker, a KafkaSink), or a Kafka
//! topic (`kafka://host:port/topic`, by the CloudEvents Kafka binding).

pub mod kafka;

use std::sync::Arc;

use anyhow::{Result, bail};
use bytes::Bytes;
use http::StatusCode;

use super::message::BridgedEvent;
use crate::eventing::Eventing;

pub enum Sink {
    /// Straight into this parkd's eventing (its derived events leave asynchronously).
    InProcess(Arc<Eventing>),
    /// POST in binary content mode to a CloudEvents endpoint.
    Http { url: String, client: reqwest::Client },
    /// Produce to a Kafka topic, keyed by device (a KafkaSource delivers on).
    Kafka(kafka::KafkaSink),
}

/// What became of one delivery, which decides what the bridge does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The sink has it: acknowledge the MQTT message.
    Accepted,
    /// The sink refused it for good (4xx): dead-letter it, then acknowledge.
    Rejected { status: u16, reason: String },
    /// The sink is busy, unreachable or overloaded (429, 408, 502, 503, 504,
    /// no connection): retry until it takes the event, do not acknowledge.
    Retry { reason: String },
    /// The sink failed on this event (500 and the other 5xx): retry a few
    /// times, then dead-letter it, so one poison message cannot stop its
    /// lane (and, through the acknowledgements, the bridge).
    Failed { status: u16, reason: String },
}

/// What became of a batch: each event's delivery (accepted or refused), in
/// order, or one outcome for the whole batch (retry it, or deliver its
/// events one by one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchDelivery {
    Each(Vec<Delivery>),
    Whole(Delivery),
}

impl Sink {
    /// The sink a `--sink` URL names.
    pub fn from_url(url: &str) -> Result<Self> {
        if url.starts_with("kafka://") {
            Ok(Self::Kafka(kafka::KafkaSink::from_url(url)?))
        } else if url.starts_with("http://") || url.starts_with("https://") {
            Self::http(url)
        } else {
            bail!(
                "sink {url:?}: expected a CloudEvents endpoint (http://… or https://…) \
                 or a Kafka topic (kafka://host:port/topic)"
            )
        }
    }

    pub fn http(url: &str) -> Result<Self> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("sink {url:?}: expected an http:// or https:// CloudEvents endpoint");
        }
        Ok(Self::Http { url: url.to_owned(), client: http_client(None)? })
    }

    /// Sends `Authorization: Bearer <token>` with every delivery (a parkd's
    /// ingest token); only an HTTP sink carries one.
    pub fn with_token(self, token: Option<&str>) -> Result<Self> {
        match (self, token.filter(|t| !t.is_empty())) {
            (Sink::Http { url, .. }, Some(token)) => {
                Ok(Sink::Http { client: http_client(Some(token))?, url })
            }
            (sink, _) => Ok(sink),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Sink::InProcess(_) => "in-process eventing".to_owned(),
            Sink::Http { url, .. } => crate::credentials::redact_url(url),
            Sink::Kafka(kafka) => kafka.describe(),
        }
    }

    pub async fn deliver(&self, event: &BridgedEvent) -> Delivery {
        match self {
            Sink::InProcess(eventing) => {
                let response = eventing.ingress(event.request.clone()).await;
                classify(response.status(), response.body())
            }
            Sink::Http { url, client } => {
                let mut request = client.post(url).body(event.request.body().clone());
                for (name, value) in event.request.headers() {
                    request = request.header(name, value);
                }
                match request.send().await {
                    Ok(response) => {
                        let status = response.status();
                        let body = response.bytes().await.unwrap_or_default();
                        classify(status, &body)
                    }
                    Err(e) => Delivery::Retry { reason: format!("{} unreachable: {e}", self.describe()) },
                }
            }
            Sink::Kafka(kafka) => kafka.deliver(event).await,
        }
    }

    /// Whether several events may travel as one CloudEvents batch (a Kafka
    /// topic keeps one record per event).
    pub fn takes_batches(&self) -> bool {
        !matches!(self, Sink::Kafka(_))
    }

    /// Delivers events as one CloudEvents batch. A receiver answering with
    /// per-event results (parkd's sensor-event) has each event accepted or
    /// refused on its own; one answering 2xx without them took them all.
    pub async fn deliver_batch(&self, events: &[&BridgedEvent]) -> BatchDelivery {
        let body = match batch_body(events) {
            Ok(body) => body,
            Err(reason) => return BatchDelivery::Whole(Delivery::Rejected { status: 400, reason }),
        };
        let (status, content_type, body) = match self {
            Sink::InProcess(eventing) => {
                let request = http::Request::post("/")
                    .header(http::header::CONTENT_TYPE, crate::eventing::BATCH)
                    .body(body)
                    .expect("valid request");
                let response = eventing.ingress(request).await;
                (response.status(), content_type(response.headers()), response.into_body())
            }
            Sink::Http { url, client } => {
                let request =
                    client.post(url).header(http::header::CONTENT_TYPE, crate::eventing::BATCH).body(body);
                match request.send().await {
                    Ok(response) => {
                        let (status, content_type) = (response.status(), content_type(response.headers()));
                        (status, content_type, response.bytes().await.unwrap_or_default())
                    }
                    Err(e) => {
                        let reason = format!("{} unreachable: {e}", self.describe());
                        return BatchDelivery::Whole(Delivery::Retry { reason });
                    }
                }
            }
            Sink::Kafka(kafka) => {
                let mut each = Vec::with_capacity(events.len());
                for event in events {
                    match kafka.deliver(event).await {
                        Delivery::Accepted => each.push(Delivery::Accepted),
                        Delivery::Rejected { status, reason } => {
                            each.push(Delivery::Rejected { status, reason })
                        }
                        other => return BatchDelivery::Whole(other),
                    }
                }
                return BatchDelivery::Each(each);
            }
        };
        if !status.is_success() {
            return BatchDelivery::Whole(classify(status, &body));
        }
        if !content_type.starts_with(crate::eventing::RESULTS) {
            return BatchDelivery::Each(vec![Delivery::Accepted; events.len()]);
        }
        batch_results(&body, events.len())
    }
}

/// Each event's result in a batch's answer, in order: 2xx accepted, 4xx
/// refused with its reason; anything else makes the batch retried whole
/// (what was applied of it is recognised as a duplicate then).
fn batch_results(body: &[u8], expected: usize) -> BatchDelivery {
    #[derive(serde::Deserialize)]
    struct Answer {
        results: Vec<Result_>,
    }
    #[derive(serde::Deserialize)]
    struct Result_ {
        status: u16,
        #[serde(default)]
        error: Option<String>,
    }
    let results = match serde_json::from_slice::<Answer>(body) {
        Ok(answer) if answer.results.len() == expected => answer.results,
        Ok(answer) => {
            let reason = format!("{} results answered for a batch of {expected}", answer.results.len());
            return BatchDelivery::Whole(Delivery::Failed { status: 500, reason });
        }
        Err(e) => {
            let reason = format!("unreadable batch results: {e}");
            return BatchDelivery::Whole(Delivery::Failed { status: 500, reason });
        }
    };
    let mut each = Vec::with_capacity(results.len());
    for result in results {
        let status = StatusCode::from_u16(result.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match delivery_for(status, || result.error.unwrap_or_default()) {
            delivery @ (Delivery::Accepted | Delivery::Rejected { .. }) => each.push(delivery),
            other => return BatchDelivery::Whole(other),
        }
    }
    BatchDelivery::Each(each)
}

/// Events in JSON event format, as one CloudEvents batch.
fn batch_body(events: &[&BridgedEvent]) -> Result<Bytes, String> {
    let events = events
        .iter()
        .map(|e| {
            cloudevents::binding::http::to_event(e.request.headers(), e.request.body().to_vec())
                .map_err(|error| format!("event {}: {error}", e.id))
        })
        .collect::<Result<Vec<_>, _>>()?;
    serde_json::to_vec(&events).map(Bytes::from).map_err(|e| e.to_string())
}

fn content_type(headers: &http::HeaderMap) -> String {
    headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// The HTTP sink's client, with the token as a default (sensitive) header.
fn http_client(token: Option<&str>) -> Result<reqwest::Client> {
    let mut headers = http::HeaderMap::new();
    if let Some(token) = token {
        let mut value = http::HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| anyhow::anyhow!("--sink-token: not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, value);
    }
    Ok(reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .default_headers(headers)
        .build()?)
}

/// What an answer's status means, with the reason its body gives.
fn classify(status: StatusCode, body: &Bytes) -> Delivery {
    delivery_for(status, || {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned())
    })
}

/// What a status means for the delivery: accepted, refused for good, failed
/// on (tried a few times), or retried while the sink is busy or unreachable.
fn delivery_for(status: StatusCode, reason: impl FnOnce() -> String) -> Delivery {
    if status.is_success() {
        Delivery::Accepted
    } else if status.is_client_error()
        && status != StatusCode::TOO_MANY_REQUESTS
        && status != StatusCode::REQUEST_TIMEOUT
    {
        Delivery::Rejected { status: status.as_u16(), reason: reason() }
    } else if status.is_server_error()
        && !matches!(
            status,
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
        )
    {
        Delivery::Failed { status: status.as_u16(), reason: reason() }
    } else {
        Delivery::Retry { reason: format!("{status}: {}", reason()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_decide_retry_or_dead_letter() {
        let body = Bytes::from_static(br#"{"error": "unknown device \"X\""}"#);
        assert_eq!(classify(StatusCode::ACCEPTED, &body), Delivery::Accepted);
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, &body),
            Delivery::Rejected { status: 400, reason: "unknown device \"X\"".into() }
        );
        assert!(matches!(classify(StatusCode::SERVICE_UNAVAILABLE, &body), Delivery::Retry { .. }));
        assert!(matches!(classify(StatusCode::TOO_MANY_REQUESTS, &body), Delivery::Retry { .. }));
        assert!(matches!(classify(StatusCode::BAD_GATEWAY, &body), Delivery::Retry { .. }));
        assert!(matches!(classify(StatusCode::GATEWAY_TIMEOUT, &body), Delivery::Retry { .. }));
        assert!(matches!(classify(StatusCode::REQUEST_TIMEOUT, &body), Delivery::Retry { .. }));
        assert_eq!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, &body),
            Delivery::Failed { status: 500, reason: "unknown device \"X\"".into() }
        );
        assert!(matches!(classify(StatusCode::NOT_IMPLEMENTED, &body), Delivery::Failed { status: 501, .. }));
    }

    #[test]
    fn batch_results_accept_or_refuse_each_event_or_retry_the_batch() {
        let answer = br#"{"results": [{"id": "a", "status": 200, "outcome": "changed"},
            {"id": "b", "status": 400, "error": "unknown device \"X\""}, {"id": "c", "status": 202}], "events": []}"#;
        assert_eq!(
            batch_results(answer, 3),
            BatchDelivery::Each(vec![
                Delivery::Accepted,
                Delivery::Rejected { status: 400, reason: "unknown device \"X\"".into() },
                Delivery::Accepted,
            ])
        );
        assert!(matches!(batch_results(answer, 4), BatchDelivery::Whole(Delivery::Failed { .. })));
        assert!(matches!(batch_results(b"[]", 1), BatchDelivery::Whole(Delivery::Failed { .. })));
        let busy =
            br#"{"results": [{"id": "a", "status": 200}, {"id": "b", "status": 503, "error": "busy"}]}"#;
        assert!(matches!(batch_results(busy, 2), BatchDelivery::Whole(Delivery::Retry { .. })));
    }

    #[test]
    fn the_url_scheme_picks_the_sink() {
        assert!(Sink::http("kafka://x:9092/t").is_err());
        assert!(matches!(
            Sink::from_url("http://broker-ingress.knative-eventing.svc/parking/default"),
            Ok(Sink::Http { .. })
        ));
        assert!(matches!(Sink::from_url("kafka://kafka.svc:9092/parking-uplinks"), Ok(Sink::Kafka(_))));
        let refused = Sink::from_url("amqp://x/y").err().unwrap().to_string();
        assert!(refused.contains("kafka://host:port/topic"), "{refused}");
    }
}

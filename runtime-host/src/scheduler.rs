//! The local stand-in for Knative's PingSource: on a cron schedule, sends a
//! `dev.knative.sources.ping` CloudEvent through in-process eventing, so
//! the components subscribed to it (retention-sweep) run as on the cluster.

use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use croner::Cron;
use parking_domain::events::PING;

use crate::eventing::{self, Eventing};

/// The default of `parkd up`: every five minutes (roll-ups lag at most one
/// tick behind the settle delay; a tick with nothing to do costs a few queries).
pub const DEFAULT_SWEEP_CRON: &str = "*/5 * * * *";

/// A parsed cron schedule (five fields, UTC, as PingSource's `schedule`).
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    expression: String,
}

impl Schedule {
    pub fn parse(expression: &str) -> Result<Self> {
        let cron = Cron::from_str(expression.trim()).with_context(|| {
            format!("sweep schedule {expression:?} is not a cron expression such as \"*/5 * * * *\"")
        })?;
        Ok(Self { cron, expression: expression.trim().to_owned() })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Result<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after, false)
            .with_context(|| format!("sweep schedule {:?} has no next occurrence", self.expression))
    }
}

/// Sends ticks until the task is dropped. Ticks are sequential: a sweep that
/// runs longer than the interval delays the next tick instead of overlapping it.
pub fn spawn(schedule: Schedule, eventing: Arc<Eventing>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tracing::info!(schedule = schedule.expression(), "retention sweep scheduled");
        loop {
            let now = Utc::now();
            let next = match schedule.next_after(now) {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "sweep scheduler stopped");
                    return;
                }
            };
            let wait = (next - now).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            tick(&eventing, next).await;
        }
    })
}

/// One tick: the event a PingSource sends (binary mode), through eventing.
pub async fn tick(eventing: &Eventing, at: DateTime<Utc>) -> http::Response<Bytes> {
    let request = ping_request(at);
    let response = eventing.ingress(request).await;
    let status = response.status();
    let summary = eventing::replies(&response)
        .into_iter()
        .find(|e| cloudevents::AttributesReader::ty(e) == parking_domain::events::SWEEP_REPORT_V1)
        .and_then(|e| e.data().map(|d| d.to_string()));
    if status.is_success() {
        tracing::info!(status = status.as_u16(), report = summary.as_deref().unwrap_or(""), "sweep tick");
    } else {
        tracing::warn!(
            status = status.as_u16(),
            reason = %String::from_utf8_lossy(&response.body()[..response.body().len().min(300)]),
            "sweep tick failed; the next tick retries"
        );
    }
    response
}

fn ping_request(at: DateTime<Utc>) -> http::Request<Bytes> {
    http::Request::post("/")
        .header("ce-specversion", "1.0")
        .header("ce-id", uuid::Uuid::new_v4().to_string())
        .header("ce-source", "/parkd/scheduler/retention-sweep")
        .header("ce-type", PING)
        .header("ce-time", at.to_rfc3339())
        .header("content-type", "application/json")
        .body(Bytes::from_static(b"{}"))
        .expect("valid request")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn schedules_are_cron_expressions_in_utc() {
        let s = Schedule::parse("*/5 * * * *").unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 10, 2, 30).unwrap();
        assert_eq!(s.next_after(at).unwrap(), Utc.with_ymd_and_hms(2026, 11, 25, 10, 5, 0).unwrap());
        let on_the_tick = Utc.with_ymd_and_hms(2026, 11, 25, 10, 5, 0).unwrap();
        assert_eq!(
            s.next_after(on_the_tick).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 25, 10, 10, 0).unwrap()
        );
        let hourly = Schedule::parse("0 * * * *").unwrap();
        assert_eq!(hourly.next_after(at).unwrap(), Utc.with_ymd_and_hms(2026, 11, 25, 11, 0, 0).unwrap());
    }

    #[test]
    fn a_bad_schedule_names_itself() {
        let err = format!("{:#}", Schedule::parse("every five minutes").unwrap_err());
        assert!(err.contains("every five minutes") && err.contains("cron"), "{err}");
    }

    #[test]
    fn the_tick_is_a_ping_cloudevent() {
        let request = ping_request(Utc.with_ymd_and_hms(2026, 11, 25, 10, 5, 0).unwrap());
        let (parts, body) = request.into_parts();
        let event = cloudevents::binding::http::to_event(&parts.headers, body.to_vec()).unwrap();
        assert_eq!(cloudevents::AttributesReader::ty(&event), PING);
    }
}

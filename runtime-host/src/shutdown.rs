//! Shutting down: the signal every long-running command stops on, and the
//! grace period its drain must fit in.
//!
//! Kubernetes sends SIGTERM, waits `terminationGracePeriodSeconds` (30 s by
//! default), then kills; a terminal sends SIGINT. Both start the same
//! drain: stop accepting, finish what is in flight, acknowledge what
//! committed, exit 0 — or, past the grace period, say what was abandoned
//! and exit non-zero (the broker redelivers what was not acknowledged).

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Under Kubernetes' default 30 s `terminationGracePeriodSeconds`, with
/// room to log and exit before the kill.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(25);

/// SIGTERM and SIGINT, caught from the moment this is made (neither kills
/// the process any more: each asks for a drain).
pub struct Signals {
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    pub fn install() -> Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    /// The next SIGTERM or SIGINT; answers its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

/// What a drain left undone when its grace period ran out, by what held it.
#[derive(Debug, Default)]
pub struct Abandoned(Vec<String>);

impl Abandoned {
    pub fn add(&mut self, what: impl Into<String>) {
        self.0.push(what.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for Abandoned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

/// `--grace-period` in seconds, as clap parses it.
pub fn parse_grace_period(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{s:?}: expected seconds (e.g. 25)"))
}

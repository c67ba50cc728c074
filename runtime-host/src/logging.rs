//! parkd's logs: text (coloured only on a terminal) or JSON, on stderr, with
//! the noise of its libraries turned down.

use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// What is logged unless `RUST_LOG` says otherwise.
pub const DEFAULT_DIRECTIVES: &str = "info,wasmtime=warn,cranelift=warn,sqlx=warn,rumqttd=warn";

/// Installs the global subscriber; `json` for machine-read logs (a cluster).
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_DIRECTIVES));
    let layer = fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    let layer = if json { layer.json().boxed() } else { layer.boxed() };
    tracing_subscriber::registry().with(layer.with_filter(filter).with_filter(QuietDisconnects)).init();
}

/// The embedded broker (rumqttd) logs an ERROR, "no-connection id N is
/// already gone", each time a client disconnects normally: an operator would
/// read it as a fault. Those events are dropped; rumqttd's others pass.
#[derive(Debug, Clone, Copy)]
pub struct QuietDisconnects;

impl<S: Subscriber> Filter<S> for QuietDisconnects {
    fn enabled(&self, _: &tracing::Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _: &Context<'_, S>) -> bool {
        let metadata = event.metadata();
        if !metadata.target().starts_with("rumqttd") || *metadata.level() != Level::ERROR {
            return true;
        }
        let mut message = MessageText(String::new());
        event.record(&mut message);
        !message.0.contains("is already gone")
    }
}

struct MessageText(String);

impl Visit for MessageText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn normal_disconnects_of_the_embedded_broker_are_not_logged_as_errors() {
        let captured = Captured::default();
        let writer = captured.clone();
        let layer = fmt::layer().with_writer(move || writer.clone()).with_ansi(false);
        let subscriber = tracing_subscriber::registry()
            .with(layer.with_filter(EnvFilter::new(DEFAULT_DIRECTIVES)).with_filter(QuietDisconnects));
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "rumqttd::router::routing", "no-connection id 3 is already gone");
            tracing::error!(target: "rumqttd::router::routing", "commitlog full");
            tracing::info!(target: "parkd", "listening");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("already gone"), "{text}");
        assert!(text.contains("commitlog full"), "other broker errors stay: {text}");
        assert!(text.contains("listening"), "{text}");
    }
}

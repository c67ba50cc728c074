//! `GET /terminals/{id}/ws`: the terminal's frames over a WebSocket, for
//! clients that prefer one to SSE. Each frame is a text message (the frame's
//! JSON, whose `seq` is its id); keep-alives are WebSocket pings; resume with
//! `?lastEventId=`. The upgrade goes through hyper; the protocol is tungstenite's.

use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::{Body, Client, Gateway, Next, error, full};

fn header_has<B>(req: &hyper::Request<B>, name: &str, token: &str) -> bool {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(token))
}

impl Gateway {
    pub(super) fn websocket<B>(
        self: &Arc<Self>,
        mut req: hyper::Request<B>,
        terminal: &str,
        last_seen: Option<u64>,
    ) -> Response<Body>
    where
        B: hyper::body::Body + Send + 'static,
    {
        let key = req.headers().get("sec-websocket-key").cloned();
        let (Some(key), true, true) =
            (key, header_has(&req, "upgrade", "websocket"), header_has(&req, "connection", "upgrade"))
        else {
            return error(
                StatusCode::BAD_REQUEST,
                "expected a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket, Sec-WebSocket-Key)",
            );
        };
        if req.headers().get("sec-websocket-version").and_then(|v| v.to_str().ok()) != Some("13") {
            let mut r = error(StatusCode::UPGRADE_REQUIRED, "only WebSocket version 13 is spoken here");
            r.headers_mut().insert("sec-websocket-version", HeaderValue::from_static("13"));
            return r;
        }
        let upgrade = hyper::upgrade::on(&mut req);
        let mut client = Client::new(self, terminal, last_seen);
        let keep_alive = self.keep_alive;
        tokio::spawn(async move {
            let upgraded = match upgrade.await {
                Ok(upgraded) => upgraded,
                Err(e) => {
                    tracing::debug!(error = %e, "a WebSocket upgrade failed");
                    return;
                }
            };
            let mut socket =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(limits())).await;
            loop {
                tokio::select! {
                    next = client.next(keep_alive) => {
                        let message = match next {
                            // The text shared by every client, not a copy.
                            Some(Next::Frame(frame)) => Message::Text(frame.ws.clone()),
                            Some(Next::Ping(now)) => Message::Ping(Bytes::from(now.to_string())),
                            None => break,
                        };
                        if socket.send(message).await.is_err() {
                            break;
                        }
                    }
                    incoming = socket.next() => match incoming {
                        // Pongs and anything the client says are ignored; a close ends it.
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                        Some(Ok(_)) => {}
                    },
                }
            }
            let _ = socket.close(None).await;
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
            .body(full(Bytes::new()))
            .expect("valid response")
    }
}

/// Terminals only listen: what they send is a ping, a pong or a close, so a
/// larger message is refused rather than buffered.
fn limits() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(4 << 10))
        .max_frame_size(Some(4 << 10))
}

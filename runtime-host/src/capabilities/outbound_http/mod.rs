//! `wasi:http/outgoing-handler@0.2.0`: outbound HTTP, gated by the allow-list.
//!
//! - linker: wasmtime-wasi-http's own bindings (see `instance.rs`);
//! - shared: nothing beyond wasmtime-wasi-http's client;
//! - per instance: [`OutboundHttp`], the component's allowed hosts, used as
//!   the `WasiHttpHooks` that every outgoing request passes through.

use std::future::Future;

use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use crate::capabilities::allowed_hosts::AllowedHosts;

pub struct OutboundHttp {
    allowed: AllowedHosts,
}

impl OutboundHttp {
    pub fn new(allowed: AllowedHosts) -> Self {
        Self { allowed }
    }

    /// Whether this component may send `request`; the refusal names the address.
    pub fn permit(&self, request: &http::Request<WasiBody>) -> Result<(), String> {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https");
        let host = uri.host().unwrap_or_default();
        self.allowed.check(scheme, host, uri.port_u16()).map_err(|refused| refused.to_string())
    }
}

type Response = http::Response<WasiBody>;
type Io = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Io,
    ) -> Box<dyn Future<Output = Result<(Response, Io), wasmtime_wasi_http::Error>> + Send> {
        let verdict = self.permit(&request);
        Box::new(async move {
            if let Err(refusal) = verdict {
                tracing::warn!(%refusal, "refused an outbound HTTP request");
                return Err(ErrorCode::HttpRequestDenied.into());
            }
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as Io))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn request(uri: &str) -> http::Request<WasiBody> {
        let body =
            http_body_util::Empty::<bytes::Bytes>::new().map_err(|never| match never {}).boxed_unsync();
        http::Request::get(uri).body(body).unwrap()
    }

    fn hooks(entries: &[&str]) -> OutboundHttp {
        OutboundHttp::new(
            AllowedHosts::parse("terminal-push", &entries.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap(),
        )
    }

    #[test]
    fn requests_to_listed_hosts_pass() {
        let h = hooks(&["http://127.0.0.1:8080", "https://*.example.org"]);
        assert!(h.permit(&request("http://127.0.0.1:8080/events")).is_ok());
        assert!(h.permit(&request("https://broker.example.org/x")).is_ok());
    }

    #[test]
    fn other_hosts_are_refused_with_the_line_to_add() {
        let h = hooks(&["http://127.0.0.1:8080"]);
        let refusal = h.permit(&request("http://127.0.0.1:9090/events")).unwrap_err();
        assert!(refusal.contains("http://127.0.0.1:9090"), "{refusal}");
        assert!(refusal.contains("[component.terminal-push]"), "{refusal}");
    }

    #[tokio::test]
    async fn a_refused_request_never_leaves_the_host() {
        // A listener that records whether anything connected.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut h = hooks(&["http://127.0.0.1:1"]);
        let io: Io = Box::new(async { Ok(()) });
        let fut = h.send_request(request(&format!("http://127.0.0.1:{port}/")), None, io);
        let result = Box::into_pin(fut).await;
        assert!(result.is_err(), "the request must be refused");
        let accepted = tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "nothing may connect to a host that is not allowed");
    }
}

//! Terminal streams on the bare connection.
//!
//! A gateway connection's first request head is read here, before hyper
//! sees the connection. When it asks for a terminal's event stream
//! (`GET /terminals/{id}/stream`) with a valid token, or for the public
//! stream of every lot's summary (`GET /find/stream`), the stream is served on
//! the socket itself: the response head, then each frame's shared SSE bytes
//! written as they are (the body is delimited by the connection's close), and
//! nothing else kept per client. hyper would keep its read and write buffers
//! (8 KiB each) and encode every frame as a chunk for every client, for the
//! whole life of a stream that only ever writes.
//!
//! Anything else (another route, a WebSocket upgrade, a refused token, a
//! head this does not understand) goes to hyper with the bytes already read
//! in front of it ([`Replayed`]), so hyper answers exactly as it would have;
//! a stream asked for later on a kept-alive connection is hyper's too, and
//! sends the same bytes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::fanout::{self, write_all, write_next};
use super::tokens::Verdict;
use super::{Client, Gateway, LOTS_STREAM_PATH, LotsClient, hello, last_event_id_in, token_in};

/// The most a request head may take here; a longer one goes to hyper.
const MAX_HEAD: usize = 8 * 1024;
/// Headers read here; a request with more goes to hyper.
const MAX_HEADERS: usize = 32;

/// The answer's head: the body is the event stream until the connection closes.
const STREAM_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\n\
    content-type: text/event-stream\r\n\
    cache-control: no-store\r\n\
    x-accel-buffering: no\r\n\
    connection: close\r\n\r\n";

/// A connection whose first bytes were already read: they are read again first.
pub struct Replayed {
    head: Bytes,
    stream: TcpStream,
}

impl Replayed {
    /// A connection nothing was read from yet.
    pub fn new(stream: TcpStream) -> Self {
        Self { head: Bytes::new(), stream }
    }
}

impl AsyncRead for Replayed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.head.is_empty() {
            let n = self.head.len().min(buf.remaining());
            buf.put_slice(&self.head[..n]);
            self.head.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replayed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A stream request as read from a head.
#[derive(Debug, PartialEq)]
struct StreamRequest {
    terminal: String,
    token: Option<String>,
    last_seen: Option<u64>,
}

/// The stream a head asks for.
#[derive(Debug, PartialEq)]
enum Wanted {
    /// A terminal's frames (token-protected).
    Terminal(StreamRequest),
    /// Every lot's public summary.
    Lots,
}

/// What the first request head of a connection asks for.
pub enum Asked {
    /// A terminal's stream with a valid token, or the lots' stream: [`serve`] it.
    Stream(Stream),
    /// Anything else: hyper's, with what was read in front.
    Other(Replayed),
    /// Closed, failed or silent before a whole head: nothing to answer.
    Nothing,
}

/// A stream to serve on the bare connection.
pub struct Stream {
    wanted: Wanted,
    stream: TcpStream,
}

/// Reads the connection's first request head (cut off after `header_timeout`).
pub async fn read_head(gateway: &Arc<Gateway>, mut stream: TcpStream, header_timeout: Duration) -> Asked {
    let mut head = BytesMut::with_capacity(1024);
    let read = async {
        loop {
            if stream.read_buf(&mut head).await? == 0 {
                return Ok(None);
            }
            match parse(&head) {
                Parsed::Partial if head.len() < MAX_HEAD => continue,
                Parsed::Stream(request) => return Ok(Some(Some(request))),
                _ => return Ok(Some(None)),
            }
        }
    };
    let request = match tokio::time::timeout(header_timeout, read).await {
        Ok(Ok(Some(request))) => request,
        Ok(Ok(None)) | Ok(Err::<_, io::Error>(_)) | Err(_) => return Asked::Nothing,
    };
    match request {
        Some(Wanted::Lots) => return Asked::Stream(Stream { wanted: Wanted::Lots, stream }),
        Some(Wanted::Terminal(request))
            if matches!(
                gateway.tokens.check(&request.terminal, request.token.as_deref()).await,
                Ok(Verdict::Allowed)
            ) =>
        {
            return Asked::Stream(Stream { wanted: Wanted::Terminal(request), stream });
        }
        _ => {}
    }
    Asked::Other(Replayed { head: head.freeze(), stream })
}

enum Parsed {
    Partial,
    Stream(Wanted),
    /// Whole, but not a stream served here (or not understood): hyper's.
    Other,
}

fn parse(head: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Ok(httparse::Status::Complete(_)) => stream_request(&request).map_or(Parsed::Other, Parsed::Stream),
        Err(_) => Parsed::Other,
    }
}

fn stream_request(request: &httparse::Request<'_, '_>) -> Option<Wanted> {
    if request.method != Some("GET") {
        return None;
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    if header("upgrade").is_some() {
        return None;
    }
    let (path, query) = match request.path?.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (request.path?, None),
    };
    if path == LOTS_STREAM_PATH {
        return Some(Wanted::Lots);
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let ["terminals", terminal, "stream"] = segments.as_slice() else { return None };
    parking_domain::validate_id("terminal", terminal).ok()?;
    Some(Wanted::Terminal(StreamRequest {
        terminal: (*terminal).to_owned(),
        token: token_in(header("authorization"), query),
        last_seen: last_event_id_in(header("last-event-id"), query),
    }))
}

/// Writes the stream until the client goes, a write fails or the gateway
/// closes. A terminal's frames are written by its fan-out once the client is
/// caught up ([`fanout::relay`]).
pub async fn serve(gateway: &Arc<Gateway>, Stream { wanted, stream }: Stream) {
    let stream = Arc::new(stream);
    // Counted as connected before its head is written: a client that has
    // its answer is in the gateway's count.
    enum Watcher {
        Terminal(Client, String),
        Lots(LotsClient),
    }
    let watcher = match wanted {
        Wanted::Terminal(request) => {
            Watcher::Terminal(Client::new(gateway, &request.terminal, request.last_seen), request.terminal)
        }
        Wanted::Lots => Watcher::Lots(LotsClient::new(gateway)),
    };
    let relay = async {
        write_all(&stream, STREAM_HEAD).await?;
        write_all(&stream, &hello()).await?;
        match watcher {
            Watcher::Terminal(client, terminal) => {
                fanout::relay(&gateway.fanouts, &terminal, client, stream.clone()).await
            }
            Watcher::Lots(lots) => relay_lots(gateway, lots, &stream).await,
        }
    };
    // A client that stopped reading must not hold up a draining host.
    tokio::select! {
        _ = gateway.closing.cancelled() => {}
        _ = relay => {}
    }
}

/// Every lot's summaries, each newest as it changes, written by the stream's own task.
async fn relay_lots(gateway: &Arc<Gateway>, mut client: LotsClient, stream: &TcpStream) -> io::Result<()> {
    while write_next(stream, client.next(gateway.keep_alive)).await? {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(head: &str) -> Option<StreamRequest> {
        match parse(head.as_bytes()) {
            Parsed::Stream(Wanted::Terminal(request)) => Some(request),
            _ => None,
        }
    }

    #[test]
    fn the_lots_stream_is_served_here_without_a_token() {
        for head in ["GET /find/stream HTTP/1.1\r\nHost: x\r\n\r\n", "GET /find/stream?x=1 HTTP/1.1\r\n\r\n"]
        {
            assert!(matches!(parse(head.as_bytes()), Parsed::Stream(Wanted::Lots)), "{head:?}");
        }
        for head in [
            "GET /find HTTP/1.1\r\n\r\n",
            "POST /find/stream HTTP/1.1\r\n\r\n",
            "GET /find/stream/x HTTP/1.1\r\n\r\n",
        ] {
            assert!(matches!(parse(head.as_bytes()), Parsed::Other), "{head:?}");
        }
    }

    #[test]
    fn a_stream_request_with_its_token_and_resume_point() {
        let request = parsed(
            "GET /terminals/T-1/stream?token=abc%20d&lastEventId=7 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
        );
        let expected =
            StreamRequest { terminal: "T-1".into(), token: Some("abc d".into()), last_seen: Some(7) };
        assert_eq!(request, Some(expected));
        let request = parsed(
            "GET /terminals/T-1/stream HTTP/1.1\r\nAuthorization: Bearer tok\r\nLast-Event-ID: 9\r\n\r\n",
        );
        let expected =
            StreamRequest { terminal: "T-1".into(), token: Some("tok".into()), last_seen: Some(9) };
        assert_eq!(request, Some(expected));
    }

    #[test]
    fn everything_else_is_left_to_hyper() {
        for head in [
            "GET /terminals/T-1/ws HTTP/1.1\r\n\r\n",
            "GET /terminals/T-1 HTTP/1.1\r\n\r\n",
            "POST /terminals/T-1/stream HTTP/1.1\r\n\r\n",
            "GET /terminals/T-1/stream HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET /terminals/bad%20id/stream HTTP/1.1\r\n\r\n",
            "GET /api/v1/lots HTTP/1.1\r\n\r\n",
            "NOT HTTP\r\n\r\n",
        ] {
            assert!(parsed(head).is_none(), "{head:?}");
        }
        assert!(matches!(parse(b"GET /terminals/T-1/stream HTTP/1.1\r\nHost:"), Parsed::Partial));
    }
}

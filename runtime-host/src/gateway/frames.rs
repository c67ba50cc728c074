//! The frames the gateway relays: per terminal, the current frame, a short
//! ring of recent ones (for `Last-Event-ID` resume) and a broadcast channel
//! to every client of that terminal on this replica.
//!
//! Each frame is encoded once, as the SSE event and as the JSON text a
//! WebSocket sends, and shared by every client: fan-out costs a reference
//! count per client, not a copy.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::broadcast;

/// Frames kept per terminal for resume; older ones are covered by the
/// current frame, which is a whole state.
pub const RING_FRAMES: usize = 32;
/// Frames a slow client may fall behind before it skips to the current one.
const CLIENT_BACKLOG: usize = 64;

/// One frame, ready to send.
#[derive(Debug)]
pub struct Relayed {
    pub seq: u64,
    /// `id: <seq>\nevent: frame\ndata: <json>\n\n`
    pub sse: Bytes,
    /// The frame's JSON (a WebSocket text message).
    pub json: Bytes,
}

struct Terminal {
    current: Option<Arc<Relayed>>,
    ring: VecDeque<Arc<Relayed>>,
    sender: broadcast::Sender<Arc<Relayed>>,
}

impl Terminal {
    fn new() -> Self {
        Self { current: None, ring: VecDeque::new(), sender: broadcast::channel(CLIENT_BACKLOG).0 }
    }
}

/// What a client gets when it connects: the frames to send at once, then the
/// live ones.
pub struct Subscription {
    pub backlog: Vec<Arc<Relayed>>,
    pub live: broadcast::Receiver<Arc<Relayed>>,
}

#[derive(Default)]
pub struct Frames {
    terminals: Mutex<HashMap<String, Terminal>>,
}

#[derive(Deserialize)]
struct FrameHead {
    seq: u64,
}

impl Frames {
    /// Takes a frame published for `terminal`. Frames at or below the current
    /// seq are dropped: a retained copy seen again after a reconnect, or a
    /// publish that lost a race with a newer one.
    pub fn accept(&self, terminal: &str, payload: &[u8]) -> Result<bool, String> {
        let head: FrameHead =
            serde_json::from_slice(payload).map_err(|e| format!("not a terminal frame: {e}"))?;
        let json = std::str::from_utf8(payload).map_err(|e| e.to_string())?;
        if json.contains('\n') || json.contains('\r') {
            // One SSE data line; serde_json never writes raw newlines, others might.
            return Err("frame JSON spans lines".into());
        }
        let relayed = Arc::new(Relayed {
            seq: head.seq,
            sse: Bytes::from(format!("id: {}\nevent: frame\ndata: {json}\n\n", head.seq)),
            json: Bytes::copy_from_slice(payload),
        });
        let mut terminals = self.terminals.lock().expect("frames lock");
        let t = terminals.entry(terminal.to_owned()).or_insert_with(Terminal::new);
        if t.current.as_ref().is_some_and(|c| c.seq >= head.seq) {
            return Ok(false);
        }
        t.current = Some(relayed.clone());
        t.ring.push_back(relayed.clone());
        while t.ring.len() > RING_FRAMES {
            t.ring.pop_front();
        }
        // No receivers is fine: nobody watches this terminal on this replica.
        let _ = t.sender.send(relayed);
        Ok(true)
    }

    /// Subscribes a client of `terminal` that last saw frame `last_seen`.
    /// Backlog and live channel are taken under one lock: nothing falls
    /// between them.
    pub fn subscribe(&self, terminal: &str, last_seen: Option<u64>) -> Subscription {
        let mut terminals = self.terminals.lock().expect("frames lock");
        let t = terminals.entry(terminal.to_owned()).or_insert_with(Terminal::new);
        let live = t.sender.subscribe();
        let backlog = match (last_seen, &t.current) {
            (_, None) => Vec::new(),
            (None, Some(current)) => vec![current.clone()],
            (Some(last), Some(current)) if last >= current.seq => Vec::new(),
            (Some(last), Some(current)) => {
                let continuous = t.ring.front().is_some_and(|oldest| oldest.seq <= last + 1);
                if continuous {
                    t.ring.iter().filter(|f| f.seq > last).cloned().collect()
                } else {
                    // Missed more than the ring holds: the current frame is the whole state.
                    vec![current.clone()]
                }
            }
        };
        Subscription { backlog, live }
    }

    /// The current frame of `terminal`, if one was seen.
    pub fn current(&self, terminal: &str) -> Option<Arc<Relayed>> {
        self.terminals.lock().expect("frames lock").get(terminal).and_then(|t| t.current.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64) -> Vec<u8> {
        format!(r#"{{"terminal":"T","seq":{seq},"text":"L1  CARS {seq}"}}"#).into_bytes()
    }

    #[test]
    fn older_and_repeated_frames_are_dropped() {
        let f = Frames::default();
        assert!(f.accept("T", &frame(2)).unwrap());
        assert!(!f.accept("T", &frame(2)).unwrap());
        assert!(!f.accept("T", &frame(1)).unwrap());
        assert!(f.accept("T", &frame(3)).unwrap());
        assert_eq!(f.current("T").unwrap().seq, 3);
        assert!(f.accept("T", b"not json").is_err());
    }

    #[test]
    fn a_new_client_gets_the_current_frame_and_a_resuming_one_what_it_missed() {
        let f = Frames::default();
        for seq in 1..=5 {
            f.accept("T", &frame(seq)).unwrap();
        }
        let seqs = |s: Subscription| s.backlog.iter().map(|r| r.seq).collect::<Vec<_>>();
        assert_eq!(seqs(f.subscribe("T", None)), [5]);
        assert_eq!(seqs(f.subscribe("T", Some(2))), [3, 4, 5]);
        assert_eq!(seqs(f.subscribe("T", Some(5))), Vec::<u64>::new());
        assert_eq!(seqs(f.subscribe("T", Some(9))), Vec::<u64>::new(), "ahead of this replica: wait");
        assert_eq!(seqs(f.subscribe("other", None)), Vec::<u64>::new());
        let sse = &f.subscribe("T", None).backlog[0].sse;
        assert!(sse.starts_with(b"id: 5\nevent: frame\ndata: {"), "{sse:?}");
        assert!(sse.ends_with(b"}\n\n"));
    }

    #[test]
    fn a_client_behind_the_ring_resumes_from_the_current_frame() {
        let f = Frames::default();
        for seq in 1..=(RING_FRAMES as u64 + 10) {
            f.accept("T", &frame(seq)).unwrap();
        }
        let s = f.subscribe("T", Some(3));
        assert_eq!(s.backlog.len(), 1);
        assert_eq!(s.backlog[0].seq, RING_FRAMES as u64 + 10);
    }

    #[tokio::test]
    async fn live_frames_reach_every_subscriber() {
        let f = Frames::default();
        let mut a = f.subscribe("T", None).live;
        let mut b = f.subscribe("T", None).live;
        f.accept("T", &frame(1)).unwrap();
        assert_eq!(a.recv().await.unwrap().seq, 1);
        assert_eq!(b.recv().await.unwrap().seq, 1);
    }
}

//! The frames the gateway relays. A frame is a whole state, so per terminal
//! the gateway keeps only the newest one, in a `watch` channel every client of
//! that terminal reads: a slow client skips to the newest frame instead of
//! building a backlog, and a client that resumes (`Last-Event-ID`) gets the
//! newest frame unless it already has it.
//!
//! Each frame is encoded once, as the SSE event and as the WebSocket text, and
//! shared by every client: fan-out costs a reference count per client.
//!
//! ## Which frame is newer
//!
//! `seq` orders the frames of one terminal rendered close together (two
//! renders racing: their clocks cannot order them, the seq assigned in the
//! database can). The render clock (`renderedAt`) orders frames rendered far
//! apart: a terminal deleted and created again restarts at seq 1, and a
//! forged frame with a huge seq must not hide every genuine frame after it.
//! So:
//!
//! - a frame rendered more than [`FUTURE_SKEW`] ahead of this gateway's clock
//!   is implausible and dropped (it would otherwise outrank frames for long);
//! - a frame rendered more than [`REORDER_WINDOW`] after the current one is
//!   newer, and one rendered more than that before it is older, whatever
//!   their seqs;
//! - within the window, the higher seq is newer, and of one seq the one
//!   rendered later (a render whose stored frame was lost, or raced another).
//!
//! A forged frame therefore shadows genuine ones for at most
//! `FUTURE_SKEW + REORDER_WINDOW`, also across restarts (the broker's retained
//! copy is replaced by the next genuine frame).
//!
//! ## Rate cap
//!
//! Clients of one terminal see at most one frame per `min_interval` on
//! average, with one frame of slack (the gateway's `pace`): renders paced at
//! the same interval reach the gateway with jitter (the render's commit, the
//! broker), and one that comes a little early is shown at once. A frame held is shown
//! when the pace allows, the newest held one (a trailing frame, always), so
//! the cap never leaves a client on a stale final state.
//!
//! ## Lot summaries
//!
//! The lots' public summaries (the public page's live counts) are kept the
//! same way, one `Frames` keyed by lot ([`Frames::for_lots`]): they carry a
//! `seq` and `renderedAt` too, and are encoded as `event: lot` without an id
//! (one stream carries every lot, so no single id resumes it). A stream of
//! every lot watches [`Frames::watch_any`], a counter bumped whenever any
//! key's shown summary changes, and sends each lot whose summary it has not
//! sent ([`Frames::unsent`]): a slow client skips to the newest per lot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::pace::Pace;

/// How far ahead of this gateway's clock a frame may have been rendered.
pub const FUTURE_SKEW: Duration = Duration::from_secs(10);
/// Frames rendered closer together than this are ordered by seq; farther
/// apart, by when they were rendered.
pub const REORDER_WINDOW: Duration = Duration::from_secs(5);

/// One frame, ready to send.
#[derive(Debug)]
pub struct Relayed {
    pub seq: u64,
    /// This gateway's count of frames taken for the terminal: how a client
    /// knows how many it skipped, and that it has sent one already.
    pub version: u64,
    /// When the frame was rendered (ms since the epoch).
    pub rendered_at_ms: i64,
    /// `id: <seq>\nevent: frame\ndata: <json>\n\n`
    pub sse: Bytes,
    /// The frame's JSON, as the WebSocket text message.
    pub ws: Utf8Bytes,
}

impl Relayed {
    /// The frame's JSON.
    pub fn json(&self) -> &[u8] {
        self.ws.as_ref()
    }
}

/// The newest frame of a terminal, as clients watch it.
pub type Latest = watch::Receiver<Option<Arc<Relayed>>>;

struct Terminal {
    /// What clients see (the newest frame, at most one per interval).
    shown: watch::Sender<Option<Arc<Relayed>>>,
    /// The newest frame taken, possibly held back by the rate cap.
    newest: Option<Arc<Relayed>>,
    /// The frames shown, as the rate cap spaces them.
    pace: Pace,
    flush_scheduled: bool,
    versions: u64,
}

impl Terminal {
    fn new() -> Self {
        Self {
            shown: watch::channel(None).0,
            newest: None,
            pace: Pace::default(),
            flush_scheduled: false,
            versions: 0,
        }
    }

    /// Shows the newest frame; answers whether what is shown changed.
    fn show_newest(&mut self, interval: Duration) -> bool {
        let newest = self.newest.clone();
        let changed = self.shown.borrow().as_ref().map(|f| f.version) != newest.as_ref().map(|f| f.version);
        if changed {
            self.shown.send_replace(newest);
            self.pace.happened(Instant::now(), interval);
        }
        changed
    }
}

/// What became of a published frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// The first frame this gateway sees of the terminal (shown as `Newer`).
    First,
    /// Newer than the current frame: shown now, or when the rate cap allows.
    Newer,
    /// The current frame published again (a redelivered change, the terminal
    /// provisioned again without a change, a retained copy after a reconnect).
    Repeated,
    /// Older than the current frame (a publish that lost a race, a replay).
    Older,
    /// An empty payload: the terminal is gone (its retained frame cleared).
    Cleared,
}

pub struct Frames {
    terminals: Mutex<HashMap<String, Terminal>>,
    min_interval: Duration,
    /// The SSE event name (`frame`, or `lot` for summaries).
    event: &'static str,
    /// Whether events carry an `id:` (a terminal's stream resumes by it).
    ids: bool,
    /// Bumped whenever what any key shows changes.
    any: watch::Sender<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FrameHead {
    seq: u64,
    rendered_at: chrono::DateTime<chrono::Utc>,
}

impl Frames {
    /// Clients of one terminal see at most one frame per `min_interval`.
    pub fn new(min_interval: Duration) -> Arc<Self> {
        Self::encoding(min_interval, "frame", true)
    }

    /// The lots' public summaries, keyed by lot: `event: lot`, no ids.
    pub fn for_lots(min_interval: Duration) -> Arc<Self> {
        Self::encoding(min_interval, "lot", false)
    }

    fn encoding(min_interval: Duration, event: &'static str, ids: bool) -> Arc<Self> {
        Arc::new(Self {
            terminals: Mutex::new(HashMap::new()),
            min_interval,
            event,
            ids,
            any: watch::channel(0).0,
        })
    }

    /// Takes a frame published for `terminal`, by this gateway's clock `now_ms`.
    /// Errors say why a frame is refused (malformed or implausible).
    pub fn accept(self: &Arc<Self>, terminal: &str, payload: &[u8], now_ms: i64) -> Result<Taken, String> {
        if payload.is_empty() {
            // Dropping the sender ends every stream of the terminal.
            if self.lock().remove(terminal).is_some() {
                self.any.send_modify(|n| *n += 1);
            }
            return Ok(Taken::Cleared);
        }
        let head: FrameHead =
            serde_json::from_slice(payload).map_err(|e| format!("not a terminal frame: {e}"))?;
        let rendered_at_ms = head.rendered_at.timestamp_millis();
        if rendered_at_ms > now_ms + millis(FUTURE_SKEW) {
            return Err(format!(
                "frame seq {} claims to be rendered {} ms in the future: implausible, dropped",
                head.seq,
                rendered_at_ms - now_ms
            ));
        }
        let json = std::str::from_utf8(payload).map_err(|e| e.to_string())?;
        if json.contains('\n') || json.contains('\r') {
            // One SSE data line; serde_json never writes raw newlines, others might.
            return Err("frame JSON spans lines".into());
        }
        let id = if self.ids { format!("id: {}\n", head.seq) } else { String::new() };
        let sse = Bytes::from(format!("{id}event: {}\ndata: {json}\n\n", self.event));
        let mut terminals = self.lock();
        let t = terminals.entry(terminal.to_owned()).or_insert_with(Terminal::new);
        let taken = match &t.newest {
            None => Taken::First,
            Some(current) if current.seq == head.seq && current.rendered_at_ms == rendered_at_ms => {
                return Ok(Taken::Repeated);
            }
            Some(current) if supersedes(head.seq, rendered_at_ms, current) => Taken::Newer,
            Some(_) => return Ok(Taken::Older),
        };
        t.versions += 1;
        t.newest = Some(Arc::new(Relayed {
            seq: head.seq,
            version: t.versions,
            rendered_at_ms,
            sse,
            ws: Utf8Bytes::from(json),
        }));
        let due = t.pace.held_until(Instant::now(), self.min_interval);
        match due {
            Some(due) => {
                if !t.flush_scheduled {
                    t.flush_scheduled = true;
                    let (frames, terminal) = (self.clone(), terminal.to_owned());
                    // On the caller's runtime: the gateway's, for frames from its subscriber.
                    tokio::spawn(async move {
                        tokio::time::sleep_until(due).await;
                        frames.flush(&terminal);
                    });
                }
            }
            None => {
                if t.show_newest(self.min_interval) {
                    self.any.send_modify(|n| *n += 1);
                }
            }
        }
        Ok(taken)
    }

    /// Shows the newest frame held back by the rate cap.
    fn flush(&self, terminal: &str) {
        if let Some(t) = self.lock().get_mut(terminal) {
            t.flush_scheduled = false;
            if t.show_newest(self.min_interval) {
                self.any.send_modify(|n| *n += 1);
            }
        }
    }

    /// Watches `terminal`'s newest frame.
    pub fn watch(&self, terminal: &str) -> Latest {
        self.lock().entry(terminal.to_owned()).or_insert_with(Terminal::new).shown.subscribe()
    }

    /// The frame clients of `terminal` see now, if any.
    pub fn current(&self, terminal: &str) -> Option<Arc<Relayed>> {
        self.lock().get(terminal).and_then(|t| t.shown.borrow().clone())
    }

    /// Bumped whenever what any key shows changes (see [`Frames::unsent`]).
    pub fn watch_any(&self) -> watch::Receiver<u64> {
        self.any.subscribe()
    }

    /// What every key shows now that differs from what `sent` says was sent
    /// of it (by seq and render time), sorted by key; `sent` is updated.
    pub fn unsent(&self, sent: &mut HashMap<String, (u64, i64)>) -> Vec<Arc<Relayed>> {
        let terminals = self.lock();
        let mut keys: Vec<&String> = terminals.keys().collect();
        keys.sort();
        let mut news = Vec::new();
        for key in keys {
            let Some(shown) = terminals[key].shown.borrow().clone() else { continue };
            let stamp = (shown.seq, shown.rendered_at_ms);
            if sent.get(key.as_str()) != Some(&stamp) {
                sent.insert(key.clone(), stamp);
                news.push(shown);
            }
        }
        news
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Terminal>> {
        self.terminals.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether a frame (seq, rendered at) is newer than `current` (see the module docs).
fn supersedes(seq: u64, rendered_at_ms: i64, current: &Relayed) -> bool {
    let apart = rendered_at_ms - current.rendered_at_ms;
    if apart > millis(REORDER_WINDOW) {
        true
    } else if apart < -millis(REORDER_WINDOW) {
        false
    } else {
        // The same seq rendered later: a render whose stored frame was lost
        // (an asynchronous commit lost with the database) or raced another.
        seq > current.seq || (seq == current.seq && apart > 0)
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000_000;

    fn frame_at(seq: u64, rendered_at_ms: i64) -> Vec<u8> {
        let at = chrono::DateTime::from_timestamp_millis(rendered_at_ms).unwrap().to_rfc3339();
        format!(r#"{{"terminal":"T","seq":{seq},"renderedAt":"{at}","text":"L1  CARS {seq}"}}"#).into_bytes()
    }

    /// Frames a millisecond apart, seq 1 at NOW.
    fn frame(seq: u64) -> Vec<u8> {
        frame_at(seq, NOW + seq as i64)
    }

    fn shown(f: &Frames) -> Option<u64> {
        f.current("T").map(|r| r.seq)
    }

    #[tokio::test]
    async fn older_and_repeated_frames_are_dropped() {
        let f = Frames::new(Duration::ZERO);
        assert_eq!(f.accept("T", &frame(2), NOW), Ok(Taken::First));
        assert_eq!(f.accept("T", &frame(2), NOW), Ok(Taken::Repeated));
        assert_eq!(f.accept("T", &frame(1), NOW), Ok(Taken::Older));
        assert_eq!(f.accept("T", &frame(3), NOW), Ok(Taken::Newer));
        assert_eq!(shown(&f), Some(3));
        assert!(f.accept("T", b"not json", NOW).is_err());
        let sse = &f.current("T").unwrap().sse;
        assert!(sse.starts_with(b"id: 3\nevent: frame\ndata: {"), "{sse:?}");
        assert!(sse.ends_with(b"}\n\n"));
    }

    #[tokio::test]
    async fn the_same_seq_rendered_later_is_newer() {
        let f = Frames::new(Duration::ZERO);
        assert_eq!(f.accept("T", &frame_at(7, NOW), NOW), Ok(Taken::First));
        assert_eq!(f.accept("T", &frame_at(7, NOW - 3), NOW), Ok(Taken::Older));
        assert_eq!(f.accept("T", &frame_at(7, NOW + 40), NOW), Ok(Taken::Newer));
        assert_eq!(f.current("T").unwrap().rendered_at_ms, NOW + 40);
    }

    #[tokio::test]
    async fn a_forged_huge_seq_does_not_hide_later_genuine_frames() {
        let f = Frames::new(Duration::ZERO);
        f.accept("T", &frame(1), NOW).unwrap();
        // Forged: a huge seq, rendered "now".
        assert_eq!(f.accept("T", &frame_at(u64::MAX / 2, NOW + 1500), NOW), Ok(Taken::Newer));
        // Genuine frames close to it lose to it (bounded), farther ones win.
        assert_eq!(f.accept("T", &frame_at(2, NOW + 2000), NOW), Ok(Taken::Older));
        let later = NOW + 1500 + millis(REORDER_WINDOW) + 1;
        assert_eq!(f.accept("T", &frame_at(3, later), NOW), Ok(Taken::Newer));
        assert_eq!(shown(&f), Some(3));
        assert_eq!(f.accept("T", &frame_at(4, later + 100), NOW), Ok(Taken::Newer), "and on, by seq");
    }

    #[tokio::test]
    async fn a_frame_from_the_future_or_an_old_replay_with_a_high_seq_is_refused() {
        let f = Frames::new(Duration::ZERO);
        f.accept("T", &frame(5), NOW).unwrap();
        let future = NOW + millis(FUTURE_SKEW) + 1000;
        let refused = f.accept("T", &frame_at(u64::MAX / 2, future), NOW).unwrap_err();
        assert!(refused.contains("future"), "{refused}");
        let replay = NOW - millis(REORDER_WINDOW) - 1000;
        assert_eq!(f.accept("T", &frame_at(1_000_000, replay), NOW), Ok(Taken::Older));
        assert_eq!(shown(&f), Some(5));
    }

    #[tokio::test]
    async fn a_recreated_terminal_starts_over_at_seq_one() {
        let f = Frames::new(Duration::ZERO);
        f.accept("T", &frame(40), NOW).unwrap();
        let later = NOW + 40 + millis(REORDER_WINDOW) + 1;
        assert_eq!(f.accept("T", &frame_at(1, later), NOW), Ok(Taken::Newer));
        assert_eq!(shown(&f), Some(1));
    }

    #[tokio::test]
    async fn a_cleared_terminal_ends_its_watchers() {
        let f = Frames::new(Duration::ZERO);
        f.accept("T", &frame(1), NOW).unwrap();
        let mut watcher = f.watch("T");
        assert_eq!(f.accept("T", b"", NOW), Ok(Taken::Cleared));
        assert!(watcher.changed().await.is_err(), "the stream ends");
        assert_eq!(shown(&f), None);
    }

    #[tokio::test]
    async fn a_watcher_that_does_not_read_sees_only_the_newest_frame() {
        let f = Frames::new(Duration::ZERO);
        let mut watcher = f.watch("T");
        for seq in 1..=50 {
            f.accept("T", &frame(seq), NOW).unwrap();
        }
        watcher.changed().await.unwrap();
        let newest = watcher.borrow_and_update().clone().unwrap();
        assert_eq!((newest.seq, newest.version), (50, 50));
        assert!(!watcher.has_changed().unwrap(), "no backlog behind it");
    }

    fn summary(lot: &str, seq: u64) -> Vec<u8> {
        let at = chrono::DateTime::from_timestamp_millis(NOW + seq as i64).unwrap().to_rfc3339();
        format!(r#"{{"lot":"{lot}","seq":{seq},"renderedAt":"{at}","classes":{{}}}}"#).into_bytes()
    }

    #[tokio::test]
    async fn summaries_are_lot_events_without_ids() {
        let f = Frames::for_lots(Duration::ZERO);
        assert_eq!(f.accept("north", &summary("north", 7), NOW), Ok(Taken::First));
        let sse = &f.current("north").unwrap().sse;
        assert!(sse.starts_with(b"event: lot\ndata: {\"lot\":\"north\""), "{sse:?}");
        assert!(!sse.windows(3).any(|w| w == b"id:"), "one stream carries every lot: no id");
    }

    #[tokio::test]
    async fn a_stream_of_every_key_gets_each_newest_once_and_wakes_on_any_change() {
        let f = Frames::for_lots(Duration::ZERO);
        let mut any = f.watch_any();
        let mut sent = HashMap::new();
        assert!(f.unsent(&mut sent).is_empty(), "nothing yet");
        f.accept("south", &summary("south", 1), NOW).unwrap();
        f.accept("north", &summary("north", 1), NOW).unwrap();
        for seq in 2..=20 {
            f.accept("north", &summary("north", seq), NOW).unwrap();
        }
        assert!(any.has_changed().unwrap());
        any.borrow_and_update();
        let news: Vec<u64> = f.unsent(&mut sent).iter().map(|r| r.seq).collect();
        assert_eq!(news, [20, 1], "north's newest only (no backlog), then south, by lot");
        assert!(f.unsent(&mut sent).is_empty(), "sent already");
        f.accept("north", &summary("north", 19), NOW).unwrap();
        f.accept("south", &summary("south", 1), NOW).unwrap();
        assert!(!any.has_changed().unwrap(), "an older or repeated summary wakes no one");
        f.accept("south", &summary("south", 2), NOW).unwrap();
        assert!(any.has_changed().unwrap());
        let news: Vec<u64> = f.unsent(&mut sent).iter().map(|r| r.seq).collect();
        assert_eq!(news, [2]);
    }

    #[tokio::test]
    async fn the_rate_cap_holds_frames_back_and_always_shows_the_last() {
        let f = Frames::new(Duration::from_millis(300));
        f.accept("T", &frame(1), NOW).unwrap();
        assert_eq!(shown(&f), Some(1), "the first frame at once");
        for seq in 2..=5 {
            f.accept("T", &frame(seq), NOW).unwrap();
        }
        assert_eq!(shown(&f), Some(2), "one frame of slack, the rest held back");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(shown(&f), Some(5), "the trailing frame is shown");
    }

    #[tokio::test]
    async fn the_rate_cap_bounds_the_average_and_lets_a_frame_come_a_little_early() {
        // (Frame 3 comes 150 ms early, and would be held until frame 2's
        // interval is over if it came 150 ms later: a margin for slow runs.)
        let f = Frames::new(Duration::from_millis(600));
        f.accept("T", &frame(1), NOW).unwrap();
        tokio::time::sleep(Duration::from_millis(650)).await;
        f.accept("T", &frame(2), NOW).unwrap();
        assert_eq!(shown(&f), Some(2), "on schedule");
        // Renders paced at the same interval reach the gateway with jitter:
        // one a little early is shown, not held until a full interval is over.
        tokio::time::sleep(Duration::from_millis(450)).await;
        f.accept("T", &frame(3), NOW).unwrap();
        assert_eq!(shown(&f), Some(3), "a little early, after frames on schedule");
        // Frames faster than that are held: one per interval on average.
        for seq in 4..=20 {
            f.accept("T", &frame(seq), NOW).unwrap();
        }
        assert_eq!(shown(&f), Some(3), "ahead of the average: held back");
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(shown(&f), Some(20), "the trailing frame is shown");
    }
}

//! A terminal's frames written to its bare streams by a few tasks, not by a
//! task per client.
//!
//! With a task per client, every frame woke a thousand tasks for a thousand
//! clients, and each made and dropped its timers, its wait for the peer and
//! its wait for shutdown to write a few hundred bytes. Here a stream that is
//! caught up is a *member* of its terminal's fan-out: a shard task of up to
//! [`SHARD`] members watches the terminal's newest frame and writes it to each
//! member's socket with one non-blocking write (and a ping to each every
//! keep-alive); the connection's own task sleeps meanwhile, woken only by its
//! peer, by shutdown or by a hand-back. Small shards keep each pass short, so
//! the gateway's other tasks (the broker subscription among them) are not
//! held up behind one.
//!
//! A shard's passes are spaced by the number of its terminal's clients
//! ([`PASS_GAP_PER_CLIENT`]): the writes a frame costs grow with the clients,
//! so with thousands of them each gets fewer frames, each the newest, instead
//! of frames that a newer one makes stale while they wait in the socket to be
//! read. Measured with `bench-terminals` (SQLite, 10,000 clients, 100
//! readings/s, frame p99): a task per client 143-153 ms; shards of 512 with no
//! spacing 277-305; 64 with no spacing 275; 4 µs per client 214; 8 µs
//! 104-115 (240 in a run whose renders themselves lagged). With 1,000
//! clients the spacing (8 ms) is within the rate cap. Passes are spaced from
//! the start of the one before, not on average with slack as the rate cap
//! spaces frames: with thousands of clients the fan-out is what the cores
//! are short of, and a pass that started late must not make the next one
//! come sooner (10,000 clients, SQLite, 100 readings/s, two runs each,
//! added p99 87-92 ms with slack against 68-75 without).
//!
//! A member whose socket does not take a whole write (a slow client whose
//! buffers are full) is handed back to its connection's task with what is left
//! to write ([`relay`]): the task writes it when the socket allows, catches up
//! with the newest frame (the ones between are skipped, as for any slow
//! client) and joins again. A member whose write fails, or whose connection
//! ended, is dropped; a shard ends when its terminal is gone (its streams end)
//! or it has no members.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::frames::Latest;
use super::metrics::GatewayMetrics;
use super::{Client, Next, now_ms, ping_event};

/// The most members one shard task writes to; a terminal with more clients
/// has more shards, which run on the gateway's threads side by side.
pub const SHARD: usize = 64;

/// The least time between two passes of a shard, per client of its
/// terminal: with many clients each gets fewer frames, always the newest
/// (the writes a pass makes are bounded, and so is what a client is sent
/// that a newer frame makes stale before it is read).
const PASS_GAP_PER_CLIENT: Duration = Duration::from_micros(8);

/// How many members a pass writes to between two looks for a newer frame.
const NEWER_CHECK: usize = 32;

/// What a member's connection task gets back when its socket was full.
struct HandedBack {
    /// The version of the newest frame it has been given (possibly in part).
    sent: u64,
    /// What it has not written of its last write.
    rest: Bytes,
}

/// A caught-up stream, as its shard holds it.
struct Member {
    /// Its connection task holds the socket; gone with the connection.
    stream: Weak<TcpStream>,
    /// The version of the newest frame written to it.
    sent: u64,
    back: oneshot::Sender<HandedBack>,
}

/// What became of one write to a member.
enum Wrote {
    All,
    /// The socket took part or none of it: the rest, to hand back.
    Part(Bytes),
    /// The connection is gone or broken.
    Failed,
}

impl Member {
    fn write(&self, bytes: &Bytes) -> Wrote {
        let Some(stream) = self.stream.upgrade() else { return Wrote::Failed };
        match stream.try_write(bytes) {
            Ok(n) if n == bytes.len() => Wrote::All,
            Ok(n) => Wrote::Part(bytes.slice(n..)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Wrote::Part(bytes.clone()),
            Err(_) => Wrote::Failed,
        }
    }
}

struct Shard {
    id: u64,
    /// The terminal's frames as this shard watches them: a terminal deleted
    /// and created again is another channel, and other shards.
    latest: Latest,
    join: mpsc::UnboundedSender<Member>,
    /// Its members, as it last counted them (joins add one at once).
    members: Arc<AtomicUsize>,
}

/// The fan-outs of every terminal.
pub struct Fanouts {
    metrics: GatewayMetrics,
    keep_alive: Duration,
    /// The shards of each terminal; a join is sent while this is held, and a
    /// shard leaves while holding it, so no join is lost to a shard ending.
    shards: Mutex<HashMap<String, Vec<Shard>>>,
    next_id: AtomicU64,
}

impl Fanouts {
    pub fn new(metrics: GatewayMetrics, keep_alive: Duration) -> Arc<Self> {
        Arc::new(Self { metrics, keep_alive, shards: Mutex::new(HashMap::new()), next_id: AtomicU64::new(0) })
    }

    /// Makes `member`, who watches `latest`, a member of one of `terminal`'s
    /// shards watching the same, starting one (on the caller's runtime) when
    /// all are full or there is none.
    fn join(self: &Arc<Self>, terminal: &str, latest: &Latest, member: Member) {
        let mut shards = self.lock();
        let of_terminal = shards.entry(terminal.to_owned()).or_default();
        let room = of_terminal
            .iter()
            .find(|s| s.latest.same_channel(latest) && s.members.load(Ordering::Relaxed) < SHARD);
        let member = match room {
            Some(shard) => match shard.join.send(member) {
                Ok(()) => {
                    shard.members.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(mpsc::error::SendError(member)) => member,
            },
            None => member,
        };
        let (join, joined) = mpsc::unbounded_channel();
        join.send(member).expect("the receiver is here");
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let members = Arc::new(AtomicUsize::new(1));
        of_terminal.push(Shard { id, latest: latest.clone(), join, members: members.clone() });
        let task = ShardTask {
            fanouts: self.clone(),
            terminal: terminal.to_owned(),
            id,
            latest: latest.clone(),
            members: Vec::new(),
            counted: members,
        };
        tokio::spawn(task.run(joined));
    }

    /// The clients of `terminal` in its shards, as they last counted them.
    fn clients(&self, terminal: &str) -> usize {
        self.lock()
            .get(terminal)
            .map_or(0, |shards| shards.iter().map(|s| s.members.load(Ordering::Relaxed)).sum())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Shard>>> {
        self.shards.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct ShardTask {
    fanouts: Arc<Fanouts>,
    terminal: String,
    id: u64,
    latest: Latest,
    members: Vec<Member>,
    counted: Arc<AtomicUsize>,
}

impl ShardTask {
    async fn run(mut self, mut joined: mpsc::UnboundedReceiver<Member>) {
        let keep_alive = self.fanouts.keep_alive;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When the next pass may start: passes are spaced by the terminal's
        // clients, so many clients get fewer frames, each the newest.
        let mut next_pass = tokio::time::Instant::now();
        loop {
            let paced = tokio::time::Instant::now() < next_pass;
            tokio::select! {
                Some(member) = joined.recv() => self.admit(member),
                changed = self.latest.changed(), if !paced => {
                    if changed.is_err() {
                        break; // the terminal is gone: dropping the members ends their streams
                    }
                    let started = tokio::time::Instant::now();
                    self.write_newest();
                    next_pass = started + PASS_GAP_PER_CLIENT * self.fanouts.clients(&self.terminal) as u32;
                }
                _ = tokio::time::sleep_until(next_pass), if paced => {}
                _ = ping.tick() => self.write_ping(),
            }
            while let Ok(member) = joined.try_recv() {
                self.admit(member);
            }
            self.counted.store(self.members.len(), Ordering::Relaxed);
            if self.members.is_empty() && self.leave(&joined) {
                return;
            }
        }
        self.leave(&joined);
    }

    /// A new member, written the newest frame at once if it lacks it.
    fn admit(&mut self, member: Member) {
        let newest = self.latest.borrow().clone();
        match newest {
            Some(frame) if member.sent < frame.version => {
                let previous = member.sent;
                let (kept, delivered) = self.write(member, &frame.sse, frame.version);
                self.members.extend(kept);
                if delivered {
                    self.count(1, frame.version.saturating_sub(previous + 1));
                }
            }
            _ => self.members.push(member),
        }
    }

    /// Writes the newest frame to every member that lacks it. A frame that
    /// comes during the pass is written to the members after that point (a
    /// pass over many slow sockets takes a while), and another pass follows
    /// for those before it.
    fn write_newest(&mut self) {
        let Some(mut frame) = self.latest.borrow_and_update().clone() else { return };
        let (mut sent, mut skipped, mut overtaken) = (0, 0, false);
        for (i, member) in std::mem::take(&mut self.members).into_iter().enumerate() {
            if i % NEWER_CHECK == NEWER_CHECK - 1
                && self.latest.has_changed().unwrap_or(false)
                && let Some(newer) = self.latest.borrow_and_update().clone()
            {
                frame = newer;
                overtaken = true;
            }
            let previous = member.sent;
            if previous >= frame.version {
                self.members.push(member);
                continue;
            }
            let (kept, delivered) = self.write(member, &frame.sse, frame.version);
            self.members.extend(kept);
            if delivered {
                sent += 1;
                skipped += frame.version.saturating_sub(previous + 1);
            }
        }
        self.count(sent, skipped);
        if overtaken {
            // The next turn of the loop writes it to the members it missed.
            self.latest.mark_changed();
        }
    }

    /// A ping to every member, with the gateway's clock.
    fn write_ping(&mut self) {
        let ping = Bytes::from(ping_event(now_ms()));
        for member in std::mem::take(&mut self.members) {
            let sent = member.sent;
            self.members.extend(self.write(member, &ping, sent).0);
        }
    }

    /// Writes to one member: answers it while it keeps up (one whose socket
    /// did not take it all is handed back, one whose write failed dropped),
    /// and whether the bytes reach it (all written, or the rest handed back).
    fn write(&self, mut member: Member, bytes: &Bytes, version: u64) -> (Option<Member>, bool) {
        match member.write(bytes) {
            Wrote::All => {
                member.sent = version;
                (Some(member), true)
            }
            Wrote::Part(rest) => {
                let handed_back = member.back.send(HandedBack { sent: version, rest }).is_ok();
                (None, handed_back)
            }
            Wrote::Failed => (None, false),
        }
    }

    fn count(&self, sent: u64, skipped: u64) {
        if sent > 0 {
            self.fanouts.metrics.frames_sent.inc_by(sent);
        }
        if skipped > 0 {
            self.fanouts.metrics.frames_skipped.inc_by(skipped);
        }
    }

    /// Leaves the registry unless a member joined meanwhile (a shard with
    /// members leaves only when its terminal is gone).
    fn leave(&self, joined: &mpsc::UnboundedReceiver<Member>) -> bool {
        let mut shards = self.fanouts.lock();
        if !joined.is_empty() && self.latest.has_changed().is_ok() {
            return false;
        }
        if let Some(of_terminal) = shards.get_mut(&self.terminal) {
            of_terminal.retain(|s| s.id != self.id);
            if of_terminal.is_empty() {
                shards.remove(&self.terminal);
            }
        }
        true
    }
}

/// Relays `terminal`'s frames to a bare stream until its client goes or the
/// terminal is gone: what it lacks is written here, awaiting the socket;
/// once it has a frame and is caught up, it joins the terminal's fan-out
/// until handed back. Before its first frame (a terminal without one yet,
/// or a client resuming) the client waits on its own.
pub async fn relay(
    fanouts: &Arc<Fanouts>,
    terminal: &str,
    mut client: Client,
    stream: Arc<TcpStream>,
) -> io::Result<()> {
    loop {
        while let Some(frame) = client.pending() {
            write_all(&stream, &frame.sse).await?;
        }
        let Some(sent) = client.sent_version() else {
            if !write_next(&stream, client.next(fanouts.keep_alive)).await? {
                return Ok(());
            }
            continue;
        };
        let (back, mut handed_back) = oneshot::channel();
        fanouts.join(terminal, client.latest(), Member { stream: Arc::downgrade(&stream), sent, back });
        loop {
            tokio::select! {
                back = &mut handed_back => match back {
                    Ok(HandedBack { sent, rest }) => {
                        client.sent_up_to(sent);
                        write_all(&stream, &rest).await?;
                        break;
                    }
                    // Dropped: the terminal is gone or a write failed.
                    Err(_) => return Ok(()),
                },
                gone = peer_gone(&stream) => if gone { return Ok(()) },
            }
        }
    }
}

/// Writes what a client's own task waits for (`next`: a frame or a ping)
/// once it comes; `false` when the stream is over (the client went, or
/// there is nothing more to send).
pub async fn write_next(stream: &TcpStream, next: impl Future<Output = Option<Next>>) -> io::Result<bool> {
    tokio::pin!(next);
    let next = loop {
        tokio::select! {
            next = &mut next => break next,
            gone = peer_gone(stream) => if gone { return Ok(false) },
        }
    };
    match next {
        Some(next) => write_all(stream, &next.sse()).await.map(|()| true),
        None => Ok(false),
    }
}

/// Writes all of `bytes`, waiting for the socket as long as it takes.
pub async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits until the client sends something: `true` when it closed the
/// connection (what it sends otherwise is ignored).
pub async fn peer_gone(stream: &TcpStream) -> bool {
    if stream.readable().await.is_err() {
        return true;
    }
    let mut scratch = [0u8; 64];
    match stream.try_read(&mut scratch) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::super::frames::Frames;
    use super::*;

    /// A frame of `seq` padded to `size` bytes, so a few hundred fill a
    /// loopback connection's buffers.
    fn frame(seq: u64, size: usize) -> Vec<u8> {
        let at = chrono::Utc::now().to_rfc3339();
        let pad = "x".repeat(size);
        format!(r#"{{"terminal":"T","seq":{seq},"renderedAt":"{at}","text":"{pad}"}}"#).into_bytes()
    }

    /// A connected pair: the gateway's end relaying `frames`' terminal T, and the client's end.
    async fn relayed(frames: &Arc<Frames>, fanouts: &Arc<Fanouts>, metrics: &GatewayMetrics) -> TcpStream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (served, _) = listener.accept().await.unwrap();
        let watching = Client::watching(frames.watch("T"), metrics.clone(), None);
        let fanouts = fanouts.clone();
        tokio::spawn(async move { relay(&fanouts, "T", watching, Arc::new(served)).await });
        client
    }

    /// The seqs of the frames in what was read, and whether every event parsed.
    fn seqs(text: &str) -> Vec<u64> {
        text.split("\n\n")
            .filter(|event| event.contains("event: frame"))
            .map(|event| {
                let data = event.lines().find_map(|l| l.strip_prefix("data: ")).expect("a data line");
                let frame: serde_json::Value = serde_json::from_str(data).expect("whole frames, never torn");
                frame["seq"].as_u64().unwrap()
            })
            .collect()
    }

    /// Reads until the frame of `seq` arrives (or 20 s pass); answers what was read.
    async fn read_until(stream: &mut TcpStream, seq: u64) -> String {
        let mut text = Vec::new();
        let needle = format!("id: {seq}\n");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut buffer = vec![0u8; 1 << 16];
        while !String::from_utf8_lossy(&text).contains(&needle) || !text.ends_with(b"\n\n") {
            let n = tokio::time::timeout_at(deadline, stream.read(&mut buffer))
                .await
                .unwrap_or_else(|_| panic!("no frame {seq} within 20 s"))
                .unwrap();
            assert!(n > 0, "the stream ended before frame {seq}");
            text.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8(text).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_stops_reading_is_handed_back_then_skips_to_the_newest_while_others_keep_pace() {
        const FRAMES: u64 = 400;
        const SIZE: usize = 128 * 1024; // 400 of them: far more than the connection buffers
        let frames = Frames::new(Duration::ZERO);
        let metrics = GatewayMetrics::default();
        let fanouts = Fanouts::new(metrics.clone(), Duration::from_secs(60));
        frames.accept("T", &frame(1, SIZE), now_ms()).unwrap();
        let mut reading = relayed(&frames, &fanouts, &metrics).await;
        let mut stalled = relayed(&frames, &fanouts, &metrics).await;
        assert_eq!(seqs(&read_until(&mut reading, 1).await), [1]);
        assert_eq!(seqs(&read_until(&mut stalled, 1).await), [1]);
        // Both are members of the fan-out once they have the current frame;
        // from now on one reads and the other does not.
        let reader = tokio::spawn(async move { read_until(&mut reading, FRAMES).await });
        for seq in 2..=FRAMES {
            frames.accept("T", &frame(seq, SIZE), now_ms()).unwrap();
            tokio::task::yield_now().await;
        }
        let seen = seqs(&reader.await.unwrap());
        assert_eq!(
            seen.last(),
            Some(&FRAMES),
            "the reading client keeps pace, the stalled one does not hold it"
        );
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
        // The stalled client reads now: what its buffers held, then straight to the newest.
        let seen = seqs(&read_until(&mut stalled, FRAMES).await);
        assert_eq!(seen.last(), Some(&FRAMES));
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
        assert!((seen.len() as u64) < FRAMES / 2, "a backlog of {} frames of {FRAMES}", seen.len());
        assert!(
            metrics.frames_skipped.get() >= FRAMES / 2,
            "skips counted: {}",
            metrics.frames_skipped.get()
        );
        // And it is a member again: the next frame reaches it.
        frames.accept("T", &frame(FRAMES + 1, 10), now_ms()).unwrap();
        assert_eq!(seqs(&read_until(&mut stalled, FRAMES + 1).await), [FRAMES + 1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn members_get_pings_and_their_streams_end_with_their_terminal() {
        let frames = Frames::new(Duration::ZERO);
        let metrics = GatewayMetrics::default();
        let fanouts = Fanouts::new(metrics.clone(), Duration::from_millis(200));
        frames.accept("T", &frame(1, 10), now_ms()).unwrap();
        let mut clients = Vec::new();
        for _ in 0..3 {
            let mut client = relayed(&frames, &fanouts, &metrics).await;
            read_until(&mut client, 1).await;
            clients.push(client);
        }
        for client in &mut clients {
            let mut buffer = [0u8; 256];
            let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buffer))
                .await
                .unwrap()
                .unwrap();
            assert!(
                buffer[..n].starts_with(b"event: ping\ndata: "),
                "{:?}",
                String::from_utf8_lossy(&buffer[..n])
            );
        }
        assert_eq!(fanouts.lock()["T"].len(), 1, "three clients, one shard");
        assert_eq!(frames.accept("T", b"", now_ms()), Ok(super::super::frames::Taken::Cleared));
        for client in &mut clients {
            let mut rest = Vec::new();
            let ended = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest)).await;
            assert!(ended.is_ok(), "the stream of a deleted terminal ends");
        }
        assert!(fanouts.lock().get("T").is_none(), "and its shard is gone");
    }
}

//! Acknowledgements in arrival order.
//!
//! MQTT (3.1.1 and 5, section 4.6) has a client acknowledge QoS 1 messages
//! in the order they arrived, and some brokers hold it to that: the embedded
//! one (rumqttd) drops a connection that acknowledges out of order. The
//! bridge's lanes finish in any order, so a lane only reports a message as
//! done; one task keeps the messages in arrival order and acknowledges the
//! longest prefix of done ones. A message is therefore never acknowledged
//! before every message that arrived ahead of it was delivered (committed)
//! or dead-lettered: a crash can only cost a redelivery, never a reading.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::connection::{self, Client};
use crate::inbox::Inbox;

/// What acknowledges one message: a PUBACK to the broker it came from, or,
/// for a message read from the embedded broker's inbox, moving the inbox's
/// cursor past it.
pub enum Receipt {
    Broker(Box<connection::Receipt>),
    Inbox { next: u64 },
}

/// Where acknowledgements go.
enum Target {
    Broker(Client),
    Inbox(Arc<Inbox>),
}

/// Messages in arrival order, each waiting for its lane to finish it.
#[derive(Debug)]
pub struct InOrder<R> {
    /// By arrival number; `true` once done.
    waiting: BTreeMap<u64, (R, bool)>,
}

impl<R> Default for InOrder<R> {
    fn default() -> Self {
        Self { waiting: BTreeMap::new() }
    }
}

impl<R> InOrder<R> {
    pub fn arrived(&mut self, number: u64, receipt: R) {
        self.waiting.insert(number, (receipt, false));
    }

    /// Marks a message done and answers the receipts that may now be
    /// acknowledged, in arrival order (none while an older one is unfinished).
    pub fn done(&mut self, number: u64) -> Vec<R> {
        match self.waiting.get_mut(&number) {
            Some(entry) => entry.1 = true,
            // Forgotten with its connection: the broker sends it again.
            None => return Vec::new(),
        }
        let mut ready = Vec::new();
        while let Some(entry) = self.waiting.first_entry() {
            if !entry.get().1 {
                break;
            }
            ready.push(entry.remove().0);
        }
        ready
    }

    /// The connection is gone: its receipts mean nothing on the next one,
    /// where the broker redelivers what was not acknowledged.
    pub fn forget(&mut self) {
        self.waiting.clear();
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

enum Note {
    Arrived(u64, Receipt),
    Done(u64),
    ConnectionLost,
}

/// The handle lanes and the event loop report to; one task acknowledges.
#[derive(Clone)]
pub struct Acks {
    notes: mpsc::UnboundedSender<Note>,
}

impl Acks {
    /// Starts the acknowledging task for `client`'s connection.
    pub fn start(client: Client) -> (Self, tokio::task::JoinHandle<()>) {
        Self::start_for(Target::Broker(client))
    }

    /// Starts the task that commits the inbox's cursor past what is done.
    pub fn start_inbox(inbox: Arc<Inbox>) -> (Self, tokio::task::JoinHandle<()>) {
        Self::start_for(Target::Inbox(inbox))
    }

    fn start_for(target: Target) -> (Self, tokio::task::JoinHandle<()>) {
        // Unbounded: the broker's in-flight window bounds it, and the event
        // loop must never wait on the task that waits on the event loop.
        let (notes, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut order = InOrder::default();
            while let Some(note) = rx.recv().await {
                match note {
                    Note::Arrived(number, receipt) => order.arrived(number, receipt),
                    Note::ConnectionLost => order.forget(),
                    Note::Done(number) => acknowledge(&target, order.done(number)).await,
                }
            }
        });
        (Self { notes }, task)
    }

    /// Called by the event loop before the message goes to its lane.
    pub fn arrived(&self, number: u64, receipt: Receipt) {
        let _ = self.notes.send(Note::Arrived(number, receipt));
    }

    /// The message was delivered or dead-lettered.
    pub fn done(&self, number: u64) {
        let _ = self.notes.send(Note::Done(number));
    }

    pub fn connection_lost(&self) {
        let _ = self.notes.send(Note::ConnectionLost);
    }
}

/// Acknowledges a prefix of done messages, in order.
async fn acknowledge(target: &Target, ready: Vec<Receipt>) {
    match target {
        Target::Broker(client) => {
            for receipt in ready {
                let Receipt::Broker(receipt) = receipt else { continue };
                if let Err(e) = client.ack(&receipt).await {
                    tracing::warn!(error = %e, "acknowledging a message failed; the broker will redeliver it");
                }
            }
        }
        // The last of the prefix covers all of it.
        Target::Inbox(inbox) => {
            let Some(next) = ready.iter().rev().find_map(|r| match r {
                Receipt::Inbox { next } => Some(*next),
                Receipt::Broker(_) => None,
            }) else {
                return;
            };
            if let Err(e) = inbox.commit(next) {
                tracing::warn!(
                    error = %format!("{e:#}"),
                    "moving the inbox cursor failed; after a restart these messages are read again (and deduplicated)"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever order the lanes finish in, receipts come out in arrival
        /// order, each once, and all of them once all are done.
        #[test]
        fn receipts_leave_in_arrival_order(order in Just((0u64..64).collect::<Vec<_>>()).prop_shuffle()) {
            let mut acks = InOrder::default();
            for n in 0..64u64 {
                acks.arrived(n, n);
            }
            let mut acked = Vec::new();
            for (i, n) in order.iter().enumerate() {
                acked.extend(acks.done(*n));
                // Nothing past the oldest unfinished message.
                let oldest_unfinished = (0..64u64).find(|m| !order[..=i].contains(m));
                if let Some(oldest) = oldest_unfinished {
                    prop_assert!(acked.iter().all(|a| *a < oldest));
                }
            }
            prop_assert_eq!(acked, (0..64u64).collect::<Vec<_>>());
            prop_assert!(acks.is_empty());
        }
    }

    #[test]
    fn a_lost_connection_forgets_its_receipts() {
        let mut acks = InOrder::default();
        acks.arrived(1, "a");
        acks.arrived(2, "b");
        assert_eq!(acks.done(2), Vec::<&str>::new(), "1 is not done yet");
        acks.forget();
        assert_eq!(acks.done(1), Vec::<&str>::new(), "1 belongs to the lost connection");
        acks.arrived(3, "c");
        assert_eq!(acks.done(3), vec!["c"]);
        assert_eq!(acks.len(), 0);
    }
}

//! A mailbox listener's queue: the messages added to an open mailbox, on their way to one
//! of its clients.
//!
//! Why not an async-channel: a bounded one keeps its slots (64, a kilobyte) and an
//! unbounded one its cache-padded ends (768 bytes) and a block of 31 slots, for every open
//! mailbox client, idle or not, and most of them are idle. This one is a lock around a
//! queue that holds memory only while messages wait, and an event the client waits on.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use event_listener::{listener, Event};

use super::{Message, LISTENER_QUEUE};
use crate::lock::lock;

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    event: Event,
}

#[derive(Debug, Default)]
struct Queue {
    messages: VecDeque<Arc<Message>>,
    /// The sending side is gone (the mailbox dropped this listener, or was closed).
    closed: bool,
}

/// The mailbox's end: dropping it closes the queue.
#[derive(Debug)]
pub struct Tell(Arc<Shared>);

/// The client's end.
#[derive(Debug)]
pub struct Hear(Arc<Shared>);

/// A new listener's queue.
pub fn listener_queue() -> (Tell, Hear) {
    let shared = Arc::new(Shared::default());
    (Tell(shared.clone()), Hear(shared))
}

impl Tell {
    /// Queues `message`; false (and nothing queued) when [`LISTENER_QUEUE`] messages wait
    /// already, or the client is gone: the listener is then dropped.
    pub fn send(&self, message: Arc<Message>) -> bool {
        if Arc::strong_count(&self.0) == 1 {
            return false;
        }
        let mut queue = lock(&self.0.queue);
        if queue.messages.len() >= LISTENER_QUEUE {
            return false;
        }
        queue.messages.push_back(message);
        drop(queue);
        self.0.event.notify(1);
        true
    }
}

impl Drop for Tell {
    fn drop(&mut self) {
        lock(&self.0.queue).closed = true;
        self.0.event.notify(usize::MAX);
    }
}

impl Hear {
    /// The next message, if one waits.
    pub fn try_recv(&self) -> Option<Arc<Message>> {
        let mut queue = lock(&self.0.queue);
        let message = queue.messages.pop_front();
        if queue.messages.is_empty() {
            // Give the room back: the client may now be idle for hours.
            queue.messages = VecDeque::new();
        }
        message
    }

    /// The next message, once one comes; None once the queue is closed and empty.
    pub async fn recv(&self) -> Option<Arc<Message>> {
        loop {
            if let Some(message) = self.try_recv() {
                return Some(message);
            }
            if self.is_closed() {
                return None;
            }
            listener!(self.0.event => heard);
            // Sent or closed between the checks and the listener: it would not be heard.
            if !self.is_empty() || self.is_closed() {
                continue;
            }
            heard.await;
        }
    }

    /// How many messages wait.
    pub fn len(&self) -> usize {
        lock(&self.0.queue).messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the mailbox dropped this listener.
    pub fn is_closed(&self) -> bool {
        lock(&self.0.queue).closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    fn message(phase: &str) -> Arc<Message> {
        Arc::new(Message {
            side: "a".into(),
            phase: phase.into(),
            body: "00".into(),
            server_rx: 0.0,
            id: serde_json::Value::Null,
        })
    }

    #[test]
    fn a_waiting_client_hears_each_message_then_the_end() {
        let (tell, hear) = listener_queue();
        let heard = future::block_on(future::zip(hear.recv(), async {
            assert!(tell.send(message("pake")));
        }));
        assert_eq!(heard.0.unwrap().phase, "pake");
        assert!(tell.send(message("version")));
        drop(tell);
        // What was sent before the end is still heard, then the end.
        assert_eq!(future::block_on(hear.recv()).unwrap().phase, "version");
        assert!(future::block_on(hear.recv()).is_none());
        assert!(hear.is_closed());
        let (tell, hear) = listener_queue();
        drop(hear);
        assert!(!tell.send(message("pake")), "nobody hears it");
    }

    #[test]
    fn a_drained_queue_holds_no_room() {
        let (tell, hear) = listener_queue();
        for i in 0..10 {
            assert!(tell.send(message(&i.to_string())));
        }
        while hear.try_recv().is_some() {}
        assert_eq!(lock(&hear.0.queue).messages.capacity(), 0);
        assert!(
            future::block_on(future::poll_once(hear.recv())).is_none(),
            "it waits"
        );
    }
}

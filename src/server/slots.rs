//! Connection slots: `--max-conns`, `--max-per-ip`, and knowing when every connection is done.
//!
//! A [`Ticket`] is a connection's slot. It moves with the socket (into a pipe, across the
//! TLS bridge) and gives the slot back when dropped. Each ticket also holds a clone of one
//! channel's sender: once [`Slots::close`] has dropped the original, the receiver returned
//! by [`Slots::new`] closes with the last ticket, which is how shutdown knows that every
//! connection has finished (the pattern of mini-redis).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_channel::{Receiver, Sender};

use crate::lock::lock;

/// Why a client gets no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoSlot {
    /// The server is shutting down.
    Stopping,
    /// `--max-conns` clients are connected.
    Full,
    /// Its address has `--max-per-ip` connections (the number).
    TooManyFromAddress(usize),
}

impl fmt::Display for NoSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoSlot::Stopping => write!(f, "server shutting down"),
            NoSlot::Full => write!(f, "server full"),
            NoSlot::TooManyFromAddress(max) => {
                write!(f, "too many connections from your address (max {max})")
            }
        }
    }
}

#[derive(Debug)]
pub struct Slots {
    max_conns: usize,
    max_per_ip: usize,
    conns: AtomicUsize,
    /// Connections now open from each address.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Cloned into every ticket; taken away by [`Slots::close`].
    done: Mutex<Option<Sender<()>>>,
}

impl Slots {
    /// Slots for at most `max_conns` connections, `max_per_ip` from one address; and the
    /// receiver that closes once [`Slots::close`] was called and every ticket is gone.
    pub fn new(max_conns: usize, max_per_ip: usize) -> (Slots, Receiver<()>) {
        let (done, all_done) = async_channel::bounded(1);
        let slots = Slots {
            max_conns,
            max_per_ip,
            conns: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            done: Mutex::new(Some(done)),
        };
        (slots, all_done)
    }

    /// A slot for a client at `ip`, or why not.
    pub fn take(self: &Arc<Slots>, ip: IpAddr) -> Result<Ticket, NoSlot> {
        let mut ticket = self.take_outgoing()?;
        // Refused, the ticket is dropped before it counts against `ip`: it gives back the
        // global slot only, never one of the address's own.
        self.place(&mut ticket, ip)?;
        Ok(ticket)
    }

    /// A slot for a connection this server opens itself (a cluster link to another node):
    /// counted in `--max-conns`, not per address (it is counted under the unspecified
    /// address, which no client has).
    pub fn take_outgoing(self: &Arc<Slots>) -> Result<Ticket, NoSlot> {
        let done = self.count_one()?;
        Ok(Ticket {
            slots: self.clone(),
            ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            _done: done,
        })
    }

    /// Counts a ticket taken with [`Slots::take_outgoing`] (a connection whose client was
    /// not known when it was accepted: one behind a `--proxy-protocol` proxy) against `ip`
    /// from now on, if that address has room.
    pub fn place(&self, ticket: &mut Ticket, ip: IpAddr) -> Result<(), NoSlot> {
        let mut per_ip = lock(&self.per_ip);
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            return Err(NoSlot::TooManyFromAddress(self.max_per_ip));
        }
        *count += 1;
        ticket.ip = ip;
        Ok(())
    }

    /// Counts one more connection, if there is room; the sender a ticket keeps.
    fn count_one(&self) -> Result<Sender<()>, NoSlot> {
        let done = lock(&self.done).clone().ok_or(NoSlot::Stopping)?;
        let max = self.max_conns;
        self.conns
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| NoSlot::Full)?;
        Ok(done)
    }

    /// No more tickets: the `all_done` receiver closes when the last one is dropped.
    pub fn close(&self) {
        lock(&self.done).take();
    }

    /// Connections holding a slot now.
    pub fn count(&self) -> usize {
        self.conns.load(Ordering::Relaxed)
    }
}

/// Proof that a connection is counted: while it exists the connection uses a slot of
/// `--max-conns` and shutdown waits for it.
#[derive(Debug)]
pub struct Ticket {
    slots: Arc<Slots>,
    ip: IpAddr,
    _done: Sender<()>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.slots.conns.fetch_sub(1, Ordering::AcqRel);
        let mut per_ip = lock(&self.slots.per_ip);
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_given_back_and_closed() {
        let (slots, all_done) = Slots::new(2, 1);
        let slots = Arc::new(slots);
        let (a, b) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let one = slots.take(a).unwrap();
        assert_eq!(slots.take(a).unwrap_err(), NoSlot::TooManyFromAddress(1));
        let two = slots.take(b).unwrap();
        assert_eq!(slots.take(b).unwrap_err(), NoSlot::Full);
        assert_eq!(slots.count(), 2);
        drop(one);
        assert_eq!(slots.count(), 1);
        slots.close();
        assert_eq!(slots.take(a).unwrap_err(), NoSlot::Stopping);
        assert!(!all_done.is_closed());
        drop(two);
        assert!(all_done.is_closed());
    }

    #[test]
    fn an_unplaced_ticket_is_placed_once_its_address_is_known() {
        let (slots, _all_done) = Slots::new(3, 1);
        let slots = Arc::new(slots);
        let a = "192.0.2.1".parse().unwrap();
        let mut proxied = slots.take_outgoing().unwrap();
        let mut second = slots.take_outgoing().unwrap();
        slots.place(&mut proxied, a).unwrap();
        assert_eq!(slots.take(a).unwrap_err(), NoSlot::TooManyFromAddress(1));
        assert_eq!(
            slots.place(&mut second, a).unwrap_err(),
            NoSlot::TooManyFromAddress(1)
        );
        drop(proxied);
        slots.place(&mut second, a).unwrap();
        assert_eq!(slots.count(), 1);
    }
}

//! A backend's queue: requests waiting for a connection slot while every server they may
//! use is at `maxconn` (HAProxy's pending connections).
//!
//! First come, first served, per server: a slot that frees on a server goes to the oldest
//! waiting request that may use that server. A request that may use any server waits for
//! any slot; one whose server is fixed (hash key, sticky cookie, retry without redispatch)
//! waits for that server's, so a slot of another server never wakes it in place of a
//! request that could take it. A new request takes a free slot at once only when no request
//! that came before it may use that server.
//!
//! Waking is a hand-off, not a broadcast: a freed slot wakes one waiter, which takes the
//! slot or, failing (its retry excludes the server, a balancer picked otherwise), passes the
//! wake to the next waiter. A change of the servers (up, down, weight, state, reload) wakes
//! every waiter to look again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// Any server will do (no server has this id).
pub(crate) const ANY_SERVER: u64 = 0;

/// A process-wide unique id for a server's run-time state (never [`ANY_SERVER`]).
pub(crate) fn next_server_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(ANY_SERVER + 1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One waiting request.
#[derive(Debug)]
struct Waiter {
    /// The id of the server it waits for, or [`ANY_SERVER`].
    wants: AtomicU64,
    /// Set when a slot or a change was handed to it and it has not looked yet.
    woken: AtomicBool,
    /// Set when it looked after a wake and could take nothing: the free slots are not for
    /// it, so it holds up nobody behind it until its next wake.
    declined: AtomicBool,
    /// Its wake-up; a wake before it waits is kept (a `Notify` permit).
    notify: Notify,
}

impl Waiter {
    fn may_use(&self, server: u64) -> bool {
        let wants = self.wants.load(Ordering::Acquire);
        wants == ANY_SERVER || wants == server
    }

    fn wake(&self) {
        self.declined.store(false, Ordering::Release);
        self.woken.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

/// The queue of one backend, shared by its successive configurations (a reload keeps it).
#[derive(Debug, Default)]
pub(crate) struct Queue {
    waiters: Mutex<VecDeque<Arc<Waiter>>>,
    /// `waiters.len()`, read without the lock on the fast paths.
    len: AtomicUsize,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<Waiter>>> {
        // No section panics; a poisoned list is still a consistent list.
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether a request that came before `me` (every waiter when `me` is `None`, a new
    /// request) may use server `server`: then a free slot there is theirs first.
    pub fn ahead_for(&self, me: Option<&Ticket<'_>>, server: u64) -> bool {
        if self.len() == 0 {
            return false;
        }
        self.lock()
            .iter()
            .take_while(|w| me.is_none_or(|t| !Arc::ptr_eq(w, &t.waiter)))
            .any(|w| !w.declined.load(Ordering::Acquire) && w.may_use(server))
    }

    /// Enters the queue, at its end, waiting for `wants` (a server id or [`ANY_SERVER`]).
    pub fn join(&self, wants: u64) -> Ticket<'_> {
        let waiter = Arc::new(Waiter {
            wants: AtomicU64::new(wants),
            woken: AtomicBool::new(false),
            declined: AtomicBool::new(false),
            notify: Notify::new(),
        });
        let mut list = self.lock();
        list.push_back(waiter.clone());
        self.len.store(list.len(), Ordering::Release);
        Ticket {
            queue: self,
            waiter,
            served: false,
        }
    }

    /// A slot freed on server `server`: wakes the oldest waiter that may use it and was not
    /// woken already.
    pub fn slot_freed(&self, server: u64) {
        if self.len() == 0 {
            return;
        }
        if let Some(w) = self
            .lock()
            .iter()
            .find(|w| !w.woken.load(Ordering::Acquire) && w.may_use(server))
        {
            w.wake();
        }
    }

    /// The servers changed: every waiter looks again.
    pub fn wake_all(&self) {
        if self.len() == 0 {
            return;
        }
        for w in self.lock().iter() {
            w.wake();
        }
    }

    /// Hands a wake that `from` could not use to the next waiter behind it not woken yet
    /// (any: the freed server is not known here), or to the oldest when `from` left.
    fn pass_on(&self, list: &VecDeque<Arc<Waiter>>, after: Option<usize>) {
        let start = after.map_or(0, |i| i + 1);
        if let Some(w) = list
            .iter()
            .skip(start)
            .find(|w| !w.woken.load(Ordering::Acquire))
        {
            w.wake();
        }
    }
}

/// A request's place in the queue; leaving it (drop) removes it, and a wake it did not use
/// goes to the next waiter.
#[derive(Debug)]
pub(crate) struct Ticket<'q> {
    queue: &'q Queue,
    waiter: Arc<Waiter>,
    served: bool,
}

impl Ticket<'_> {
    /// Sets the server it waits for (a hash key's server moves when servers go down).
    pub fn wait_for(&self, wants: u64) {
        self.waiter.wants.store(wants, Ordering::Release);
    }

    /// Takes the pending wake, if any: whether it was woken since the last call.
    pub fn take_wake(&self) -> bool {
        self.waiter.woken.swap(false, Ordering::AcqRel)
    }

    /// Passes a wake it could not use to the next waiter behind it, and stops holding up
    /// those behind it until its next wake.
    pub fn pass_on(&self) {
        self.waiter.declined.store(true, Ordering::Release);
        let list = self.queue.lock();
        let me = list.iter().position(|w| Arc::ptr_eq(w, &self.waiter));
        self.queue.pass_on(&list, me);
    }

    /// Waits for a wake (returns at once if one came since the last wait).
    pub async fn woken(&self) {
        self.waiter.notify.notified().await;
    }

    /// It got a slot: leaving the queue passes nothing on.
    pub fn served(mut self) {
        self.served = true;
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut list = self.queue.lock();
        if let Some(i) = list.iter().position(|w| Arc::ptr_eq(w, &self.waiter)) {
            list.remove(i);
            // Woken for a slot and gone without it (timeout, client went away): the slot is
            // someone else's. The next waiter is now at index `i`.
            if !self.served && self.waiter.woken.load(Ordering::Acquire) {
                self.queue.pass_on(&list, i.checked_sub(1));
            }
        }
        self.queue.len.store(list.len(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn woken(t: &Ticket<'_>) -> bool {
        t.waiter.woken.load(Ordering::Acquire)
    }

    #[test]
    fn a_freed_slot_wakes_the_oldest_waiter_that_may_use_it() {
        let q = Queue::default();
        let (a, b) = (next_server_id(), next_server_id());
        let on_a = q.join(a);
        let on_b = q.join(b);
        let any = q.join(ANY_SERVER);
        q.slot_freed(b);
        assert!(!woken(&on_a), "a slot of b never wakes a waiter of a");
        assert!(woken(&on_b));
        assert!(!woken(&any));
        q.slot_freed(b);
        assert!(
            woken(&any),
            "the next slot of b: the next waiter that may use b"
        );
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn new_requests_queue_behind_waiters_that_may_use_their_server() {
        let q = Queue::default();
        let (a, b) = (next_server_id(), next_server_id());
        assert!(!q.ahead_for(None, a), "empty queue");
        let on_a = q.join(a);
        assert!(q.ahead_for(None, a));
        assert!(!q.ahead_for(None, b), "a waiter of a does not hold up b");
        let any = q.join(ANY_SERVER);
        assert!(q.ahead_for(None, b));
        assert!(q.ahead_for(Some(&any), a), "on_a is ahead of it");
        assert!(!q.ahead_for(Some(&any), b));
        assert!(!q.ahead_for(Some(&on_a), a), "nobody ahead of the first");
    }

    #[test]
    fn an_unused_wake_passes_to_the_next_waiter() {
        let q = Queue::default();
        let a = next_server_id();
        let first = q.join(ANY_SERVER);
        let second = q.join(ANY_SERVER);
        q.slot_freed(a);
        assert!(first.take_wake());
        assert!(
            q.ahead_for(Some(&second), a),
            "first may still take a's slot"
        );
        first.pass_on();
        assert!(woken(&second), "passed on");
        assert!(
            !q.ahead_for(Some(&second), a),
            "first declined: it does not hold up second"
        );

        // A woken waiter that leaves without its slot hands the wake on.
        let third = q.join(ANY_SERVER);
        drop(second);
        assert!(woken(&third));
        // One that was served does not.
        let fourth = q.join(ANY_SERVER);
        third.served();
        assert!(!woken(&fourth));
        drop(first);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn a_change_wakes_everyone() {
        let q = Queue::default();
        let tickets: Vec<_> = (0..3).map(|_| q.join(next_server_id())).collect();
        q.wake_all();
        assert!(tickets.iter().all(|t| t.take_wake()));
    }
}

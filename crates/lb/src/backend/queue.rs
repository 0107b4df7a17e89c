//! A backend's queue: requests waiting for a connection slot while every server they may
//! use is at `maxconn` (HAProxy's pending connections).
//!
//! First come, first served, per server, as HAProxy's queues:
//! - A slot that frees on a server is handed to the oldest waiting request that may use that
//!   server (the slot itself, taken on the waiter's behalf: nobody can take it in between).
//!   A request that may use any server waits for a slot of any server its pick may choose
//!   (of the tier in use, active or backup, not already tried, taking new requests); one
//!   whose server is fixed (hash key, sticky cookie, retry without redispatch) waits for
//!   that server's only.
//! - A new request takes a free slot at once only when no request that came before it may
//!   use that server.
//! - A change of the servers (up, down, weight, state) wakes every waiter to look again;
//!   each one that finds a slot, or finds nothing it can use, wakes the next one, so free
//!   slots are taken in arrival order and nobody waits behind a request that cannot use
//!   them.

use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::Notify;

use crate::backend::server::{ActiveRequest, ServerState};

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
    /// When it waits for any server: the ids of the servers its pick may choose now (its
    /// configuration's, of the tier in use, active or backup, and not already tried):
    /// only their slots can be handed to it.
    servers: Mutex<Vec<u64>>,
    /// Set when it was told to look again and has not looked yet.
    woken: AtomicBool,
    /// Set when it looked and nothing free was for it: it holds up nobody behind it until
    /// it is woken again.
    declined: AtomicBool,
    /// A slot handed over to it, not collected yet.
    slot: Mutex<Option<ActiveRequest>>,
    /// Its wake-up; a wake before it waits is kept (a `Notify` permit).
    notify: Notify,
}

impl Waiter {
    fn may_use(&self, server: u64) -> bool {
        let wants = self.wants.load(Ordering::Acquire);
        wants == server
            || (wants == ANY_SERVER
                && self
                    .servers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .contains(&server))
    }

    /// Whether it may be handed a slot of `server` now: it may use the server, holds no
    /// slot yet, and the server takes new requests (a fixed server: UP and not in
    /// maintenance, so a draining server still serves its sticky clients).
    fn takes(&self, server: &ServerState) -> bool {
        if !self.may_use(server.uid) || self.slot().is_some() {
            return false;
        }
        if self.wants.load(Ordering::Acquire) == ANY_SERVER {
            server.is_usable(Instant::now())
        } else {
            server.is_sticky_usable()
        }
    }

    /// Whether it may take a free slot of `server` before those behind it: exactly when it
    /// could be handed one, unless it found nothing for it since its last wake.
    fn holds_up(&self, server: &ServerState) -> bool {
        !self.declined.load(Ordering::Acquire) && self.takes(server)
    }

    fn wake(&self) {
        self.declined.store(false, Ordering::Release);
        self.woken.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    fn slot(&self) -> MutexGuard<'_, Option<ActiveRequest>> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
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

    fn set_len(&self, list: &VecDeque<Arc<Waiter>>) {
        self.len.store(list.len(), Ordering::SeqCst);
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::SeqCst)
    }

    /// Whether a request that came before `me` (every waiter when `me` is `None`, a new
    /// request) may use server `server`: then a free slot there is theirs first.
    pub fn ahead_for(&self, me: Option<&Ticket<'_>>, server: &ServerState) -> bool {
        if self.len() == 0 {
            return false;
        }
        self.lock()
            .iter()
            .take_while(|w| me.is_none_or(|t| !Arc::ptr_eq(w, &t.waiter)))
            .any(|w| w.holds_up(server))
    }

    /// Enters the queue, at its end, waiting for `wants` (a server id or [`ANY_SERVER`];
    /// then among `servers`, ids).
    pub fn join(&self, wants: u64, servers: Vec<u64>) -> Ticket<'_> {
        let waiter = Arc::new(Waiter {
            wants: AtomicU64::new(wants),
            servers: Mutex::new(servers),
            woken: AtomicBool::new(false),
            declined: AtomicBool::new(false),
            slot: Mutex::new(None),
            notify: Notify::new(),
        });
        let mut list = self.lock();
        list.push_back(waiter.clone());
        self.set_len(&list);
        drop(list);
        // Pairs with the fence in `slot_freed`: either the releaser sees this waiter, or
        // this waiter's next try sees the freed slot.
        fence(Ordering::SeqCst);
        Ticket {
            queue: self,
            waiter,
            looked_again: false,
        }
    }

    /// A slot was just freed on `server`: takes it again on behalf of the oldest waiter
    /// that may be handed it, if any, and hands it over.
    pub fn slot_freed(&self, server: &Arc<ServerState>) {
        fence(Ordering::SeqCst);
        if self.len() == 0 {
            return;
        }
        let list = self.lock();
        let Some(w) = list.iter().find(|w| w.takes(server)) else {
            return;
        };
        // Fails only when someone else took the slot meanwhile: then it was not free.
        if let Some(slot) = server.try_acquire() {
            *w.slot() = Some(slot);
            w.notify.notify_one();
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

    /// Wakes the first waiter behind index `from` (the front when `None`) not woken yet.
    fn wake_next(list: &VecDeque<Arc<Waiter>>, from: Option<usize>) {
        let start = from.map_or(0, |i| i + 1);
        if let Some(w) = list
            .iter()
            .skip(start)
            .find(|w| !w.woken.load(Ordering::Acquire))
        {
            w.wake();
        }
    }
}

/// A request's place in the queue; leaving it (drop) removes it and returns a slot that was
/// handed over but not collected.
#[derive(Debug)]
pub(crate) struct Ticket<'q> {
    queue: &'q Queue,
    waiter: Arc<Waiter>,
    /// Its latest look was on a wake (a change, or the one ahead left or declined): if it
    /// leaves after it, it tells the next one.
    looked_again: bool,
}

impl Ticket<'_> {
    /// Sets the server it waits for (a hash key's server moves when servers go down), or
    /// with [`ANY_SERVER`] the servers it may be handed a slot of.
    pub fn wait_for(&self, wants: u64, servers: impl FnOnce() -> Vec<u64>) {
        if wants == ANY_SERVER {
            *self
                .waiter
                .servers
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = servers();
        }
        self.waiter.wants.store(wants, Ordering::Release);
    }

    /// It leaves with a slot handed over to it: nothing for those behind it to look at.
    pub fn handed(&mut self) {
        self.looked_again = false;
    }

    /// A slot handed over to it, if any.
    pub fn take_slot(&self) -> Option<ActiveRequest> {
        self.waiter.slot().take()
    }

    /// Takes the pending wake, if any: whether it was told to look again since the last
    /// call.
    pub fn take_wake(&mut self) -> bool {
        let woken = self.waiter.woken.swap(false, Ordering::AcqRel);
        self.looked_again = woken;
        woken
    }

    /// It looked and nothing free is for it: it stops holding up those behind it, and the
    /// next one looks.
    pub fn decline(&self) {
        self.waiter.declined.store(true, Ordering::Release);
        let list = self.queue.lock();
        let me = list.iter().position(|w| Arc::ptr_eq(w, &self.waiter));
        Queue::wake_next(&list, me);
    }

    /// Waits for a wake or a slot (returns at once if one came since the last wait).
    pub async fn woken(&self) {
        self.waiter.notify.notified().await;
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut list = self.queue.lock();
        if let Some(i) = list.iter().position(|w| Arc::ptr_eq(w, &self.waiter)) {
            list.remove(i);
            self.queue.set_len(&list);
        }
        // Told to look again (or woken and gone before looking): those behind it may now
        // take what it held up.
        if self.looked_again || self.waiter.woken.load(Ordering::Acquire) {
            Queue::wake_next(&list, None);
        }
        drop(list);
        // A slot handed over but not collected (timeout, client gone): released, so it goes
        // to the next waiter.
        drop(self.take_slot());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webfarm_config::Server;

    fn woken(t: &Ticket<'_>) -> bool {
        t.waiter.woken.load(Ordering::Acquire)
    }

    fn server(queue: &Arc<Queue>, maxconn: u32) -> Arc<ServerState> {
        let config = Server {
            name: "s".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            weight: 1,
            backup: false,
            maxconn,
            slowstart: None,
            disabled: false,
            node: false,
        };
        Arc::new(ServerState::new("b", &config, queue.clone()))
    }

    #[test]
    fn a_freed_slot_is_handed_to_the_oldest_waiter_that_may_use_it() {
        let q = Arc::new(Queue::default());
        let (a, b) = (server(&q, 1), server(&q, 1));
        let (held_a, held_b) = (a.try_acquire().unwrap(), b.try_acquire().unwrap());
        let ids = vec![a.uid, b.uid];
        let on_a = q.join(a.uid, ids.clone());
        let on_b = q.join(b.uid, ids.clone());
        let any = q.join(ANY_SERVER, ids);
        drop(held_b);
        assert!(
            on_a.take_slot().is_none(),
            "a slot of b never goes to a waiter of a"
        );
        let slot = on_b.take_slot().expect("handed to the waiter of b");
        assert!(Arc::ptr_eq(slot.server(), &b));
        assert_eq!(b.current_conns(), 1, "still taken: handed over, not freed");
        drop(on_b); // served: it leaves the queue
        drop(slot);
        assert!(
            any.take_slot().is_some(),
            "the next slot of b: the next that may use b"
        );
        drop(held_a);
        assert!(on_a.take_slot().is_some());
        assert_eq!(q.len(), 2, "each leaves when its ticket goes");
        drop((on_a, any));
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn new_requests_queue_behind_waiters_that_may_use_their_server() {
        let q = Arc::new(Queue::default());
        let (a, b) = (server(&q, 1), server(&q, 1));
        let ids = vec![a.uid, b.uid];
        assert!(!q.ahead_for(None, &a), "empty queue");
        let on_a = q.join(a.uid, ids.clone());
        assert!(q.ahead_for(None, &a));
        assert!(!q.ahead_for(None, &b), "a waiter of a does not hold up b");
        let any = q.join(ANY_SERVER, ids);
        assert!(q.ahead_for(None, &b));
        assert!(q.ahead_for(Some(&any), &a), "on_a is ahead of it");
        assert!(!q.ahead_for(Some(&any), &b));
        assert!(!q.ahead_for(Some(&on_a), &a), "nobody ahead of the first");
        b.set_admin(crate::backend::server::AdminState::Drain);
        assert!(
            !q.ahead_for(None, &b),
            "a waiter for any server does not hold up a draining one (sticky requests use it)"
        );
    }

    #[test]
    fn a_waiter_that_declines_holds_up_nobody_and_wakes_the_next() {
        let q = Arc::new(Queue::default());
        let a = server(&q, 1);
        let first = q.join(ANY_SERVER, vec![a.uid]);
        let second = q.join(ANY_SERVER, vec![a.uid]);
        assert!(q.ahead_for(Some(&second), &a));
        first.decline();
        assert!(woken(&second), "the next one looks");
        assert!(!q.ahead_for(Some(&second), &a), "first holds up nobody now");
        q.wake_all();
        assert!(
            q.ahead_for(Some(&second), &a),
            "woken again, first counts again"
        );
    }

    #[test]
    fn leaving_wakes_the_next_and_returns_an_uncollected_slot() {
        let q = Arc::new(Queue::default());
        let a = server(&q, 1);
        let held = a.try_acquire().unwrap();
        let first = q.join(a.uid, vec![a.uid]);
        let second = q.join(a.uid, vec![a.uid]);
        drop(held);
        assert_eq!(a.current_conns(), 1, "handed to first");
        drop(first);
        assert!(
            second.take_slot().is_some(),
            "first left without collecting: the slot went on to second"
        );
        let mut third = q.join(ANY_SERVER, vec![a.uid]);
        let mut second = second;
        q.wake_all();
        assert!(second.take_wake());
        assert!(third.take_wake());
        drop(second);
        assert!(
            woken(&third),
            "a waiter told to look again wakes the next one as it leaves"
        );
    }

    #[test]
    fn a_change_wakes_everyone() {
        let q = Queue::default();
        let mut tickets: Vec<_> = (0..3)
            .map(|_| {
                let id = next_server_id();
                q.join(id, vec![id])
            })
            .collect();
        q.wake_all();
        assert!(tickets.iter_mut().all(|t| t.take_wake()));
    }
}

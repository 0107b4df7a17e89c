//! A frontend's stick table (HAProxy's `stick-table type ip`): one entry of counters per
//! client address, bounded in entries (`size`) and in time (`expire`).
//!
//! Sharded by address so that threads rarely meet on a lock: each shard is a hash map
//! into a slab of entries threaded on a doubly linked list in least-recently-used order.
//! Entries are held inline in the slab, not allocated one by one: a table filled by
//! 100,000 addresses is a few large blocks, which leave the allocator's small-block lists
//! as they were (one allocation per entry, interleaved with the connections' buffers,
//! fragmented the heap and slowed every later request). A lookup promotes its entry; a new
//! address in a full shard evicts the least recently used entry that no connection tracks
//! (moving tracked ones it meets to the recent end), as HAProxy does; an entry unused for
//! `expire` is dropped when met (by a lookup, an insertion or [`StickTable::purge`]).
//!
//! An entry is reached through its [`EntryAt`] (shard, slot, address), under its shard's
//! lock. An entry a connection or request tracks (`conn_cur` > 0) is never dropped or
//! moved, so a tracking's position stays valid while it lives; each use checks the
//! address all the same: a position whose slot now holds another address reads as absent
//! (one whose slot holds a new entry of the same address reads that entry).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use webfarm_config::acl::{Counter, StickTableSpec};

use super::rate::Window;

/// Most shards; a table has one per 1,024 entries, a power of two up to this.
const MAX_SHARDS: usize = 64;
/// How many least recently used entries an insertion looks at for expired ones.
const EXPIRE_SCAN: usize = 16;
/// A tracking that lasted this long (milliseconds) promotes its entry again when it ends.
pub(crate) const PROMOTE_AFTER_MS: u64 = 1000;
/// Marks the end of a shard's list.
const NIL: usize = usize::MAX;

/// Where an entry is: its shard, its slot, and the address it counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryAt {
    shard: usize,
    slot: usize,
    key: IpAddr,
}

impl EntryAt {
    /// The address it counts for.
    pub fn key(&self) -> IpAddr {
        self.key
    }
}

/// The counters of one address.
#[derive(Debug)]
struct Entry {
    key: IpAddr,
    /// Connections and requests tracking the entry now (`conn_cur`).
    conn_cur: u32,
    /// When it was last used, milliseconds on the table's clock.
    last_seen: u64,
    http_req: Window,
    conn: Window,
    http_req_cnt: u64,
    conn_cnt: u64,
}

impl Entry {
    fn new(key: IpAddr, now: u64) -> Entry {
        Entry {
            key,
            conn_cur: 0,
            last_seen: now,
            http_req: Window::default(),
            conn: Window::default(),
            http_req_cnt: 0,
            conn_cnt: 0,
        }
    }

    /// The value of `counter` at `now` (rates over the table's periods).
    fn read(&self, counter: Counter, spec: &StickTableSpec, now: u64) -> u64 {
        match counter {
            Counter::ConnCur => u64::from(self.conn_cur),
            Counter::HttpReqRate => spec
                .http_req_rate
                .map_or(0, |p| self.http_req.read(now, period_ms(p))),
            Counter::ConnRate => spec
                .conn_rate
                .map_or(0, |p| self.conn.read(now, period_ms(p))),
            Counter::HttpReqCnt => self.http_req_cnt,
            Counter::ConnCnt => self.conn_cnt,
        }
    }
}

fn period_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The clock of every table: one process-wide epoch, so that an entry's times mean the
/// same on any table (a reload may read an entry of the table it replaced).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A table of entries by client address.
#[derive(Debug)]
pub struct StickTable {
    spec: StickTableSpec,
    expire_ms: u64,
    /// Entries per shard at most.
    cap: usize,
    shards: Box<[Mutex<Shard>]>,
    /// Trackings refused because a shard was full of entries in use.
    refused: AtomicU64,
    /// Tests move the clock forward instead of sleeping.
    #[cfg(test)]
    skew: AtomicU64,
}

#[derive(Debug)]
struct Slot {
    /// `None` while the slot is free (in the free heap).
    entry: Option<Entry>,
    prev: usize,
    next: usize,
}

/// One shard: the map, the slab, the list (head: most recently used).
#[derive(Debug)]
struct Shard {
    map: HashMap<IpAddr, usize>,
    slots: Vec<Slot>,
    /// Free slots, lowest first: entries gather at the slab's start, so that a purge can
    /// give the free end back.
    free: BinaryHeap<Reverse<usize>>,
    /// Most entries (the table's `size` over its shards): the slab never grows past it.
    cap: usize,
    head: usize,
    tail: usize,
}

impl StickTable {
    /// An empty table as `spec` says.
    pub fn new(spec: StickTableSpec) -> StickTable {
        let wanted = (spec.size / 1024).max(1);
        let shards = wanted.next_power_of_two().min(MAX_SHARDS);
        let cap = spec.size.div_ceil(shards).max(1);
        StickTable {
            expire_ms: period_ms(spec.expire),
            spec,
            cap,
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::new(),
                        slots: Vec::new(),
                        free: BinaryHeap::new(),
                        cap,
                        head: NIL,
                        tail: NIL,
                    })
                })
                .collect(),
            refused: AtomicU64::new(0),
            #[cfg(test)]
            skew: AtomicU64::new(0),
        }
    }

    /// Moves the table's clock `ms` forward.
    #[cfg(test)]
    pub(crate) fn advance(&self, ms: u64) {
        self.skew.fetch_add(ms, Ordering::Relaxed);
    }

    /// Its settings.
    pub fn spec(&self) -> &StickTableSpec {
        &self.spec
    }

    /// Milliseconds on the tables' clock (since the process-wide epoch).
    pub fn now(&self) -> u64 {
        let now = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX);
        #[cfg(test)]
        let now = now + self.skew.load(Ordering::Relaxed);
        now
    }

    /// The shard of `ip` (canonical: IPv4-mapped IPv6 as IPv4), by Fibonacci hashing: the
    /// top bits of the product depend on every bit of the address, so neighbouring
    /// addresses spread over the shards.
    fn shard_of(&self, ip: IpAddr) -> usize {
        let bits = match ip {
            IpAddr::V4(a) => u64::from(a.to_bits()),
            IpAddr::V6(a) => {
                let b = a.to_bits();
                (b as u64) ^ ((b >> 64) as u64)
            }
        };
        let h = bits.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let k = self.shards.len().trailing_zeros();
        if k == 0 {
            0
        } else {
            usize::try_from(h >> (64 - k)).unwrap_or(0)
        }
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `e` can be dropped at `now`: nothing tracks it, and it was unused for
    /// `expire`.
    fn expired(&self, e: &Entry, now: u64) -> bool {
        e.conn_cur == 0 && now.saturating_sub(e.last_seen) >= self.expire_ms
    }

    /// The entry of `ip`, made if missing (evicting the least recently used unused entry
    /// of a full shard) and marked as the most recently used; `None` when the shard is
    /// full of entries in use, as HAProxy's tracking fails then. Not held: nothing keeps
    /// the entry from being evicted later (see `hold`).
    pub fn track(&self, ip: IpAddr) -> Option<EntryAt> {
        self.find_or_make(ip, self.now(), false)
    }

    /// As [`StickTable::track`], and counted in `conn_cur` (under the same lock, so it
    /// cannot be evicted in between) until `release`.
    pub(crate) fn hold(&self, ip: IpAddr, now: u64) -> Option<EntryAt> {
        self.find_or_make(ip, now, true)
    }

    fn find_or_make(&self, ip: IpAddr, now: u64, hold: bool) -> Option<EntryAt> {
        let key = ip.to_canonical();
        let shard = self.shard_of(key);
        let mut s = self.lock(shard);
        let slot = match s.map.get(&key) {
            Some(&i) => {
                if self.expired(s.entry(i), now) {
                    // Expired: a new entry, counting from zero.
                    s.slots[i].entry = Some(Entry::new(key, now));
                }
                s.promote(i);
                i
            }
            None => {
                s.purge_tail(|e| self.expired(e, now), EXPIRE_SCAN);
                if s.map.len() >= self.cap && !s.evict_lru() {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                s.insert(Entry::new(key, now))
            }
        };
        let e = s.entry_mut(slot);
        e.last_seen = now;
        if hold {
            e.conn_cur += 1;
        }
        Some(EntryAt { shard, slot, key })
    }

    /// Runs `f` on the entry at `at`, if it is still there.
    fn with<T>(&self, at: EntryAt, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let mut s = self.lock(at.shard);
        let e = s.slots.get_mut(at.slot)?.entry.as_mut()?;
        (e.key == at.key).then(|| f(e))
    }

    /// The entry of `ip` if there is one and it has not expired, without making or
    /// promoting it.
    pub fn peek(&self, ip: IpAddr) -> Option<EntryAt> {
        let key = ip.to_canonical();
        let shard = self.shard_of(key);
        let now = self.now();
        let s = self.lock(shard);
        let slot = *s.map.get(&key)?;
        (!self.expired(s.entry(slot), now)).then_some(EntryAt { shard, slot, key })
    }

    /// `counter` of the entry at `at` at `now` (rates over this table's periods); 0 when
    /// the entry is gone.
    pub fn read(&self, at: EntryAt, counter: Counter, now: u64) -> u64 {
        self.with(at, |e| e.read(counter, &self.spec, now))
            .unwrap_or(0)
    }

    /// `counter` of `ip`'s entry (the `src_*` fetches): 0 without an entry, or with an
    /// expired one.
    pub fn read_src(&self, ip: IpAddr, counter: Counter) -> u64 {
        let key = ip.to_canonical();
        let now = self.now();
        let s = self.lock(self.shard_of(key));
        s.map
            .get(&key)
            .map(|&i| s.entry(i))
            .filter(|e| !self.expired(e, now))
            .map_or(0, |e| e.read(counter, &self.spec, now))
    }

    /// Counts one HTTP request at `now` (`http_req_cnt`, `http_req_rate`).
    pub(crate) fn count_request(&self, at: EntryAt, now: u64) {
        let period = self.spec.http_req_rate.map(period_ms);
        self.with(at, |e| {
            e.last_seen = now;
            e.http_req_cnt += 1;
            if let Some(p) = period {
                e.http_req.hit(now, p);
            }
        });
    }

    /// Counts one tracked connection at `now` (`conn_cnt`, `conn_rate`).
    pub(crate) fn count_connection(&self, at: EntryAt, now: u64) {
        let period = self.spec.conn_rate.map(period_ms);
        self.with(at, |e| {
            e.last_seen = now;
            e.conn_cnt += 1;
            if let Some(p) = period {
                e.conn.hit(now, p);
            }
        });
    }

    /// Takes back a connection counted at `at_ms` (refused by `maxconn` after its rules).
    pub(crate) fn uncount_connection(&self, at: EntryAt, at_ms: u64) {
        let period = self.spec.conn_rate.map(period_ms);
        self.with(at, |e| {
            e.conn_cnt = e.conn_cnt.saturating_sub(1);
            if let Some(p) = period {
                e.conn.unhit(at_ms, p);
            }
        });
    }

    /// A tracking that began at `since` (milliseconds on the table's clock) ended: one
    /// less in `conn_cur`, and the entry used now. Its place in the LRU order is
    /// refreshed only when the tracking lasted [`PROMOTE_AFTER_MS`] or more: a shorter
    /// one was promoted when it began.
    pub(crate) fn release(&self, at: EntryAt, since: u64) {
        let now = self.now();
        let mut s = self.lock(at.shard);
        let Some(e) = s.slots.get_mut(at.slot).and_then(|x| x.entry.as_mut()) else {
            return;
        };
        if e.key != at.key {
            return;
        }
        e.conn_cur = e.conn_cur.saturating_sub(1);
        e.last_seen = now;
        if now.saturating_sub(since) >= PROMOTE_AFTER_MS {
            s.promote(at.slot);
        }
    }

    /// Drops every expired entry (run periodically, so that memory goes back after a
    /// burst of addresses).
    pub fn purge(&self) {
        let now = self.now();
        for shard in self.shards.iter() {
            let mut s = shard.lock().unwrap_or_else(PoisonError::into_inner);
            s.purge_tail(|e| self.expired(e, now), usize::MAX);
            s.compact();
        }
    }

    /// Entries held now (HAProxy's `haproxy_sticktable_used`).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }

    /// Trackings refused so far because the address's shard was full of entries in use
    /// (`webfarm_sticktable_track_refused_total`).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Slots and map capacity, over all shards (tests check memory comes back).
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(a, b), s| {
            let s = s.lock().unwrap_or_else(PoisonError::into_inner);
            (a + s.slots.capacity(), b + s.map.capacity())
        })
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most entries it holds (`size`, rounded up to a multiple of the shard count).
    pub fn capacity(&self) -> usize {
        self.cap * self.shards.len()
    }
}

impl Shard {
    /// The entry of slot `i`, one on the list (never a free slot).
    fn entry(&self, i: usize) -> &Entry {
        self.slots[i]
            .entry
            .as_ref()
            .expect("a slot on the list holds an entry")
    }

    fn entry_mut(&mut self, i: usize) -> &mut Entry {
        self.slots[i]
            .entry
            .as_mut()
            .expect("a slot on the list holds an entry")
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.slots[i].prev, self.slots[i].next);
        match prev {
            NIL => self.head = next,
            p => self.slots[p].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n].prev = prev,
        }
    }

    fn push_front(&mut self, i: usize) {
        self.slots[i].prev = NIL;
        self.slots[i].next = self.head;
        match self.head {
            NIL => self.tail = i,
            h => self.slots[h].prev = i,
        }
        self.head = i;
    }

    fn promote(&mut self, i: usize) {
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
    }

    /// Puts `entry` in a free slot (or a new one) at the recent end; returns the slot.
    fn insert(&mut self, entry: Entry) -> usize {
        let key = entry.key;
        let slot = Slot {
            entry: Some(entry),
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(Reverse(i)) => {
                self.slots[i] = slot;
                i
            }
            None => {
                if self.slots.len() == self.slots.capacity() {
                    // Doubling, but never past the shard's share of `size`.
                    let len = self.slots.len();
                    let room = self.cap.saturating_sub(len).max(1);
                    self.slots.reserve_exact(len.max(4).min(room));
                }
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        self.map.insert(key, i);
        self.push_front(i);
        i
    }

    fn remove(&mut self, i: usize) {
        self.unlink(i);
        if let Some(e) = self.slots[i].entry.take() {
            self.map.remove(&e.key);
        }
        self.free.push(Reverse(i));
    }

    /// Gives memory back after a purge: the free slots at the slab's end go, and a map
    /// or slab used to a quarter or less shrinks (slots in use never move: a tracking's
    /// position stays valid).
    fn compact(&mut self) {
        while self.slots.last().is_some_and(|s| s.entry.is_none()) {
            self.slots.pop();
        }
        let len = self.slots.len();
        self.free.retain(|&Reverse(i)| i < len);
        if self.slots.capacity() > 64 && len < self.slots.capacity() / 4 {
            self.slots.shrink_to(len * 2);
            self.free.shrink_to_fit();
        }
        if self.map.capacity() > 64 && self.map.len() < self.map.capacity() / 4 {
            self.map.shrink_to(self.map.len() * 2);
        }
    }

    /// Removes expired entries from the least recently used end, at most `limit`.
    fn purge_tail(&mut self, expired: impl Fn(&Entry) -> bool, limit: usize) {
        let mut i = self.tail;
        let mut seen = 0;
        while i != NIL && seen < limit {
            let prev = self.slots[i].prev;
            if expired(self.entry(i)) {
                self.remove(i);
            } else if self.entry(i).conn_cur == 0 {
                // The oldest unused entry is not expired: nothing before it is.
                break;
            }
            seen += 1;
            i = prev;
        }
    }

    /// Evicts the least recently used entry that nothing tracks; an entry in use met on
    /// the way is moved to the recent end (as HAProxy re-queues a referenced entry), so
    /// long-lived trackings never pile up at the cold end. `false` only when every entry
    /// of the shard is in use.
    fn evict_lru(&mut self) -> bool {
        for _ in 0..self.map.len() {
            let i = self.tail;
            if i == NIL {
                return false;
            }
            if self.entry(i).conn_cur == 0 {
                self.remove(i);
                return true;
            }
            self.promote(i);
        }
        false
    }
}

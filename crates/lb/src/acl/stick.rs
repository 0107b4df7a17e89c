//! A frontend's stick table (HAProxy's `stick-table type ip`): one entry of counters per
//! client address, bounded in entries (`size`) and in time (`expire`).
//!
//! Sharded by address so that threads rarely meet on a lock: each shard is a hash map
//! into a slab of entries threaded on a doubly linked list in least-recently-used order.
//! A lookup promotes its entry; a new address in a full shard evicts the least recently
//! used entry that no connection tracks (moving tracked ones it meets to the recent end),
//! as HAProxy does; an entry unused for `expire` is dropped when met (by a lookup, an insertion or [`StickTable::purge`]). An entry's
//! counters are behind its own small mutex, so counting a request never holds a shard.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
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

/// The counters of one address.
#[derive(Debug)]
pub struct Entry {
    key: IpAddr,
    /// Connections and requests tracking the entry now (`conn_cur`).
    conn_cur: AtomicU32,
    /// When it was last used, milliseconds on the table's clock.
    last_seen: AtomicU64,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    http_req: Window,
    conn: Window,
    http_req_cnt: u64,
    conn_cnt: u64,
}

impl Entry {
    fn new(key: IpAddr, now: u64) -> Entry {
        Entry {
            key,
            conn_cur: AtomicU32::new(0),
            last_seen: AtomicU64::new(now),
            counts: Mutex::default(),
        }
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The address it counts for.
    pub fn key(&self) -> IpAddr {
        self.key
    }

    /// One more connection (or request) tracks it (`conn_cur`).
    pub(crate) fn enter(&self) {
        self.conn_cur.fetch_add(1, Ordering::Relaxed);
    }

    /// One less tracks it.
    pub(crate) fn leave(&self) {
        self.conn_cur.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts one HTTP request at `now` (`http_req_cnt`, `http_req_rate`).
    pub(crate) fn count_request(&self, spec: &StickTableSpec, now: u64) {
        self.last_seen.store(now, Ordering::Relaxed);
        let mut c = self.counts();
        c.http_req_cnt += 1;
        if let Some(p) = spec.http_req_rate {
            c.http_req.hit(now, period_ms(p));
        }
    }

    /// Counts one tracked connection at `now` (`conn_cnt`, `conn_rate`).
    pub(crate) fn count_connection(&self, spec: &StickTableSpec, now: u64) {
        self.last_seen.store(now, Ordering::Relaxed);
        let mut c = self.counts();
        c.conn_cnt += 1;
        if let Some(p) = spec.conn_rate {
            c.conn.hit(now, period_ms(p));
        }
    }

    /// Takes back a connection counted at `at` (refused by `maxconn` after its rules).
    pub(crate) fn uncount_connection(&self, spec: &StickTableSpec, at: u64) {
        let mut c = self.counts();
        c.conn_cnt = c.conn_cnt.saturating_sub(1);
        if let Some(p) = spec.conn_rate {
            c.conn.unhit(at, period_ms(p));
        }
    }

    /// The value of `counter` at `now` (rates over the table's periods).
    pub fn read(&self, counter: Counter, spec: &StickTableSpec, now: u64) -> u64 {
        if counter == Counter::ConnCur {
            return u64::from(self.conn_cur.load(Ordering::Relaxed));
        }
        let c = self.counts();
        match counter {
            Counter::HttpReqRate => spec
                .http_req_rate
                .map_or(0, |p| c.http_req.read(now, period_ms(p))),
            Counter::ConnRate => spec.conn_rate.map_or(0, |p| c.conn.read(now, period_ms(p))),
            Counter::HttpReqCnt => c.http_req_cnt,
            Counter::ConnCnt => c.conn_cnt,
            Counter::ConnCur => unreachable!("read above"),
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
    /// `None` while the slot is free (on the free list): a removed entry's memory goes
    /// back at once.
    entry: Option<Arc<Entry>>,
    prev: usize,
    next: usize,
}

/// One shard: the map, the slab, the list (head: most recently used).
#[derive(Debug)]
struct Shard {
    map: HashMap<IpAddr, usize>,
    slots: Vec<Slot>,
    free: Vec<usize>,
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
                        free: Vec::new(),
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

    fn shard(&self, ip: IpAddr) -> MutexGuard<'_, Shard> {
        // Fibonacci hashing: the top bits of the product depend on every bit of the
        // address, so neighbouring addresses spread over the shards.
        let bits = match ip {
            IpAddr::V4(a) => u64::from(a.to_bits()),
            IpAddr::V6(a) => {
                let b = a.to_bits();
                (b as u64) ^ ((b >> 64) as u64)
            }
        };
        let h = bits.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let k = self.shards.len().trailing_zeros();
        let i = if k == 0 {
            0
        } else {
            usize::try_from(h >> (64 - k)).unwrap_or(0)
        };
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `e` can be dropped at `now`: nothing tracks or holds it, and it was unused
    /// for `expire`.
    fn expired(&self, e: &Arc<Entry>, now: u64) -> bool {
        Arc::strong_count(e) == 1
            && now.saturating_sub(e.last_seen.load(Ordering::Relaxed)) >= self.expire_ms
    }

    /// The entry of `ip`, made if missing (evicting the least recently used unused entry
    /// of a full shard) and marked as the most recently used; `None` when the shard is
    /// full of entries in use, as HAProxy's tracking fails then.
    pub fn track(&self, ip: IpAddr) -> Option<Arc<Entry>> {
        let ip = ip.to_canonical();
        let now = self.now();
        let mut s = self.shard(ip);
        if let Some(&i) = s.map.get(&ip) {
            if self.expired(s.entry(i), now) {
                // Expired: a new entry, counting from zero.
                s.slots[i].entry = Some(Arc::new(Entry::new(ip, now)));
            }
            s.promote(i);
            let e = s.entry(i).clone();
            e.last_seen.store(now, Ordering::Relaxed);
            return Some(e);
        }
        s.purge_tail(|e| self.expired(e, now), EXPIRE_SCAN);
        if s.map.len() >= self.cap && !s.evict_lru() {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let e = Arc::new(Entry::new(ip, now));
        s.insert(ip, e.clone());
        Some(e)
    }

    /// The entry of `ip` if there is one, without making or promoting it (the `src_*`
    /// fetches).
    pub fn peek(&self, ip: IpAddr) -> Option<Arc<Entry>> {
        let ip = ip.to_canonical();
        let now = self.now();
        let s = self.shard(ip);
        let e = s.entry(*s.map.get(&ip)?);
        (!self.expired(e, now)).then(|| e.clone())
    }

    /// Marks `entry` used now: a connection or request that tracked it since `since`
    /// (milliseconds on the table's clock) ended. Its place in the LRU order is refreshed
    /// only when the tracking lasted [`PROMOTE_AFTER_MS`] or more: a shorter one was
    /// promoted when it began, and skipping the shard's lock then keeps a request's
    /// tracking to one lock.
    pub(crate) fn touch(&self, entry: &Entry, since: u64) {
        let now = self.now();
        entry.last_seen.store(now, Ordering::Relaxed);
        if now.saturating_sub(since) < PROMOTE_AFTER_MS {
            return;
        }
        let mut s = self.shard(entry.key);
        if let Some(&i) = s.map.get(&entry.key) {
            if std::ptr::eq(Arc::as_ptr(s.entry(i)), entry) {
                s.promote(i);
            }
        }
    }

    /// Drops every expired entry (run periodically, so that memory goes back after a
    /// burst of addresses).
    pub fn purge(&self) {
        let now = self.now();
        for shard in self.shards.iter() {
            let mut s = shard.lock().unwrap_or_else(PoisonError::into_inner);
            s.purge_tail(|e| self.expired(e, now), usize::MAX);
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

    /// Entries allocated and map capacity, over all shards (tests check memory comes
    /// back).
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(a, b), s| {
            let (x, y) = s.lock().unwrap_or_else(PoisonError::into_inner).held();
            (a + x, b + y)
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
    fn entry(&self, i: usize) -> &Arc<Entry> {
        self.slots[i]
            .entry
            .as_ref()
            .expect("a slot on the list holds an entry")
    }

    /// Entries allocated and map capacity (tests check memory comes back).
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let entries = self.slots.iter().filter(|s| s.entry.is_some()).count();
        (entries, self.map.capacity())
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

    fn insert(&mut self, ip: IpAddr, entry: Arc<Entry>) {
        let slot = Slot {
            entry: Some(entry),
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        self.map.insert(ip, i);
        self.push_front(i);
    }

    fn remove(&mut self, i: usize) {
        self.unlink(i);
        let key = self.slots[i].entry.take().map(|e| e.key);
        if let Some(key) = key {
            self.map.remove(&key);
        }
        self.free.push(i);
        // A shard mostly emptied (by a purge after a burst of addresses) gives its map's
        // memory back; the slab keeps its slots (three words each) for reuse.
        if self.map.capacity() > 64 && self.map.len() < self.map.capacity() / 4 {
            self.map.shrink_to(self.map.len() * 2);
        }
    }

    /// Removes expired entries from the least recently used end, at most `limit`.
    fn purge_tail(&mut self, expired: impl Fn(&Arc<Entry>) -> bool, limit: usize) {
        let mut i = self.tail;
        let mut seen = 0;
        while i != NIL && seen < limit {
            let prev = self.slots[i].prev;
            if expired(self.entry(i)) {
                self.remove(i);
            } else if Arc::strong_count(self.entry(i)) == 1 {
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
            if Arc::strong_count(self.entry(i)) == 1 {
                self.remove(i);
                return true;
            }
            self.promote(i);
        }
        false
    }
}

//! HAProxy's frequency counter (`freq_ctr`): events over a sliding period, from two fixed
//! windows. The current window counts its events; the previous one's count is weighted by
//! how much of it the sliding period still covers:
//!
//! ```text
//! rate(now) = curr + prev × (period − (now − start)) / period
//! ```
//!
//! where `start` is when the current window began. Two counters and a time per rate,
//! readable at any moment (an ACL compares the value), which a GCRA limiter such as
//! `governor` does not offer: it answers only "allowed or not".

/// One rate over `period` milliseconds, in windows of that length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Window {
    /// When the current window began, milliseconds on the table's clock.
    start: u64,
    /// Events in the current window.
    curr: u32,
    /// Events in the previous window.
    prev: u32,
}

impl Window {
    /// Moves the windows forward to `now`: past one period the current becomes the
    /// previous; past two, both are empty. `start` stays a multiple of `period` after the
    /// first event, so windows are aligned as HAProxy's are.
    fn rotate(&mut self, now: u64, period: u64) {
        let elapsed = now.saturating_sub(self.start);
        if elapsed < period {
            return;
        }
        if elapsed < 2 * period {
            self.prev = self.curr;
            self.start += period;
        } else {
            self.prev = 0;
            self.start = now - elapsed % period;
        }
        self.curr = 0;
    }

    /// Counts one event at `now`.
    pub fn hit(&mut self, now: u64, period: u64) {
        if self.curr == 0 && self.prev == 0 {
            // A fresh (or long idle) counter: its window starts now.
            self.start = now;
        } else {
            self.rotate(now, period);
        }
        self.curr = self.curr.saturating_add(1);
    }

    /// Takes back one event counted at `at` (from the window that holds it now, if any).
    pub fn unhit(&mut self, at: u64, period: u64) {
        if at >= self.start {
            self.curr = self.curr.saturating_sub(1);
        } else if at >= self.start.saturating_sub(period) {
            self.prev = self.prev.saturating_sub(1);
        }
    }

    /// The events over the last `period` at `now` (rounded down).
    pub fn read(&self, now: u64, period: u64) -> u64 {
        let mut w = *self;
        w.rotate(now, period);
        let elapsed = now.saturating_sub(w.start).min(period);
        let weighted = u64::from(w.prev) * (period - elapsed) / period.max(1);
        u64::from(w.curr) + weighted
    }
}

#[cfg(test)]
mod tests {
    use super::Window;

    #[test]
    fn counts_within_one_period() {
        let mut w = Window::default();
        for t in [1000, 1001, 1500, 1999] {
            w.hit(t, 1000);
        }
        assert_eq!(w.read(1999, 1000), 4);
    }

    #[test]
    fn the_previous_window_fades_linearly() {
        let mut w = Window::default();
        for _ in 0..100 {
            w.hit(0, 1000);
        }
        // Window [0, 1000) holds 100; at 1000 it is the previous window, fully counted.
        assert_eq!(w.read(1000, 1000), 100);
        assert_eq!(w.read(1250, 1000), 75);
        assert_eq!(w.read(1500, 1000), 50);
        assert_eq!(w.read(1999, 1000), 0);
        // Two periods later nothing is left.
        assert_eq!(w.read(2000, 1000), 0);
        assert_eq!(w.read(50_000, 1000), 0);
        // New events in the current window add to the fading previous one.
        w.hit(1500, 1000);
        w.hit(1600, 1000);
        assert_eq!(w.read(1600, 1000), 2 + 40);
    }

    #[test]
    fn a_steady_rate_reads_as_itself() {
        // 10 events a second for 5 seconds, read over 1 s: about 10 whenever it is read.
        let mut w = Window::default();
        for i in 0..50u64 {
            w.hit(i * 100, 1000);
            if i >= 10 {
                let r = w.read(i * 100, 1000);
                assert!((9..=11).contains(&r), "at {}: {r}", i * 100);
            }
        }
    }

    #[test]
    fn windows_stay_aligned_after_a_gap() {
        let mut w = Window::default();
        w.hit(0, 1000);
        w.hit(5300, 1000);
        // The current window began at 5000 (aligned), so at 6000 it is the previous one.
        assert_eq!(w.read(5999, 1000), 1);
        assert_eq!(w.read(6500, 1000), 0);
        w.hit(6500, 1000);
        assert_eq!(w.read(6500, 1000), 1);
    }

    #[test]
    fn saturates_instead_of_wrapping() {
        let mut w = Window {
            start: 0,
            curr: u32::MAX,
            prev: 0,
        };
        w.hit(1, 1000);
        assert_eq!(w.read(1, 1000), u64::from(u32::MAX));
    }
}

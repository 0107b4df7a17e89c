//! The charts' data: for each series, one point per scrape over the last `[monitor]
//! history` (15 minutes by default), oldest dropped first. Series are named by path:
//! `rps/<lb>/<backend>/<server>`, `rps/web/<node>`, `lag/<db node>`, `p99/<lb>/<backend>`
//! (milliseconds).

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::view::View;

/// Points of every series, each `(at_ms, value)`.
#[derive(Debug, Serialize)]
pub struct History {
    /// Most points kept per series.
    #[serde(skip)]
    capacity: usize,
    /// The series by name.
    pub series: BTreeMap<String, VecDeque<(u64, f64)>>,
}

impl History {
    /// Keeps `capacity` points per series (the history's length over the scrape interval).
    pub fn new(capacity: usize) -> History {
        History {
            capacity: capacity.max(1),
            series: BTreeMap::new(),
        }
    }

    /// Adds the points of `view`.
    pub fn record(&mut self, view: &View) {
        for (name, value) in points(view) {
            let s = self.series.entry(name).or_default();
            if s.len() == self.capacity {
                s.pop_front();
            }
            s.push_back((view.at_ms, value));
        }
    }
}

/// The value of every series in `view`.
pub fn points(view: &View) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for lb in &view.lbs {
        for b in &lb.backends {
            for s in &b.servers {
                out.push((format!("rps/{}/{}/{}", lb.name, b.name, s.name), s.rps));
            }
        }
    }
    for w in &view.webs {
        if let Some(rps) = w.rps {
            out.push((format!("rps/web/{}", w.name), rps));
        }
    }
    for d in &view.db.nodes {
        if let Some(lag) = d.lag {
            out.push((format!("lag/{}", d.name), lag as f64));
        }
    }
    for lb in &view.lbs {
        for b in &lb.backends {
            if let Some(p99) = b.stats.p99 {
                out.push((format!("p99/{}/{}", lb.name, b.name), p99 * 1000.0));
            }
        }
    }
    out
}

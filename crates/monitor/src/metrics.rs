//! What the monitor reads from the nodes' `/metrics` (parsed by prometheus-parse): the
//! error share and latency percentiles between two scrapes, computed as Prometheus's
//! `rate()` ratios and `histogram_quantile(q, rate(..._bucket[...]))` would over that window,
//! and the data directory's free share.

use std::collections::BTreeMap;

use prometheus_parse::Value;

/// One series: its name and labels (sorted).
type Key = (String, BTreeMap<String, String>);

/// A node's samples at one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    values: BTreeMap<Key, f64>,
    /// Histograms: `le` upper bounds with their cumulative counts, ascending.
    histograms: BTreeMap<Key, Vec<(f64, f64)>>,
}

impl Samples {
    /// Parses a Prometheus text exposition.
    ///
    /// # Errors
    ///
    /// Text the parser refuses, in words.
    pub fn parse(text: &str) -> Result<Samples, String> {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).map_err(|e| e.to_string())?;
        let mut out = Samples::default();
        for s in scrape.samples {
            let labels: BTreeMap<String, String> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let key = (s.metric, labels);
            match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                    out.values.insert(key, v);
                }
                Value::Histogram(buckets) => {
                    let mut b: Vec<(f64, f64)> =
                        buckets.iter().map(|c| (c.less_than, c.count)).collect();
                    b.sort_by(|x, y| x.0.total_cmp(&y.0));
                    out.histograms.insert(key, b);
                }
                Value::Summary(_) => {}
            }
        }
        Ok(out)
    }

    /// The sum of the series named `name` whose labels include every pair of `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for ((n, labels), v) in &self.values {
            if n == name && matches(labels, filter) {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }

    /// The buckets of the histograms named `name` matching `filter`, added together.
    fn buckets(&self, name: &str, filter: &[(&str, &str)]) -> Option<Vec<(f64, f64)>> {
        let mut out: Option<Vec<(f64, f64)>> = None;
        for ((n, labels), b) in &self.histograms {
            if n != name || !matches(labels, filter) {
                continue;
            }
            match out.as_mut() {
                None => out = Some(b.clone()),
                Some(acc) if acc.len() == b.len() => {
                    for (a, x) in acc.iter_mut().zip(b) {
                        a.1 += x.1;
                    }
                }
                Some(_) => {}
            }
        }
        out
    }
}

fn matches(labels: &BTreeMap<String, String>, filter: &[(&str, &str)]) -> bool {
    filter
        .iter()
        .all(|(k, v)| labels.get(*k).is_some_and(|x| x == v))
}

/// Two scrapes of one node, the window between them.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    /// The earlier scrape.
    pub before: &'a Samples,
    /// The later one.
    pub now: &'a Samples,
}

impl Window<'_> {
    /// The increase of the counters `name` matching `filter` (0 after a counter reset).
    pub fn increase(&self, name: &str, filter: &[(&str, &str)]) -> Option<f64> {
        let now = self.now.sum(name, filter)?;
        let before = self.before.sum(name, filter).unwrap_or(0.0);
        Some(if now >= before { now - before } else { now })
    }

    /// The share of `part` among `whole` over the window (`None` when nothing happened).
    pub fn share(&self, name: &str, whole: &[(&str, &str)], part: &[(&str, &str)]) -> Option<f64> {
        let all = self.increase(name, whole)?;
        let mut both: Vec<(&str, &str)> = whole.to_vec();
        both.extend_from_slice(part);
        let some = self.increase(name, &both).unwrap_or(0.0);
        (all > 0.0).then(|| some / all)
    }

    /// The `q` quantile (0..1) of the observations of histograms `name` matching `filter`
    /// made during the window, interpolated linearly inside the bucket as Prometheus's
    /// `histogram_quantile` does; `None` without observations. For several quantiles of one
    /// histogram, take [`Window::buckets`] once and call [`quantile`] on it.
    pub fn quantile(&self, q: f64, name: &str, filter: &[(&str, &str)]) -> Option<f64> {
        quantile(q, &self.buckets(name, filter)?)
    }

    /// The cumulative `(le, count)` buckets of histograms `name` matching `filter`, counting
    /// only the observations made during the window (all of them after a counter reset).
    pub fn buckets(&self, name: &str, filter: &[(&str, &str)]) -> Option<Vec<(f64, f64)>> {
        let now = self.now.buckets(name, filter)?;
        let before = self.before.buckets(name, filter);
        let counts: Vec<(f64, f64)> = match before.filter(|b| b.len() == now.len()) {
            Some(b) if now.iter().zip(&b).all(|(n, o)| n.1 >= o.1) => {
                now.iter().zip(&b).map(|(n, o)| (n.0, n.1 - o.1)).collect()
            }
            _ => now,
        };
        Some(counts)
    }
}

/// `histogram_quantile` over cumulative `(le, count)` buckets, the last one `+Inf`.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                // Above the highest finite bound: that bound is all that is known.
                return Some(lower.0);
            }
            let in_bucket = count - lower.1;
            let fraction = if in_bucket > 0.0 {
                (rank - lower.1) / in_bucket
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * fraction);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

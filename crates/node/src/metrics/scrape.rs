//! [`Scrape`]: one scrape's writer, a thin layer over prometheus-client's encoder so that a
//! role writes each metric family in one call, from values it reads at scrape time.

use std::fmt;

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, NoLabelSet,
};
use prometheus_client::metrics::MetricType;

use super::Histogram;

/// One scrape being written (Prometheus text format 0.0.4, through prometheus-client).
///
/// Names are given as exposed: a counter's name ends in `_total` (the encoder adds the
/// suffix, so it is taken off first), a histogram's in its unit (`_seconds`). A family with
/// no series is left out (no `# HELP` line without a sample).
pub struct Scrape<'a>(DescriptorEncoder<'a>);

impl fmt::Debug for Scrape<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scrape")
    }
}

impl<'a> Scrape<'a> {
    /// Writes through `encoder` (a collector's).
    pub fn new(encoder: DescriptorEncoder<'a>) -> Scrape<'a> {
        Scrape(encoder)
    }

    /// One counter without labels.
    ///
    /// # Errors
    /// The writer's.
    pub fn counter(&mut self, name: &str, help: &str, v: impl EncodeCounterValue) -> fmt::Result {
        let name = name.strip_suffix("_total").unwrap_or(name);
        self.0
            .encode_descriptor(name, help, None, MetricType::Counter)?
            .encode_counter::<NoLabelSet, _, u64>(&v, None)
    }

    /// One gauge without labels.
    ///
    /// # Errors
    /// The writer's.
    pub fn gauge(&mut self, name: &str, help: &str, v: impl EncodeGaugeValue) -> fmt::Result {
        self.0
            .encode_descriptor(name, help, None, MetricType::Gauge)?
            .encode_gauge(&v)
    }

    /// One histogram without labels, read now.
    ///
    /// # Errors
    /// The writer's.
    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) -> fmt::Result {
        let s = h.snapshot();
        self.0
            .encode_descriptor(name, help, None, MetricType::Histogram)?
            .encode_histogram::<NoLabelSet>(s.sum, s.count, &s.buckets, None)
    }

    /// A counter family: one series per `(labels, value)`.
    ///
    /// # Errors
    /// The writer's.
    pub fn counters<L, V>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result
    where
        L: EncodeLabelSet,
        V: EncodeCounterValue,
    {
        let mut series = series.into_iter().peekable();
        if series.peek().is_none() {
            return Ok(());
        }
        let name = name.strip_suffix("_total").unwrap_or(name);
        let mut family = self
            .0
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, v) in series {
            family
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
        }
        Ok(())
    }

    /// A gauge family: one series per `(labels, value)`.
    ///
    /// # Errors
    /// The writer's.
    pub fn gauges<L, V>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result
    where
        L: EncodeLabelSet,
        V: EncodeGaugeValue,
    {
        let mut series = series.into_iter().peekable();
        if series.peek().is_none() {
            return Ok(());
        }
        let mut family = self
            .0
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, v) in series {
            family.encode_family(&labels)?.encode_gauge(&v)?;
        }
        Ok(())
    }

    /// A histogram family: one series per `(labels, histogram)`, read now.
    ///
    /// # Errors
    /// The writer's.
    pub fn histograms<'h, L>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (L, &'h Histogram)>,
    ) -> fmt::Result
    where
        L: EncodeLabelSet,
    {
        let mut series = series.into_iter().peekable();
        if series.peek().is_none() {
            return Ok(());
        }
        let mut family = self
            .0
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (labels, h) in series {
            let s = h.snapshot();
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(s.sum, s.count, &s.buckets, None)?;
        }
        Ok(())
    }

    /// An info metric: `<name>` (ending in `_info`) with `labels` and the value 1.
    ///
    /// # Errors
    /// The writer's.
    pub fn info(&mut self, name: &str, help: &str, labels: &impl EncodeLabelSet) -> fmt::Result {
        let name = name.strip_suffix("_info").unwrap_or(name);
        self.0
            .encode_descriptor(name, help, None, MetricType::Info)?
            .encode_info(labels)
    }
}

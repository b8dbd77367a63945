//! A small log-linear latency histogram: exact below 32 ns, then 16 buckets per power of two
//! (at most about 3% relative error), so that a worker can report every request it made in a
//! few hundred bytes and the parent can merge workers exactly.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Values below this are their own bucket.
const LINEAR: u64 = 32;
/// Sub-buckets per power of two above [`LINEAR`].
const SUB_BITS: u32 = 4;
/// Larger values are recorded as this (about 36 years).
const MAX_NANOS: u64 = 1 << 60;

/// Counts of durations, in nanoseconds, by bucket. Serialized as `[[bucket, count], ...]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    #[serde(with = "pairs")]
    buckets: BTreeMap<u32, u64>,
}

impl Histogram {
    /// Records one duration.
    pub fn record(&mut self, value: Duration) {
        // Clamped far beyond any latency, so that bucket bounds never overflow.
        let nanos = u64::try_from(value.as_nanos()).map_or(MAX_NANOS, |n| n.min(MAX_NANOS));
        *self.buckets.entry(bucket_of(nanos)).or_default() += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (bucket, count) in &other.buckets {
            *self.buckets.entry(*bucket).or_default() += count;
        }
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.buckets.values().sum()
    }

    /// The `q`-quantile (0 ≤ q ≤ 1), as the middle of its bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (bucket, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return Some(Duration::from_nanos(middle_of(*bucket)));
            }
        }
        None
    }

    /// The largest value recorded (bucket middle); `None` when empty.
    pub fn max(&self) -> Option<Duration> {
        let (bucket, _) = self.buckets.last_key_value()?;
        Some(Duration::from_nanos(middle_of(*bucket)))
    }
}

fn bucket_of(nanos: u64) -> u32 {
    if nanos < LINEAR {
        return nanos as u32;
    }
    let exponent = 63 - nanos.leading_zeros(); // at least 5
    let mantissa = (nanos >> (exponent - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    LINEAR as u32 + (exponent - 5) * (1 << SUB_BITS) + mantissa as u32
}

fn lower_bound(bucket: u32) -> u64 {
    if u64::from(bucket) < LINEAR {
        return u64::from(bucket);
    }
    let offset = bucket - LINEAR as u32;
    let exponent = offset / (1 << SUB_BITS) + 5;
    let mantissa = u64::from(offset % (1 << SUB_BITS));
    ((1 << SUB_BITS) + mantissa) << (exponent - SUB_BITS)
}

fn middle_of(bucket: u32) -> u64 {
    let low = lower_bound(bucket);
    let high = lower_bound(bucket + 1);
    low + (high - low) / 2
}

mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        buckets: &BTreeMap<u32, u64>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(buckets.iter().map(|(b, c)| [u64::from(*b), *c]))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<u32, u64>, D::Error> {
        let pairs = Vec::<(u32, u64)>::deserialize(deserializer)?;
        let mut buckets = BTreeMap::new();
        for (bucket, count) in pairs {
            *buckets.entry(bucket).or_default() += count;
        }
        Ok(buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_close() {
        for nanos in (0..5_000u64).chain([1 << 20, 123_456_789, MAX_NANOS]) {
            let bucket = bucket_of(nanos);
            assert!(lower_bound(bucket) <= nanos, "{nanos}");
            assert!(nanos < lower_bound(bucket + 1), "{nanos}");
            let error = middle_of(bucket).abs_diff(nanos) as f64 / nanos.max(1) as f64;
            assert!(error <= 0.04, "{nanos}: {error}");
        }
    }

    #[test]
    fn quantiles_merge_and_round_trip() {
        let mut a = Histogram::default();
        for micros in 1..=99 {
            a.record(Duration::from_micros(micros));
        }
        let mut b = Histogram::default();
        b.record(Duration::from_millis(10));
        a.merge(&b);
        let text = serde_json::to_string(&a).unwrap();
        let back: Histogram = serde_json::from_str(&text).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.count(), 100);
        let p50 = back.quantile(0.5).unwrap().as_nanos() as f64;
        assert!((p50 / 50_000.0 - 1.0).abs() < 0.04, "{p50}");
        let p100 = back.max().unwrap().as_nanos() as f64;
        assert!((p100 / 10_000_000.0 - 1.0).abs() < 0.04, "{p100}");
        assert_eq!(Histogram::default().quantile(0.5), None);
    }
}

//! The two lock-free building blocks of the registry: `Family`, a set of labelled counter
//! series found by their label values without allocating or locking once a series exists, and
//! `Histogram`, fixed buckets of atomics. Creating a series (the first time a label
//! combination is seen) takes a mutex and copies the lookup table; that is rare by design.

use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The label value a series gets when its real value would exceed a cardinality bound.
pub const OTHER: &str = "other";

/// One labelled series: its label values (after folding) and `V` counters.
#[derive(Debug)]
pub struct Series<const N: usize, const V: usize> {
    pub labels: [Arc<str>; N],
    pub values: [AtomicU64; V],
}

/// A raw label combination (as the caller passed it) pointing at its series. Several raw
/// combinations can share one series when folding maps them to the same labels.
#[derive(Debug)]
struct RawEntry<const N: usize, const V: usize> {
    raw: [Box<str>; N],
    series: Arc<Series<N, V>>,
}

#[derive(Debug)]
struct Table<const N: usize, const V: usize> {
    /// Raw combinations by hash; collisions share the vector.
    by_raw: HashMap<u64, Vec<Arc<RawEntry<N, V>>>, BuildHasherDefault<PassThroughHasher>>,
    /// Every distinct series, for rendering.
    series: Vec<Arc<Series<N, V>>>,
}

impl<const N: usize, const V: usize> Clone for Table<N, V> {
    fn clone(&self) -> Self {
        Self {
            by_raw: self.by_raw.clone(),
            series: self.series.clone(),
        }
    }
}

/// Labelled counters with `N` labels and `V` values per series. Reads load an `ArcSwap`
/// (no lock) and compare strings; writes of new combinations copy the table under a mutex.
#[derive(Debug)]
pub struct Family<const N: usize, const V: usize> {
    table: ArcSwap<Table<N, V>>,
    insert: Mutex<()>,
    /// Distinct series kept before new combinations fold into all-`other` labels.
    max_series: usize,
}

/// A fast, unkeyed hasher for label values (the multiply-rotate scheme of rustc's FxHash,
/// eight bytes at a time). Unkeyed is safe here: the tables it indexes only grow with label
/// values that are already bounded (authenticated tenants, configured models and providers,
/// rule ids), so nobody can flood a table with chosen collisions. SipHash cost a third of the
/// request's recording time.
#[derive(Debug, Default, Clone, Copy)]
pub struct LabelHasher {
    hash: u64,
}

const SEED: u64 = 0xf135_7aea_2e62_a9c5;

impl LabelHasher {
    fn mix(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(26) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for LabelHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        let mut tail = [0u8; 8];
        tail[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(tail) ^ ((rest.len() as u64) << 56));
    }

    fn write_u8(&mut self, byte: u8) {
        self.mix(u64::from(byte));
    }

    fn write_u64(&mut self, value: u64) {
        self.mix(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.mix(value as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// `HashMap` hasher for label-keyed tables.
pub type BuildLabelHasher = BuildHasherDefault<LabelHasher>;

/// The keys of `Table::by_raw` are already hashes: use them as they are.
#[derive(Debug, Default, Clone, Copy)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 << 8) | u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn hash_labels<const N: usize>(labels: &[&str; N]) -> u64 {
    let mut hasher = LabelHasher::default();
    for label in labels {
        // The length separates `("ab", "c")` from `("a", "bc")`.
        hasher.write(label.as_bytes());
        hasher.write_usize(label.len());
    }
    hasher.finish()
}

impl<const N: usize, const V: usize> Family<N, V> {
    pub fn new(max_series: usize) -> Self {
        Self {
            table: ArcSwap::from_pointee(Table {
                by_raw: HashMap::default(),
                series: Vec::new(),
            }),
            insert: Mutex::new(()),
            max_series: max_series.max(1),
        }
    }

    /// Adds `values` to the series of `raw`. On first sight of `raw`, `fold` turns it into the
    /// labels to expose (e.g. a tenant beyond the label budget becomes `other`).
    pub fn add(
        &self,
        raw: [&str; N],
        values: [u64; V],
        fold: impl FnOnce(&[&str; N]) -> [Arc<str>; N],
    ) {
        let hash = hash_labels(&raw);
        {
            let table = self.table.load();
            if let Some(entry) = find(&table, hash, &raw) {
                add_values(&entry.series, values);
                return;
            }
        }
        let series = self.insert_slow(hash, raw, fold);
        add_values(&series, values);
    }

    #[cold]
    fn insert_slow(
        &self,
        hash: u64,
        raw: [&str; N],
        fold: impl FnOnce(&[&str; N]) -> [Arc<str>; N],
    ) -> Arc<Series<N, V>> {
        // A poisoned lock only means another insert panicked; the table itself is intact.
        let _guard = self
            .insert
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.table.load_full();
        if let Some(entry) = find(&current, hash, &raw) {
            return Arc::clone(&entry.series);
        }
        let mut labels = fold(&raw);
        let mut table = Table::clone(&current);
        let existing = |labels: &[Arc<str>; N], table: &Table<N, V>| {
            table
                .series
                .iter()
                .find(|series| series.labels == *labels)
                .cloned()
        };
        let series = match existing(&labels, &table) {
            Some(series) => series,
            None => {
                if table.series.len() >= self.max_series {
                    labels = std::array::from_fn(|_| Arc::from(OTHER));
                }
                match existing(&labels, &table) {
                    Some(series) => series,
                    None => {
                        let series = Arc::new(Series {
                            labels,
                            values: std::array::from_fn(|_| AtomicU64::new(0)),
                        });
                        table.series.push(Arc::clone(&series));
                        series
                    }
                }
            }
        };
        table
            .by_raw
            .entry(hash)
            .or_default()
            .push(Arc::new(RawEntry {
                raw: raw.map(Box::from),
                series: Arc::clone(&series),
            }));
        self.table.store(Arc::new(table));
        series
    }

    /// Every series, for rendering (a snapshot; counters keep moving).
    pub fn series(&self) -> Vec<Arc<Series<N, V>>> {
        self.table.load().series.clone()
    }
}

fn find<'t, const N: usize, const V: usize>(
    table: &'t Table<N, V>,
    hash: u64,
    raw: &[&str; N],
) -> Option<&'t Arc<RawEntry<N, V>>> {
    table.by_raw.get(&hash)?.iter().find(|entry| {
        entry
            .raw
            .iter()
            .zip(raw.iter())
            .all(|(stored, given)| stored.as_ref() == *given)
    })
}

fn add_values<const N: usize, const V: usize>(series: &Series<N, V>, values: [u64; V]) {
    for (counter, value) in series.values.iter().zip(values) {
        if value != 0 {
            counter.fetch_add(value, Ordering::Relaxed);
        }
    }
}

/// Histogram bucket upper bounds: from 25 µs (the gateway's own overhead is measured in tens
/// of microseconds) to 10 s (a slow upstream). `(le label, bound in nanoseconds)`.
pub const BUCKETS: [(&str, u64); 20] = [
    ("0.000025", 25_000),
    ("0.00005", 50_000),
    ("0.000075", 75_000),
    ("0.0001", 100_000),
    ("0.00015", 150_000),
    ("0.00025", 250_000),
    ("0.0005", 500_000),
    ("0.001", 1_000_000),
    ("0.0025", 2_500_000),
    ("0.005", 5_000_000),
    ("0.01", 10_000_000),
    ("0.025", 25_000_000),
    ("0.05", 50_000_000),
    ("0.1", 100_000_000),
    ("0.25", 250_000_000),
    ("0.5", 500_000_000),
    ("1", 1_000_000_000),
    ("2.5", 2_500_000_000),
    ("5", 5_000_000_000),
    ("10", 10_000_000_000),
];

/// A duration histogram over [`BUCKETS`]: one atomic per bucket (not cumulative; summed when
/// rendered) and the sum in nanoseconds, so an observation is two relaxed additions.
#[derive(Debug)]
pub struct Histogram {
    /// `BUCKETS.len()` finite buckets, then `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

/// A histogram's state at one moment: cumulative bucket counts, count and sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Cumulative counts, one per entry of [`BUCKETS`].
    pub cumulative: [u64; BUCKETS.len()],
    pub count: u64,
    pub sum_nanos: u64,
}

impl Histogram {
    pub fn observe(&self, value: Duration) {
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        let index = BUCKETS.partition_point(|(_, bound)| *bound < nanos);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0u64; BUCKETS.len()];
        let mut running = 0u64;
        for (slot, bucket) in cumulative.iter_mut().zip(&self.buckets) {
            running += bucket.load(Ordering::Relaxed);
            *slot = running;
        }
        let count = running + self.buckets[BUCKETS.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            cumulative,
            count,
            sum_nanos: self.sum_nanos.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity<const N: usize>(raw: &[&str; N]) -> [Arc<str>; N] {
        raw.map(Arc::from)
    }

    #[test]
    fn bucket_bounds_are_increasing_and_match_their_labels() {
        for pair in BUCKETS.windows(2) {
            assert!(pair[0].1 < pair[1].1);
        }
        for (label, nanos) in BUCKETS {
            let seconds: f64 = label.parse().unwrap_or_else(|err| panic!("{label}: {err}"));
            assert_eq!((seconds * 1e9).round() as u64, nanos, "{label}");
        }
    }

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_holds_them() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(25)); // exactly on a bound: le is inclusive
        histogram.observe(Duration::from_micros(26));
        histogram.observe(Duration::from_secs(60)); // only +Inf
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.cumulative[0], 1);
        assert_eq!(snapshot.cumulative[1], 2);
        assert_eq!(snapshot.cumulative[BUCKETS.len() - 1], 2);
        assert_eq!(snapshot.count, 3);
        assert_eq!(snapshot.sum_nanos, 25_000 + 26_000 + 60_000_000_000);
    }

    #[test]
    fn one_series_per_label_combination_and_a_bound_on_series() {
        let family: Family<2, 1> = Family::new(2);
        family.add(["a", "x"], [1], identity);
        family.add(["a", "x"], [2], identity);
        family.add(["b", "x"], [1], identity);
        // The third distinct combination exceeds the bound and folds into `other`.
        family.add(["c", "x"], [5], identity);
        family.add(["d", "y"], [1], identity);
        let mut seen: Vec<(String, String, u64)> = family
            .series()
            .iter()
            .map(|series| {
                (
                    series.labels[0].to_string(),
                    series.labels[1].to_string(),
                    series.values[0].load(Ordering::Relaxed),
                )
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("a".into(), "x".into(), 3),
                ("b".into(), "x".into(), 1),
                ("other".into(), "other".into(), 6),
            ]
        );
    }

    #[test]
    fn raw_combinations_folded_to_the_same_labels_share_a_series() {
        let family: Family<1, 2> = Family::new(100);
        let fold = |raw: &[&str; 1]| {
            [Arc::from(if raw[0].starts_with('t') {
                raw[0]
            } else {
                OTHER
            })]
        };
        family.add(["t1"], [1, 10], fold);
        family.add(["u1"], [1, 20], fold);
        family.add(["u2"], [1, 30], fold);
        let series = family.series();
        assert_eq!(series.len(), 2);
        let other = series
            .iter()
            .find(|series| &*series.labels[0] == OTHER)
            .unwrap_or_else(|| panic!("no other series"));
        assert_eq!(other.values[0].load(Ordering::Relaxed), 2);
        assert_eq!(other.values[1].load(Ordering::Relaxed), 50);
    }

    #[test]
    fn label_boundaries_are_part_of_the_hash() {
        assert_ne!(hash_labels(&["ab", "c"]), hash_labels(&["a", "bc"]));
        assert_ne!(hash_labels(&["", "x"]), hash_labels(&["x", ""]));
        assert_eq!(
            hash_labels(&["tenant", "200"]),
            hash_labels(&["tenant", "200"])
        );
        let family: Family<2, 1> = Family::new(10);
        family.add(["ab", "c"], [1], identity);
        family.add(["a", "bc"], [1], identity);
        assert_eq!(family.series().len(), 2);
    }

    #[test]
    fn concurrent_adds_are_all_counted() {
        let family: Arc<Family<1, 1>> = Arc::new(Family::new(100));
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let family = Arc::clone(&family);
                std::thread::spawn(move || {
                    for round in 0..1000 {
                        let label = if round % 2 == 0 {
                            "even"
                        } else {
                            ["a", "b", "c", "d"][thread]
                        };
                        family.add([label], [1], identity);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap_or_else(|_| panic!("thread panicked"));
        }
        let total: u64 = family
            .series()
            .iter()
            .map(|series| series.values[0].load(Ordering::Relaxed))
            .sum();
        assert_eq!(total, 4000);
        assert_eq!(family.series().len(), 5);
    }
}

//! The bounded cache of compiled versions, one per set of input shapes.
//!
//! Least recently used goes first. An entry is inserted before its version
//! is compiled, with a per-entry lock that the compiling thread holds: a
//! second thread asking for the same shapes finds the entry, waits on that
//! lock and then takes the finished version, so each version is compiled
//! once however many threads ask at the same time. Threads asking for other
//! shapes are not blocked (the cache's own lock is never held while
//! compiling). A hit takes the cache lock for a scan of at most `capacity`
//! keys and allocates nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// One cache entry's value, filled once.
pub(crate) struct Slot<V> {
    ready: OnceLock<Arc<V>>,
    /// Held while compiling; waiters block on it.
    compiling: Mutex<()>,
}

struct Entry<V> {
    key: Vec<Vec<usize>>,
    slot: Arc<Slot<V>>,
    last_used: u64,
}

/// Counters for tests and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found a finished version.
    pub hits: u64,
    /// Versions compiled (successfully or not).
    pub compiles: u64,
    /// Versions dropped to make room.
    pub evictions: u64,
    /// Versions held now.
    pub len: usize,
}

pub(crate) struct VersionCache<V> {
    capacity: usize,
    entries: Mutex<Vec<Entry<V>>>,
    clock: AtomicU64,
    hits: AtomicU64,
    compiles: AtomicU64,
    evictions: AtomicU64,
}

impl<V> VersionCache<V> {
    /// A cache of at most `capacity` versions (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        VersionCache {
            capacity: capacity.max(1),
            entries: Mutex::new(Vec::new()),
            clock: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            compiles: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry<V>>> {
        // No code that can panic runs under this lock (scans and pushes only).
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            compiles: self.compiles.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            len: self.lock().len(),
        }
    }

    /// The version for `shapes`, built by `build` if no finished one is
    /// cached. A failed build is not cached (the next call tries again and
    /// reports its own error).
    pub(crate) fn get_or_build<E>(
        &self,
        shapes: &[&[usize]],
        build: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        self.get_or_build_by(
            |key| key.len() == shapes.len() && key.iter().zip(shapes).all(|(k, s)| k.as_slice() == *s),
            || shapes.iter().map(|s| s.to_vec()).collect(),
            build,
        )
    }

    /// [`VersionCache::get_or_build`] for a key given as a predicate (so a
    /// hit builds no key and allocates nothing) and a constructor used on a
    /// miss. `matches` must accept exactly the key `make_key` returns.
    pub(crate) fn get_or_build_by<E>(
        &self,
        matches: impl Fn(&[Vec<usize>]) -> bool,
        make_key: impl FnOnce() -> Vec<Vec<usize>>,
        build: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        let slot = {
            let mut entries = self.lock();
            let now = self.clock.fetch_add(1, Ordering::Relaxed);
            match entries.iter_mut().find(|e| matches(&e.key)) {
                Some(e) => {
                    e.last_used = now;
                    if let Some(v) = e.slot.ready.get() {
                        self.hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(Arc::clone(v));
                    }
                    Arc::clone(&e.slot)
                }
                None => {
                    if entries.len() >= self.capacity {
                        if let Some(oldest) =
                            entries.iter().enumerate().min_by_key(|(_, e)| e.last_used).map(|(i, _)| i)
                        {
                            entries.swap_remove(oldest);
                            self.evictions.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let slot = Arc::new(Slot { ready: OnceLock::new(), compiling: Mutex::new(()) });
                    entries.push(Entry { key: make_key(), slot: Arc::clone(&slot), last_used: now });
                    slot
                }
            }
        };
        let _compiling = slot.compiling.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = slot.ready.get() {
            // Another thread compiled it while this one waited.
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Arc::clone(v));
        }
        self.compiles.fetch_add(1, Ordering::Relaxed);
        match build() {
            Ok(v) => Ok(Arc::clone(slot.ready.get_or_init(|| Arc::new(v)))),
            Err(e) => {
                self.lock().retain(|entry| !Arc::ptr_eq(&entry.slot, &slot));
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_goes_first() {
        let cache = VersionCache::<usize>::new(2);
        let get = |n: usize| *cache.get_or_build::<()>(&[&[n]], || Ok(n * 10)).expect("builds");
        assert_eq!(get(1), 10);
        assert_eq!(get(2), 20);
        assert_eq!(get(1), 10); // 1 is now more recent than 2
        assert_eq!(get(3), 30); // evicts 2
        assert_eq!(cache.stats(), CacheStats { hits: 1, compiles: 3, evictions: 1, len: 2 });
        assert_eq!(get(1), 10); // still cached
        assert_eq!(get(2), 20); // compiled again
        assert_eq!(cache.stats().compiles, 4);
    }

    #[test]
    fn a_failed_build_is_not_cached() {
        let cache = VersionCache::<usize>::new(4);
        assert_eq!(cache.get_or_build(&[&[7]], || Err("no")).map(|v| *v), Err("no"));
        assert_eq!(cache.stats().len, 0);
        assert_eq!(cache.get_or_build::<&str>(&[&[7]], || Ok(7)).map(|v| *v), Ok(7));
    }

    #[test]
    fn concurrent_askers_of_one_key_build_it_once() {
        let cache = VersionCache::<usize>::new(8);
        let builds = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let v = cache
                        .get_or_build::<()>(&[&[1, 2]], || {
                            builds.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            Ok(42)
                        })
                        .expect("builds");
                    assert_eq!(*v, 42);
                });
            }
        });
        assert_eq!(builds.load(Ordering::Relaxed), 1);
        assert_eq!(cache.stats().compiles, 1);
    }
}

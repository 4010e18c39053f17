//! Packed convolution weights shared between kernels and between compiled
//! graphs.
//!
//! A model that serves several input shapes compiles one graph per shape,
//! and every version packs the same weights into the same layouts: the
//! layout depends on the channel counts, groups, kernel taps and register
//! blocking, never on the batch and only at the edges on the image size. The
//! cache keys a packed buffer by its layout and by a hash of the source
//! weights' bits, so a hit needs no trust in the caller: two convolutions
//! get the same buffer only if they would have packed the same floats in the
//! same order (a module called twice in one graph shares it too).
//!
//! Buffers are immutable once packed and reference-counted: a compiled graph
//! holds an `Arc` to every buffer its code points into, so dropping the cache
//! (or another graph) never frees memory that code still reads.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::pack::{pack_weights, AlignedBuf};
use crate::schedule::{Blocking, ConvSpec};

/// What a packed buffer is: its layout and the weights it was packed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PackKey {
    /// Hash of everything [`pack_weights`] reads besides the weights.
    layout: u64,
    /// Hash of the source weights' bits (in their PyTorch layout).
    content: u64,
    /// Source length, so equal hashes of different sizes cannot meet.
    len: usize,
}

/// A cache of packed weights; cheap to clone (clones share the cache).
/// `kiln_jit::Shared` holds one for every graph compiled with it.
#[derive(Clone, Default)]
pub struct WeightCache {
    map: Arc<Mutex<HashMap<PackKey, Arc<AlignedBuf>>>>,
    hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
}

impl std::fmt::Debug for WeightCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightCache").field("buffers", &self.len()).field("hits", &self.hits()).finish()
    }
}

impl WeightCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Distinct packed buffers held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing has been packed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Packings answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Packings that had to pack.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Bytes of packed weights held.
    pub fn bytes(&self) -> usize {
        self.lock().values().map(|b| b.as_slice().len() * 4).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PackKey, Arc<AlignedBuf>>> {
        // Nothing panics while holding the lock (packing runs outside it).
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The packed form of `source` (read through `weight`, as
    /// [`pack_weights`] does) for `spec` and `blocking`, packing it on a miss.
    ///
    /// Two threads missing the same key at once both pack; the first insert
    /// wins and both get equal buffers, so the race costs time, not
    /// correctness.
    pub(crate) fn packed(
        &self,
        spec: &ConvSpec,
        blocking: &Blocking,
        source: &[f32],
        weight: impl Fn(usize, usize, usize, usize, usize) -> f32,
    ) -> Arc<AlignedBuf> {
        let key = PackKey { layout: layout_hash(spec, blocking), content: content_hash(source), len: source.len() };
        if let Some(buf) = self.lock().get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Arc::clone(buf);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let buf = Arc::new(pack_weights(spec, blocking, weight));
        Arc::clone(self.lock().entry(key).or_insert(buf))
    }
}

/// Hashes every input of [`pack_weights`] other than the weights: the op
/// (which fixes the source layout the `weight` closure reads), channel
/// counts, groups, the blocking and every phase pair's taps in order.
fn layout_hash(spec: &ConvSpec, blocking: &Blocking) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (spec.op, spec.groups, spec.cig, spec.cog).hash(&mut h);
    (blocking.full.v, blocking.full.channels, blocking.nb_full).hash(&mut h);
    blocking.tail.map(|t| (t.v, t.channels)).hash(&mut h);
    for &(ph, pw) in spec.phase_pairs() {
        for tap in &spec.h.phases[ph].taps {
            tap.k.hash(&mut h);
        }
        usize::MAX.hash(&mut h);
        for tap in &spec.w.phases[pw].taps {
            tap.k.hash(&mut h);
        }
        usize::MAX.hash(&mut h);
    }
    h.finish()
}

/// A fast 64-bit hash of the floats' bits (two interleaved multiply-xorshift
/// lanes, about 1 ns per 8 bytes): hashing is on every compile's path, and
/// the weights of a decoder run to tens of megabytes.
fn content_hash(source: &[f32]) -> u64 {
    const K0: u64 = 0x9e37_79b9_7f4a_7c15;
    const K1: u64 = 0xc2b2_ae3d_27d4_eb4f;
    let mix = |h: u64, w: u64, k: u64| (h ^ w).wrapping_mul(k).rotate_left(29);
    let (mut a, mut b) = (K1, K0);
    let mut pairs = source.chunks_exact(4);
    for c in &mut pairs {
        let w0 = u64::from(c[0].to_bits()) | (u64::from(c[1].to_bits()) << 32);
        let w1 = u64::from(c[2].to_bits()) | (u64::from(c[3].to_bits()) << 32);
        a = mix(a, w0, K0);
        b = mix(b, w1, K1);
    }
    for &x in pairs.remainder() {
        a = mix(a, u64::from(x.to_bits()), K0);
    }
    let h = a ^ b.rotate_left(17) ^ (source.len() as u64).wrapping_mul(K1);
    (h ^ (h >> 31)).wrapping_mul(K0) ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::ConvTranspose2dGeometry;

    fn spec(cin: usize, cout: usize, hw: usize) -> ConvSpec {
        let g = ConvTranspose2dGeometry::from_output_padding(
            1,
            cin,
            [hw, hw],
            cout,
            1,
            [3, 3],
            [2, 2],
            [1, 1],
            [1, 1],
            [1, 1],
        )
        .expect("geometry");
        ConvSpec::conv_transpose(&g).expect("spec")
    }

    #[test]
    fn content_hash_sees_every_float_and_the_length() {
        let base: Vec<f32> = (0..37).map(|i| i as f32 * 0.25).collect();
        let h = content_hash(&base);
        for i in 0..base.len() {
            let mut v = base.clone();
            v[i] = -v[i] - 1.0;
            assert_ne!(content_hash(&v), h, "changing float {i} must change the hash");
        }
        assert_ne!(content_hash(&base[..36]), h);
        let mut zero_tail = base.clone();
        zero_tail.push(0.0);
        assert_ne!(content_hash(&zero_tail), h);
    }

    #[test]
    fn same_weights_and_layout_share_one_buffer_other_batches_too() {
        let cache = WeightCache::new();
        let w: Vec<f32> = (0..4 * 6 * 9).map(|i| i as f32).collect();
        let read = |w: &[f32]| {
            let w = w.to_vec();
            move |_g: usize, ci: usize, co: usize, kh: usize, kw: usize| w[((ci * 6 + co) * 3 + kh) * 3 + kw]
        };
        let s1 = spec(4, 6, 8);
        let b = Blocking::new(s1.cog);
        let p1 = cache.packed(&s1, &b, &w, read(&w));
        // Another image size with the same taps: same layout, same buffer.
        let s2 = spec(4, 6, 12);
        let p2 = cache.packed(&s2, &b, &w, read(&w));
        assert!(Arc::ptr_eq(&p1, &p2));
        assert_eq!((cache.hits(), cache.misses(), cache.len()), (1, 1, 1));
        assert_eq!(p1.as_slice(), pack_weights(&s1, &b, read(&w)).as_slice());
        // Other weights of the same layout: a new buffer.
        let mut w2 = w.clone();
        w2[5] = 1e3;
        let p3 = cache.packed(&s1, &b, &w2, read(&w2));
        assert!(!Arc::ptr_eq(&p1, &p3));
        assert_eq!(p3.as_slice(), pack_weights(&s1, &b, read(&w2)).as_slice());
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_different_layout_of_the_same_weights_is_packed_again() {
        let cache = WeightCache::new();
        let w: Vec<f32> = (0..4 * 6 * 9).map(|i| i as f32).collect();
        let read = |_g: usize, ci: usize, co: usize, kh: usize, kw: usize| w[((ci * 6 + co) * 3 + kh) * 3 + kw];
        let s = spec(4, 6, 8);
        let p1 = cache.packed(&s, &Blocking::new(6), &w, read);
        let p2 = cache.packed(&s, &Blocking::new(4), &w, read);
        assert!(!Arc::ptr_eq(&p1, &p2));
        assert_eq!(cache.misses(), 2);
    }
}

//! A small deterministic random stream (SplitMix64) shared by parameter
//! initialization and test-data generation, so a seed means the same thing
//! everywhere in Kiln. Not cryptographic; not PyTorch's generator.

/// SplitMix64: tiny, fast, and good enough for weights and test inputs.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A stream from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// An independent stream for `(seed, name)`: the name is hashed (FNV-1a)
    /// and mixed into the seed, so each node gets its own stream regardless
    /// of the order in which streams are created.
    pub fn for_stream(seed: u64, name: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let mut s = SplitMix64::new(seed ^ h.rotate_left(17));
        s.next_u64();
        s
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 24 bits of precision (exact in f32).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform in `[lo, hi)` (for `lo < hi` of moderate magnitude).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let v = lo + (hi - lo) * self.next_f32();
        // Rounding can land exactly on `hi`; keep the interval half-open.
        if v >= hi {
            lo
        } else {
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_stays_in_range_and_varies() {
        let mut r = SplitMix64::new(42);
        let v: Vec<f32> = (0..1000).map(|_| r.uniform(-1.0, 1.0)).collect();
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
        let mean = v.iter().sum::<f32>() / 1000.0;
        assert!(mean.abs() < 0.1, "{mean}");
        assert!(v.iter().any(|&x| x < -0.9) && v.iter().any(|&x| x > 0.9));
    }

    #[test]
    fn streams_are_independent_of_creation_order() {
        let a1 = SplitMix64::for_stream(1, "a").next_u64();
        let _ = SplitMix64::for_stream(1, "b").next_u64();
        assert_eq!(SplitMix64::for_stream(1, "a").next_u64(), a1);
        assert_ne!(SplitMix64::for_stream(1, "b").next_u64(), a1);
    }
}

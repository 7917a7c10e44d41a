//! Small, portable random number generators. Results depend only on the seed, never on the
//! platform or thread count: SplitMix64 derives independent seeds (and serves as a counter-based
//! hash), xoshiro256++ produces the streams.

/// One SplitMix64 step: a strong 64-bit mixer. `mix(seed ^ counter)` is a counter-based generator.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Derive a child seed from a parent seed and a list of indices (e.g. seed, stream, step).
#[inline]
pub fn derive(seed: u64, parts: &[u64]) -> u64 {
    let mut h = mix(seed);
    for &p in parts {
        h = mix(h ^ mix(p.wrapping_add(0x632B_E59B_D9B4_E019)));
    }
    h
}

/// xoshiro256++ (Blackman & Vigna): fast, 256-bit state, seeded through SplitMix64.
#[derive(Clone, Debug)]
pub struct Xoshiro256pp {
    s: [u64; 4],
}

impl Xoshiro256pp {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut s = [0u64; 4];
        for slot in s.iter_mut() {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            *slot = mix(x.wrapping_sub(0x9E37_79B9_7F4A_7C15));
        }
        if s.iter().all(|&v| v == 0) {
            s[0] = 1;
        }
        Self { s }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n) without modulo bias (Lemire's method). `n` must be > 0.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            let lo = m as u64;
            if lo >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Xoshiro256pp::new(42);
        let mut b = Xoshiro256pp::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn different_seeds_differ() {
        let mut a = Xoshiro256pp::new(1);
        let mut b = Xoshiro256pp::new(2);
        assert_ne!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = Xoshiro256pp::new(7);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let v = r.below(10);
            assert!(v < 10);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn f64_in_unit_interval_with_mean_near_half() {
        let mut r = Xoshiro256pp::new(3);
        let n = 100_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let v = r.next_f64();
            assert!((0.0..1.0).contains(&v));
            sum += v;
        }
        assert!((sum / n as f64 - 0.5).abs() < 0.01);
    }

    #[test]
    fn derive_depends_on_every_part() {
        assert_ne!(derive(1, &[0, 0]), derive(1, &[0, 1]));
        assert_ne!(derive(1, &[0, 1]), derive(1, &[1, 0]));
        assert_eq!(derive(9, &[3, 4]), derive(9, &[3, 4]));
    }
}

// ------------------------------------------------------------------ standard normal (ziggurat)
//
// Marsaglia & Tsang (2000), "The Ziggurat Method for Generating Random Variables", 256 layers,
// laid out as in Doornik (2005) / rand_distr: one u64 gives the layer (low 8 bits) and a signed
// uniform (high 52 bits); 98.8% of draws return after one comparison. The method is exact: the
// rejection steps make the output density the normal density, up to the 52-bit resolution of u.
// The simulator needs ~10^9 normals per sweep, so this is its hot path (Box-Muller costs a log,
// a sqrt and a sin/cos per pair).

use std::sync::OnceLock;

/// x-coordinate where the tail starts (257-entry tables: `X[1] = R`).
const ZIG_R: f64 = 3.654_152_885_361_009;
/// Area of each of the 256 equal-area layers under exp(-x²/2), tail included in layer 0.
const ZIG_V: f64 = 0.004_928_673_233_99;

struct ZigTables {
    x: [f64; 257],
    f: [f64; 257],
}

fn zig_tables() -> &'static ZigTables {
    static T: OnceLock<ZigTables> = OnceLock::new();
    T.get_or_init(|| {
        let pdf = |x: f64| (-0.5 * x * x).exp();
        let mut x = [0.0; 257];
        let mut f = [0.0; 257];
        // Layer 0 is the base strip: a rectangle of width V/f(R) standing in for the tail.
        x[0] = ZIG_V / pdf(ZIG_R);
        x[1] = ZIG_R;
        for i in 1..255 {
            // Equal areas: x[i] * (f(x[i+1]) - f(x[i])) = V.
            x[i + 1] = (-2.0 * (ZIG_V / x[i] + pdf(x[i])).ln()).sqrt();
        }
        x[256] = 0.0;
        for i in 0..257 {
            f[i] = pdf(x[i]);
        }
        ZigTables { x, f }
    })
}

impl Xoshiro256pp {
    /// One standard normal draw N(0, 1) (exact ziggurat, see above).
    #[inline]
    pub fn normal(&mut self) -> f64 {
        let t = zig_tables();
        loop {
            let bits = self.next_u64();
            let i = (bits & 0xff) as usize;
            // Signed uniform in (-1, 1) from the high 52 bits: [2, 4) by exponent trick, minus 3.
            let u = f64::from_bits((bits >> 12) | 0x4000_0000_0000_0000) - 3.0;
            let x = u * t.x[i];
            if x.abs() < t.x[i + 1] {
                return x;
            }
            if i == 0 {
                return self.normal_tail(u < 0.0);
            }
            // Wedge between layers i and i+1: accept under the curve.
            if t.f[i + 1] + (t.f[i] - t.f[i + 1]) * self.next_f64() < (-0.5 * x * x).exp() {
                return x;
            }
        }
    }

    /// Marsaglia (1964) tail sampler for |x| > R.
    #[cold]
    fn normal_tail(&mut self, negative: bool) -> f64 {
        loop {
            // 1 - next_f64() lies in (0, 1], so the logs stay finite.
            let x = -(1.0 - self.next_f64()).ln() / ZIG_R;
            let y = -(1.0 - self.next_f64()).ln();
            if 2.0 * y >= x * x {
                return if negative { -(ZIG_R + x) } else { ZIG_R + x };
            }
        }
    }
}

#[cfg(test)]
mod normal_tests {
    use super::*;

    #[test]
    fn ziggurat_tables_close_the_layers() {
        // The recursion must land on the peak: layer 255's top is f(0) = 1 with area V.
        let t = zig_tables();
        let top = ZIG_V / t.x[255] + t.f[255];
        assert!((top - 1.0).abs() < 1e-9, "top = {top}");
        for i in 0..256 {
            assert!(t.x[i] > t.x[i + 1]);
        }
    }

    #[test]
    fn normal_moments_and_quantiles_match_n01() {
        let mut r = Xoshiro256pp::new(11);
        let n = 2_000_000usize;
        let (mut s1, mut s2, mut s4) = (0.0, 0.0, 0.0);
        // Known standard-normal CDF values Phi(q) at these q (tables; 1 - Phi(3.7) = 1.078e-4).
        let qs = [-3.7, -1.96, -1.0, 0.0, 0.5, 1.0, 1.96, 3.0, 3.7];
        let phi = [1.0780e-4, 0.024998, 0.158655, 0.5, 0.691462, 0.841345, 0.975002, 0.998650, 0.999892];
        let mut below = [0usize; 9];
        for _ in 0..n {
            let z = r.normal();
            s1 += z;
            s2 += z * z;
            s4 += z * z * z * z;
            for (k, &q) in qs.iter().enumerate() {
                if z < q {
                    below[k] += 1;
                }
            }
        }
        let nf = n as f64;
        assert!((s1 / nf).abs() < 0.003, "mean {}", s1 / nf);
        assert!((s2 / nf - 1.0).abs() < 0.004, "var {}", s2 / nf);
        assert!((s4 / nf - 3.0).abs() < 0.03, "fourth moment {}", s4 / nf);
        for k in 0..qs.len() {
            let p = phi[k];
            let got = below[k] as f64 / nf;
            let sd = (p * (1.0 - p) / nf).sqrt();
            assert!((got - p).abs() < 5.0 * sd + 1e-6, "P(z < {}) = {got}, expected {p}", qs[k]);
        }
    }

    #[test]
    fn normal_tail_beyond_r_has_the_right_mass() {
        // P(|z| > R) = 2 (1 - Phi(3.6541529)) = 2.5805e-4; the tail sampler must produce it.
        let mut r = Xoshiro256pp::new(5);
        let n = 4_000_000usize;
        let mut tail = 0usize;
        let mut beyond_45 = 0usize;
        for _ in 0..n {
            let z = r.normal();
            if z.abs() > ZIG_R {
                tail += 1;
            }
            if z.abs() > 4.5 {
                beyond_45 += 1;
            }
        }
        let p = 2.5805e-4;
        let got = tail as f64 / n as f64;
        let sd = (p / n as f64).sqrt();
        assert!((got - p).abs() < 5.0 * sd, "tail mass {got}");
        // P(|z| > 4.5) = 6.795e-6: about 27 draws; must not be zero (tail reached) nor wildly off.
        assert!((8..=60).contains(&beyond_45), "{beyond_45} draws beyond 4.5");
    }
}

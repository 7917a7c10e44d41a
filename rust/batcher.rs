//! Seeded sampler of contiguous training windows and sequential evaluation windows.
//!
//! A training window starting at offset `o` gives inputs `x = t[o..o+block]` and targets
//! `y = t[o+1..o+block+1]`, so valid offsets are `0..=n_tokens-block-1`.
//!
//! Offsets are counter-based: window `b` of step `step` in the stream seeded by `seed` is the
//! `b`-th draw of a xoshiro256++ generator seeded with `derive(seed, [step])`. It depends on
//! `(seed, step, b)` only, so any step can be regenerated on resume, and the result is the same on
//! every machine and at every thread count (threads only split independent rows).

use crate::error::CoreResult;
use crate::invalid;
use crate::rng::{derive, Xoshiro256pp};
use rayon::prelude::*;

/// Below this many output tokens, waking a second thread costs more than the copy it would split
/// (measured: B=T=256, 65536 tokens, runs 0.028 ms on one thread and 0.022 ms on two).
const PARALLEL_MIN_TOKENS: usize = 1 << 15;

/// How many windows ahead of the one being copied to prefetch.
const PREFETCH_ROWS_AHEAD: usize = 4;

/// Hint the CPU to load `tokens[start..start+len]` into cache (no-op off x86-64).
/// `start + len <= tokens.len()` must already be checked.
#[inline(always)]
fn prefetch<T>(tokens: &[T], start: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let window = &tokens[start..start + len];
        let base = window.as_ptr() as *const i8;
        let bytes = std::mem::size_of_val(window);
        let mut i = 0;
        while i < bytes {
            // SAFETY: `base + i` stays inside `window`; a prefetch never faults or writes.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(i)) };
            i += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (tokens, start, len);
}

/// Most elements one output array may hold (8 GiB of int64): a larger request is an error, not an
/// allocation that aborts the process.
pub const MAX_ELEMENTS: usize = 1 << 30;

/// Check that an output of `n` elements (`what`, for the message) is within MAX_ELEMENTS.
pub fn check_size(n: usize, what: &str) -> CoreResult<()> {
    if n > MAX_ELEMENTS {
        return Err(invalid!("{what}: {n} elements is too large (at most {MAX_ELEMENTS})"));
    }
    Ok(())
}

/// Check that at least one training window of length `block` fits in `n_tokens` tokens.
pub fn check_window(n_tokens: usize, block: usize) -> CoreResult<()> {
    if block == 0 {
        return Err(invalid!("block must be at least 1, got 0"));
    }
    if block >= n_tokens {
        return Err(invalid!(
            "block {block} must be smaller than the number of tokens {n_tokens} \
             (a window needs block + 1 tokens for its targets)"
        ));
    }
    Ok(())
}

/// Start offsets for `n_steps` steps from `start_step`, for each seed (stream), `batch` windows
/// each. Row-major shape `(n_steps, seeds.len(), batch)`.
pub fn batch_offsets(
    n_tokens: usize,
    block: usize,
    batch: usize,
    seeds: &[u64],
    start_step: u64,
    n_steps: usize,
) -> CoreResult<Vec<i64>> {
    check_window(n_tokens, block)?;
    if batch == 0 {
        return Err(invalid!("batch must be at least 1, got 0"));
    }
    if seeds.is_empty() {
        return Err(invalid!(
            "seeds must name at least one stream, got an empty list"
        ));
    }
    if start_step.checked_add(n_steps as u64).is_none() {
        return Err(invalid!(
            "start_step {start_step} + n_steps {n_steps} overflows 64 bits"
        ));
    }
    let k = seeds.len();
    let total = n_steps
        .checked_mul(k)
        .and_then(|v| v.checked_mul(batch))
        .ok_or_else(|| invalid!("n_steps {n_steps} x streams {k} x batch {batch} is too large"))?;
    check_size(total, &format!("n_steps {n_steps} x streams {k} x batch {batch}"))?;
    // Number of valid offsets: 0..=n_tokens-block-1.
    let span = (n_tokens - block) as u64;
    let mut out = vec![0i64; total];
    let fill = |(row, chunk): (usize, &mut [i64])| {
        let step = start_step + (row / k) as u64;
        let seed = seeds[row % k];
        let mut rng = Xoshiro256pp::new(derive(seed, &[step]));
        for o in chunk.iter_mut() {
            *o = rng.below(span) as i64;
        }
    };
    if total >= PARALLEL_MIN_TOKENS {
        out.par_chunks_mut(batch).enumerate().for_each(fill);
    } else {
        out.chunks_mut(batch).enumerate().for_each(fill);
    }
    Ok(out)
}

/// Non-overlapping evaluation windows `0, block, 2*block, ...`: every target position
/// `1..=m*block` is covered exactly once, where `m = (n_tokens - 1) / block` is the number of
/// whole windows. The last `(n_tokens - 1) % block` targets (less than one window) are left out.
pub fn eval_offsets(n_tokens: usize, block: usize) -> CoreResult<Vec<i64>> {
    check_window(n_tokens, block)?;
    let m = (n_tokens - 1) / block;
    check_size(m, &format!("evaluation windows of block {block} in {n_tokens} tokens"))?;
    Ok((0..m).map(|i| (i * block) as i64).collect())
}

/// Check every offset so that the copy itself cannot go out of bounds.
fn check_offsets(n_tokens: usize, offsets: &[i64], block: usize) -> CoreResult<()> {
    check_window(n_tokens, block)?;
    let max = (n_tokens - block - 1) as i64;
    for (i, &o) in offsets.iter().enumerate() {
        if o < 0 || o > max {
            return Err(invalid!(
                "offset {o} (index {i}) is out of range: a window of block {block} needs \
                 0 <= offset <= {max} for {n_tokens} tokens"
            ));
        }
    }
    Ok(())
}

/// Copy windows into `x` and `y` (each `offsets.len() * block` long, row-major).
/// Every offset is checked before anything is written.
pub fn gather_windows<T>(
    tokens: &[T],
    offsets: &[i64],
    block: usize,
    x: &mut [i64],
    y: &mut [i64],
) -> CoreResult<()>
where
    T: Copy + Into<i64> + Sync,
{
    check_offsets(tokens.len(), offsets, block)?;
    let need = offsets.len() * block;
    if x.len() != need || y.len() != need {
        return Err(invalid!(
            "output buffers hold {} and {} values, {need} needed ({} windows x block {block})",
            x.len(),
            y.len(),
            offsets.len()
        ));
    }
    if need == 0 {
        return Ok(());
    }
    let copy = |(r, (xr, yr)): (usize, (&mut [i64], &mut [i64]))| {
        // Windows start at random places in a corpus much larger than the cache: ask for a
        // later window's lines now so that its memory latency overlaps this copy.
        if let Some(&ahead) = offsets.get(r + PREFETCH_ROWS_AHEAD) {
            prefetch(tokens, ahead as usize, block + 1);
        }
        let o = offsets[r] as usize;
        // One source slice of block + 1 tokens; x and y are its two shifted views.
        let src = &tokens[o..o + block + 1];
        // Two plain widening copies: each vectorises, unlike one loop over pairs.
        for (d, &s) in xr.iter_mut().zip(&src[..block]) {
            *d = s.into();
        }
        for (d, &s) in yr.iter_mut().zip(&src[1..]) {
            *d = s.into();
        }
    };
    for &o in offsets.iter().take(PREFETCH_ROWS_AHEAD) {
        prefetch(tokens, o as usize, block + 1);
    }
    if need >= PARALLEL_MIN_TOKENS {
        x.par_chunks_mut(block)
            .zip(y.par_chunks_mut(block))
            .enumerate()
            .for_each(copy);
    } else {
        x.chunks_mut(block)
            .zip(y.chunks_mut(block))
            .enumerate()
            .for_each(copy);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn offsets_are_in_range_and_reach_both_ends() {
        let (n, block) = (20usize, 5usize);
        let o = batch_offsets(n, block, 1000, &[1], 0, 3).unwrap();
        assert_eq!(o.len(), 3000);
        assert!(o.iter().all(|&v| (0..=(n - block - 1) as i64).contains(&v)));
        assert!(o.contains(&0));
        assert!(o.contains(&((n - block - 1) as i64)));
    }

    #[test]
    fn offsets_depend_only_on_seed_step_and_index() {
        let all = batch_offsets(1000, 8, 4, &[3, 9], 0, 10).unwrap();
        // Regenerating step 7 alone (resume) gives the same rows as the full run.
        let one = batch_offsets(1000, 8, 4, &[3, 9], 7, 1).unwrap();
        assert_eq!(&all[7 * 8..8 * 8], &one[..]);
        // A stream does not depend on which other streams are packed beside it.
        let only9 = batch_offsets(1000, 8, 4, &[9], 0, 10).unwrap();
        for s in 0..10 {
            assert_eq!(&all[s * 8 + 4..s * 8 + 8], &only9[s * 4..s * 4 + 4]);
        }
        // The first windows of a bigger batch are the windows of the smaller batch.
        let big = batch_offsets(1000, 8, 6, &[3], 2, 1).unwrap();
        assert_eq!(&big[..4], &all[2 * 8..2 * 8 + 4]);
    }

    #[test]
    fn parallel_and_serial_paths_agree() {
        // Large enough to take the rayon path; each row must equal its one-row regeneration.
        let batch = 256;
        let steps = PARALLEL_MIN_TOKENS / batch + 3;
        let all = batch_offsets(1 << 20, 64, batch, &[5], 0, steps).unwrap();
        for s in [0, steps / 2, steps - 1] {
            let one = batch_offsets(1 << 20, 64, batch, &[5], s as u64, 1).unwrap();
            assert_eq!(&all[s * batch..(s + 1) * batch], &one[..]);
        }
    }

    #[test]
    fn different_seeds_and_steps_differ() {
        let a = batch_offsets(100_000, 8, 16, &[1, 2], 0, 2).unwrap();
        assert_ne!(&a[0..16], &a[16..32]);
        assert_ne!(&a[0..16], &a[32..48]);
    }

    #[test]
    fn offsets_reject_bad_arguments() {
        let e = batch_offsets(10, 10, 1, &[0], 0, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("block 10") && e.contains("10"), "{e}");
        assert!(batch_offsets(10, 11, 1, &[0], 0, 1).is_err());
        assert!(batch_offsets(10, 0, 1, &[0], 0, 1)
            .unwrap_err()
            .to_string()
            .contains("block"));
        assert!(batch_offsets(10, 3, 0, &[0], 0, 1)
            .unwrap_err()
            .to_string()
            .contains("batch"));
        assert!(batch_offsets(10, 3, 1, &[], 0, 1)
            .unwrap_err()
            .to_string()
            .contains("seeds"));
        assert!(batch_offsets(10, 3, 1, &[0], u64::MAX, 2)
            .unwrap_err()
            .to_string()
            .contains("overflow"));
        assert!(batch_offsets(10, 3, usize::MAX, &[0, 1], 0, 2)
            .unwrap_err()
            .to_string()
            .contains("too large"));
        assert_eq!(
            batch_offsets(10, 3, 2, &[0], 0, 0).unwrap(),
            Vec::<i64>::new()
        );
        // sizes that fit in 64 bits but not in memory are errors, not an aborting allocation
        let e = batch_offsets(100, 8, 1 << 36, &[0], 0, 1).unwrap_err().to_string();
        assert!(e.contains("too large") && e.contains(&MAX_ELEMENTS.to_string()), "{e}");
        assert!(eval_offsets(1 << 40, 1).unwrap_err().to_string().contains("too large"));
        assert!(eval_offsets(1 << 62, 1).unwrap_err().to_string().contains("too large"));
        assert_eq!(batch_offsets(100, 8, MAX_ELEMENTS + 1, &[0], 0, 0).unwrap(), Vec::<i64>::new());
    }

    #[test]
    fn smallest_corpus_has_one_window() {
        let o = batch_offsets(4, 3, 5, &[0], 0, 1).unwrap();
        assert_eq!(o, vec![0; 5]);
    }

    #[test]
    fn gather_copies_shifted_windows() {
        let t: Vec<u16> = (0..50).collect();
        let offs = vec![0i64, 7, 46];
        let (mut x, mut y) = (vec![0i64; 9], vec![0i64; 9]);
        gather_windows(&t, &offs, 3, &mut x, &mut y).unwrap();
        assert_eq!(x, vec![0, 1, 2, 7, 8, 9, 46, 47, 48]);
        assert_eq!(y, vec![1, 2, 3, 8, 9, 10, 47, 48, 49]);
    }

    #[test]
    fn gather_parallel_path_matches_definition() {
        let t: Vec<u32> = (0..100_000u32)
            .map(|i| i.wrapping_mul(2654435761) >> 8)
            .collect();
        let block = 512;
        let offs = batch_offsets(t.len(), block, 4096, &[1], 0, 1).unwrap();
        let n = offs.len() * block;
        assert!(n >= PARALLEL_MIN_TOKENS);
        let (mut x, mut y) = (vec![0i64; n], vec![0i64; n]);
        gather_windows(&t, &offs, block, &mut x, &mut y).unwrap();
        for (r, &o) in offs.iter().enumerate().step_by(97) {
            for j in 0..block {
                assert_eq!(x[r * block + j], t[o as usize + j] as i64);
                assert_eq!(y[r * block + j], t[o as usize + j + 1] as i64);
            }
        }
    }

    #[test]
    fn gather_rejects_out_of_range_offsets_and_bad_buffers() {
        let t: Vec<u16> = (0..10).collect();
        let (mut x, mut y) = (vec![0i64; 3], vec![0i64; 3]);
        let e = gather_windows(&t, &[7], 3, &mut x, &mut y)
            .unwrap_err()
            .to_string();
        assert!(e.contains("offset 7"), "{e}");
        assert!(gather_windows(&t, &[6], 3, &mut x, &mut y).is_ok());
        let e = gather_windows(&t, &[-1], 3, &mut x, &mut y)
            .unwrap_err()
            .to_string();
        assert!(e.contains("offset -1"), "{e}");
        let e = gather_windows(&t, &[0, 1], 3, &mut x, &mut y)
            .unwrap_err()
            .to_string();
        assert!(e.contains("6 needed"), "{e}");
        assert!(gather_windows(&t, &[0], 10, &mut x, &mut y).is_err());
        assert!(gather_windows(&t, &[0], 0, &mut x, &mut y).is_err());
    }

    #[test]
    fn eval_offsets_cover_each_target_once() {
        for n in 2..40usize {
            for block in 1..n {
                let o = eval_offsets(n, block).unwrap();
                let mut seen = vec![0u8; n];
                for &s in &o {
                    for hit in &mut seen[s as usize + 1..=s as usize + block] {
                        *hit += 1;
                    }
                }
                let covered = o.len() * block;
                assert!(seen[1..=covered].iter().all(|&c| c == 1));
                assert!(seen[covered + 1..].iter().all(|&c| c == 0));
                assert!(n - 1 - covered < block, "a whole window was left out");
            }
        }
        assert!(eval_offsets(5, 5).is_err());
        assert!(eval_offsets(5, 0).is_err());
    }

    proptest! {
        #[test]
        fn gathered_windows_equal_slices(n in 2usize..300, block_frac in 0.0f64..1.0, seed: u64, step in 0u64..1000) {
            let block = 1 + ((n - 2) as f64 * block_frac) as usize;
            let t: Vec<u16> = (0..n).map(|i| (i * 31 % 65521) as u16).collect();
            let offs = batch_offsets(n, block, 5, &[seed], step, 1).unwrap();
            let (mut x, mut y) = (vec![0i64; 5 * block], vec![0i64; 5 * block]);
            gather_windows(&t, &offs, block, &mut x, &mut y).unwrap();
            for (r, &o) in offs.iter().enumerate() {
                let o = o as usize;
                for j in 0..block {
                    prop_assert_eq!(x[r * block + j], t[o + j] as i64);
                    prop_assert_eq!(y[r * block + j], t[o + j + 1] as i64);
                }
            }
        }
    }
}

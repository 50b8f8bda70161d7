//! Masks (inpainting) and subsampling (compressed sensing).

use super::LinearOperator;
use crate::error::{Error, Result};
use crate::linalg::Real;
use ndarray::{ArrayView1, ArrayViewMut1, Zip};

/// Pixel mask `x ↦ m ⊙ x` with `m ∈ {0, 1}ⁿ` (inpainting): keeps the observed entries and
/// zeroes the others. Self-adjoint, `‖M‖ = 1` unless the mask is empty.
#[derive(Clone, Debug)]
pub struct Mask {
    keep: Vec<bool>,
}

impl Mask {
    /// Mask from a boolean vector (`true` = observed).
    pub fn new(keep: Vec<bool>) -> Self {
        Self { keep }
    }
    /// Seeded random mask observing each entry with probability `p`.
    pub fn random(n: usize, p: f64, seed: u64) -> Result<Self> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::param(
                "p",
                p,
                "the observation probability must lie in [0, 1]",
            ));
        }
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        Ok(Self {
            keep: (0..n).map(|_| rng.random::<f64>() < p).collect(),
        })
    }
    /// The pattern (`true` = observed).
    pub fn keep(&self) -> &[bool] {
        &self.keep
    }
    /// Number of observed entries.
    pub fn observed(&self) -> usize {
        self.keep.iter().filter(|&&k| k).count()
    }
}

impl<T: Real> LinearOperator<T> for Mask {
    fn shape(&self) -> (usize, usize) {
        (self.keep.len(), self.keep.len())
    }
    fn name(&self) -> String {
        format!("Mask({} of {})", self.observed(), self.keep.len())
    }
    fn apply_unchecked(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        Zip::from(out)
            .and(x)
            .and(&ndarray::ArrayView1::from(&self.keep[..]))
            .for_each(|o, &xi, &k| *o = if k { xi } else { T::zero() });
    }
    fn adjoint_unchecked(&self, out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        self.apply_unchecked(out, y)
    }
}

/// Subsampling `S: ℝⁿ → ℝᵐ`, `(Sx)_k = x[idx[k]]`; the adjoint scatters back (zeros elsewhere).
#[derive(Clone, Debug)]
pub struct Subsample {
    n: usize,
    idx: Vec<usize>,
}

impl Subsample {
    /// Keeps the entries `idx` (each `< n`) of a length-`n` vector, in that order.
    pub fn new(n: usize, idx: Vec<usize>) -> Result<Self> {
        if let Some((k, &i)) = idx.iter().enumerate().find(|(_, &i)| i >= n) {
            return Err(Error::param(
                format!("idx[{k}]"),
                i,
                format!("indices must be < n = {n}"),
            ));
        }
        Ok(Self { n, idx })
    }
    /// Seeded random subset of `m` distinct indices out of `n` (sorted).
    pub fn random(n: usize, m: usize, seed: u64) -> Result<Self> {
        if m > n {
            return Err(Error::param(
                "m",
                m,
                format!("cannot keep more than n = {n} entries"),
            ));
        }
        use rand::{seq::index::sample, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut idx = sample(&mut rng, n, m).into_vec();
        idx.sort_unstable();
        Ok(Self { n, idx })
    }
}

impl<T: Real> LinearOperator<T> for Subsample {
    fn shape(&self) -> (usize, usize) {
        (self.idx.len(), self.n)
    }
    fn name(&self) -> String {
        format!("Subsample({} of {})", self.idx.len(), self.n)
    }
    fn apply_unchecked(&self, mut out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        for (o, &i) in out.iter_mut().zip(&self.idx) {
            *o = x[i];
        }
    }
    fn adjoint_unchecked(&self, mut out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        out.fill(T::zero());
        for (&yk, &i) in y.iter().zip(&self.idx) {
            out[i] += yk;
        }
    }
}

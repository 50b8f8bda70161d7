//! The synthetic sparse-recovery setting: `y = A x + v` with a Bernoulli–Gaussian `x`.
//!
//! Defaults (the TISTA script and the ALISTA repository, see `METHODS.md` §2.3):
//! N = 500, M = 250, `A_ij ~ N(0, 1/M)` with unit-norm columns, `x_i = b_i·g_i` with
//! `b_i ~ Bernoulli(p = 0.1)`, `g_i ~ N(0, 1)`, and white Gaussian noise at SNR = 40 dB.
//! The noise variance is set from the *expected* signal power, `σ² = E‖Ax‖²/M · 10^(−SNR/10)`
//! with `E‖Ax‖² = p·N` for unit-norm columns, so that it is a known constant (TISTA's
//! error-variance estimate needs it).

use hyperprox_core::error::{Error, Result};
use hyperprox_core::Real;
use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use std::sync::Arc;

/// The sensing matrix and its derived quantities.
#[derive(Clone, Debug)]
pub struct Problem {
    /// `A` (M × N), unit-norm columns.
    pub a: Arc<Array2<f64>>,
    /// `L = ‖A‖₂²`, the Lipschitz constant of `∇½‖Ax − y‖²`.
    pub lipschitz: f64,
    /// Seed that generated `A`.
    pub seed: u64,
}

/// The largest sensing matrix and the largest model accepted, in numbers (`2²⁸`: 2 GiB of `f64`).
pub const MAX_ENTRIES: usize = 1 << 28;

impl Problem {
    /// A Gaussian `A` (M × N) with entries `N(0, 1/M)` and normalized columns.
    pub fn gaussian(m: usize, n: usize, seed: u64) -> Result<Self> {
        if m == 0 || n == 0 {
            return Err(Error::param(
                "M, N",
                format!("{m}, {n}"),
                "the sensing matrix needs M ≥ 1 and N ≥ 1",
            ));
        }
        if m.checked_mul(n).is_none_or(|e| e > MAX_ENTRIES) {
            return Err(Error::param(
                "M, N",
                format!("{m}, {n}"),
                format!("more than {MAX_ENTRIES} entries in A; use smaller sizes"),
            ));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let s = 1.0 / (m as f64).sqrt();
        let mut a = Array2::from_shape_simple_fn((m, n), || {
            let v: f64 = StandardNormal.sample(&mut rng);
            v * s
        });
        for mut c in a.columns_mut() {
            let nrm = c.dot(&c).sqrt();
            if nrm > 0.0 {
                c /= nrm;
            }
        }
        Self::from_matrix(a, seed)
    }

    /// Any matrix; `Err` if it is empty or not finite.
    pub fn from_matrix(a: Array2<f64>, seed: u64) -> Result<Self> {
        if a.is_empty() {
            return Err(Error::param("A", "empty", "the sensing matrix is empty"));
        }
        hyperprox_core::diff::check_batch("Problem", "A", a.nrows(), a.ncols(), a.view())?;
        let (_, s, _) = f64::thin_svd(a.view())?;
        let lipschitz = s.iter().fold(0.0f64, |m, v| m.max(*v)).powi(2);
        Ok(Self {
            a: Arc::new(a),
            lipschitz,
            seed,
        })
    }

    /// M.
    pub fn m(&self) -> usize {
        self.a.nrows()
    }

    /// N.
    pub fn n(&self) -> usize {
        self.a.ncols()
    }

    /// `Z = (AAᵀ)⁻¹ A` (M × N): `Zᵀ = Aᵀ(AAᵀ)⁻¹` is the pseudo-inverse TISTA uses, and the
    /// columns of ALISTA's analytic weight are `z_i / (a_iᵀ z_i)`.
    pub fn gram_inverse_times_a(&self) -> Result<Array2<f64>> {
        let a = self.a.view();
        let g = hyperprox_core::diff::matmul(a, a.t());
        let l = f64::cholesky_lower(g.view()).map_err(|_| {
            Error::param(
                "A",
                "rank deficient",
                "A Aᵀ must be invertible (full row rank, M ≤ N) for TISTA and ALISTA",
            )
        })?;
        let mut z = self.a.as_ref().clone();
        for c in z.columns_mut() {
            hyperprox_core::linalg::cholesky_solve_in_place(l.view(), c);
        }
        Ok(z)
    }

    /// ALISTA's analytic weight `W = argmin ‖WᵀA‖_F² s.t. w_iᵀa_i = 1` (M × N). The problem
    /// separates by columns, `min w_iᵀ(AAᵀ)w_i s.t. a_iᵀw_i = 1`, whose solution is
    /// `w_i = (AAᵀ)⁻¹a_i / (a_iᵀ(AAᵀ)⁻¹a_i)`.
    pub fn alista_weight(&self) -> Result<Array2<f64>> {
        let mut z = self.gram_inverse_times_a()?;
        for (mut zc, ac) in z.columns_mut().into_iter().zip(self.a.columns()) {
            let d = zc.dot(&ac);
            zc /= d;
        }
        Ok(z)
    }
}

/// The signal and noise distribution.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Signal {
    /// Probability that an entry is nonzero.
    pub p: f64,
    /// Signal-to-noise ratio in dB (`None`: noiseless).
    pub snr_db: Option<f64>,
}

impl Default for Signal {
    fn default() -> Self {
        Self {
            p: 0.1,
            snr_db: Some(40.0),
        }
    }
}

impl Signal {
    /// `Err` unless `p ∈ (0, 1]` and the SNR is finite.
    pub fn check(&self) -> Result<()> {
        if !(self.p > 0.0 && self.p <= 1.0) {
            return Err(Error::param(
                "p",
                self.p,
                "the sparsity p must lie in (0, 1]",
            ));
        }
        if let Some(s) = self.snr_db {
            if !s.is_finite() {
                return Err(Error::param("snr", s, "the SNR (dB) must be finite"));
            }
        }
        Ok(())
    }

    /// Noise variance `σ² = p·N/M · 10^(−SNR/10)` (0 when noiseless).
    pub fn noise_var(&self, problem: &Problem) -> f64 {
        match self.snr_db {
            Some(s) => self.p * problem.n() as f64 / problem.m() as f64 * 10f64.powf(-s / 10.0),
            None => 0.0,
        }
    }
}

/// A batch of ground truths `x` (B × N) and measurements `y` (B × M).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// True signals, one per row.
    pub x: Array2<f64>,
    /// Measurements, one per row.
    pub y: Array2<f64>,
}

impl Batch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.x.nrows() == 0
    }

    /// A batch from user data; `Err` on mismatched shapes, an empty batch or non-finite entries.
    pub fn new(problem: &Problem, x: Array2<f64>, y: Array2<f64>) -> Result<Self> {
        if x.nrows() == 0 {
            return Err(Error::param("batch", 0, "the data set is empty"));
        }
        hyperprox_core::diff::check_batch("Batch", "x", x.nrows(), problem.n(), x.view())?;
        hyperprox_core::diff::check_batch("Batch", "y", x.nrows(), problem.m(), y.view())?;
        Ok(Self { x, y })
    }
}

/// `Err` unless `1 ≤ b` and a batch of `b` signals of length N has at most [`MAX_ENTRIES`]
/// numbers (checked before a batch is drawn; `what` names the option in the message).
pub fn check_batch_size(problem: &Problem, b: usize, what: &str) -> Result<()> {
    if b == 0 {
        return Err(Error::param(what, 0, "must be at least 1"));
    }
    if b.checked_mul(problem.n()).is_none_or(|e| e > MAX_ENTRIES) {
        return Err(Error::param(
            what,
            b,
            format!(
                "{b} signals of length {} exceed {MAX_ENTRIES} numbers; use a smaller size",
                problem.n()
            ),
        ));
    }
    Ok(())
}

/// Draws `b` samples from `signal` with the RNG seeded by `seed`.
pub fn sample(problem: &Problem, signal: &Signal, b: usize, seed: u64) -> Result<Batch> {
    signal.check()?;
    check_batch_size(problem, b, "batch size")?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = problem.n();
    let x = Array2::from_shape_simple_fn((b, n), || {
        if rng.random::<f64>() < signal.p {
            StandardNormal.sample(&mut rng)
        } else {
            0.0
        }
    });
    let mut y = hyperprox_core::diff::matmul(x.view(), problem.a.t());
    let sigma = signal.noise_var(problem).sqrt();
    if sigma > 0.0 {
        y.mapv_inplace(|v| {
            let e: f64 = StandardNormal.sample(&mut rng);
            v + sigma * e
        });
    }
    Ok(Batch { x, y })
}

/// NMSE in dB, `10 log₁₀(Σ‖x̂ − x‖² / Σ‖x‖²)` over the batch (the TISTA metric).
pub fn nmse_db(xhat: ArrayView2<'_, f64>, x: ArrayView2<'_, f64>) -> f64 {
    let num: f64 = (&xhat - &x).iter().map(|v| v * v).sum();
    let den: f64 = x.iter().map(|v| v * v).sum();
    10.0 * (num / den.max(f64::MIN_POSITIVE)).log10()
}

//! Field-of-experts denoising (MAID paper §4.3): filters, their weights and smoothings learned.
//!
//! For `N` noisy images `yᵢ`, `F` filters `k_j` of size `s × s`, `a_j = e^{θ₀ + w_j}`,
//! `ν_j = e^{s_j}`, `φ_ν(t) = √(t² + ν²)` and `K_j` the *valid* correlation with `k_j` (the
//! core [`ValidCorrelation2d`], its adjoint and its gradient in the taps):
//!
//! ```text
//! h(x, θ) = (1/N) Σᵢ [ ½‖xᵢ − yᵢ‖² + Σ_j a_j Σ_p φ_{ν_j}((K_j xᵢ)_p) ],
//! g(x)    = (1/N) Σᵢ ½‖xᵢ − xᵢ,true‖².
//! ```
//!
//! `θ = (θ₀, w₁..w_F, s₁..s_F, taps of k₁..k_F)`: with the paper's `F = 48`, `s = 7` that is
//! `1 + 48 + 48 + 48·49 = 2449` hyperparameters. Paper setting: Kodak images 6..25 at
//! 256×256, `σ = 0.1`; initialization `θ₀ = w_j = −3`, `s_j = −3.5`, zero-mean Xavier-normal
//! filters.
//!
//! Deviation from the reference code: the correlation is *valid* (no padding; the reference
//! pads by reflection), so `‖K_j‖ ≤ ‖k_j‖₁` holds exactly and the constants below are proven:
//! `μ = 1/N`, `L = (1 + Σ_j a_j‖k_j‖₁²/ν_j)/N`, `L_g = 1/N`,
//! `L_{H⁻¹} ≤ L_H/μ²` with `L_H ≤ (1/N) Σ_j a_j ‖k_j‖₁² ‖k_j‖₂ c₃/ν_j²`. `‖J‖` and `L_J` are
//! estimated online, so the error bound is reported as *estimated* (as in the reference code,
//! which estimates all constants).

use crate::composed::{
    Charbonnier, ComposedProblem, Correlation, DataFit, Smoothing, Term, UpperLoss, Weight,
};
use crate::problem::{BilevelProblem, Constants};
use hyperprox_core::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayView1};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::sync::Arc;

/// The field-of-experts bilevel problem (see the module docs).
#[derive(Clone)]
pub struct FieldOfExperts {
    y: Array1<f64>,
    x_true: Array1<f64>,
    n_img: usize,
    h: usize,
    w: usize,
    nf: usize,
    ks: usize,
    /// The composed form: one term `e^{θ₀+w_j}·Σ_p φ_{ν_j}((k_j ⋆ x)_p)` per filter.
    inner: ComposedProblem,
}

impl std::fmt::Debug for FieldOfExperts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldOfExperts")
            .field("images", &(self.n_img, self.h, self.w))
            .field("filters", &(self.nf, self.ks))
            .finish()
    }
}

impl FieldOfExperts {
    /// From clean and noisy images (equal sizes, larger than the filters), with `n_filters`
    /// filters of size `ks × ks` initialized from `seed`.
    pub fn new(
        clean: &[Array2<f64>],
        noisy: &[Array2<f64>],
        n_filters: usize,
        ks: usize,
        seed: u64,
    ) -> Result<Self> {
        // At most 2²⁴ filter taps (the paper: 48·49 = 2352), checked before allocating θ.
        let taps = n_filters.checked_mul(ks).and_then(|t| t.checked_mul(ks));
        if n_filters == 0 || ks == 0 || taps.is_none_or(|t| t > 1 << 24) {
            return Err(Error::param(
                "filters",
                format!("{n_filters} of size {ks}"),
                "need at least one filter of size ≥ 1 and at most 2²⁴ filter taps (the paper: 48 filters 7×7)",
            ));
        }
        let (h, w) = crate::data::check_image_pairs("field of experts", clean, noisy, ks + 1)?;
        let mut theta0 = Array1::zeros(1 + 2 * n_filters + n_filters * ks * ks);
        theta0[0] = -3.0;
        for j in 0..n_filters {
            theta0[1 + j] = -3.0;
            theta0[1 + n_filters + j] = -3.5;
        }
        // Zero-mean Xavier-normal filters: std √(2/(fan_in + fan_out)), fan_in = s², fan_out = F s².
        let k2 = ks * ks;
        let std = (2.0 / (k2 + n_filters * k2) as f64).sqrt();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for j in 0..n_filters {
            let base = 1 + 2 * n_filters + j * k2;
            let mut tap: Vec<f64> = (0..k2)
                .map(|_| {
                    let e: f64 = StandardNormal.sample(&mut rng);
                    std * e
                })
                .collect();
            let m = tap.iter().sum::<f64>() / k2 as f64;
            tap.iter_mut().for_each(|t| *t -= m);
            for (i, t) in tap.into_iter().enumerate() {
                theta0[base + i] = t;
            }
        }
        let f = n_filters;
        let mut terms = Vec::with_capacity(f);
        for j in 0..f {
            let base = 1 + 2 * f + j * k2;
            let init = Array2::from_shape_vec(
                (ks, ks),
                theta0.as_slice().unwrap_or(&[])[base..base + k2].to_vec(),
            )
            .map_err(|e| Error::param("filter", e, "internal shape"))?;
            terms.push(Term::new(
                Weight::Exp {
                    indices: vec![0, 1 + j],
                    scale: 1.0,
                },
                Arc::new(Charbonnier::new(Smoothing::Learned(1.0))?),
                vec![1 + f + j],
                Arc::new(Correlation::learned(h, w, init)?),
                (base..base + k2).collect(),
            ));
        }
        let inner = ComposedProblem::new(
            DataFit::denoising(noisy)?,
            terms,
            UpperLoss::squared_error(clean),
            theta0,
        )?
        .with_name("field-of-experts");
        Ok(Self {
            y: crate::data::stack(noisy),
            x_true: crate::data::stack(clean),
            n_img: clean.len(),
            h,
            w,
            nf: n_filters,
            ks,
            inner,
        })
    }

    /// This problem as one rank's shard of a problem on `total` images: the averages `1/N` of
    /// the lower level and of the loss use `total` (see [`crate::sharded`]).
    pub fn with_normalization(mut self, total: usize) -> Result<Self> {
        self.inner = self.inner.with_normalization(total)?;
        Ok(self)
    }

    /// `(images, height, width, filters, filter size)`.
    pub fn shape(&self) -> (usize, usize, usize, usize, usize) {
        (self.n_img, self.h, self.w, self.nf, self.ks)
    }

    /// The noisy images, stacked.
    pub fn noisy(&self) -> &Array1<f64> {
        &self.y
    }

    /// The clean images, stacked.
    pub fn clean(&self) -> &Array1<f64> {
        &self.x_true
    }

    /// The composed form ([`crate::composed`]) the problem evaluates.
    pub fn composed(&self) -> &ComposedProblem {
        &self.inner
    }
}

impl BilevelProblem for FieldOfExperts {
    fn name(&self) -> &str {
        "field-of-experts"
    }
    fn dim_x(&self) -> usize {
        self.y.len()
    }
    fn dim_theta(&self) -> usize {
        1 + 2 * self.nf + self.nf * self.ks * self.ks
    }
    fn x_start(&self) -> Array1<f64> {
        self.y.clone()
    }
    fn theta_start(&self) -> Array1<f64> {
        self.inner.theta_start()
    }
    crate::composed::forward_products_to!(inner);
    /// The parts' constants: `‖J‖` and `L_J` are estimated online (learned filters).
    fn constants(&self, x: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<Constants> {
        self.inner.constants(x, theta)
    }
}

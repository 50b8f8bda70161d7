//! Learning the weight and smoothing of total-variation denoising (MAID paper §4.2).
//!
//! For `N` noisy images `yᵢ = xᵢ,true + σ·noise` stacked into `x`, with `λ = e^{θ₁}`,
//! `ν = e^{θ₂}` and `φ_ν(t) = √(t² + ν²)`:
//!
//! ```text
//! h(x, θ) = (1/N) Σᵢ [ ½‖xᵢ − yᵢ‖² + λ Σ_p φ_ν((D_h xᵢ)_p) + λ Σ_p φ_ν((D_v xᵢ)_p) ],
//! g(x)    = (1/N) Σᵢ ½‖xᵢ − xᵢ,true‖²,
//! ```
//!
//! with forward differences `D_h`, `D_v` without boundary padding (as in the paper's code):
//! the lower level is the data term plus the core [`SmoothedTv`] (anisotropic,
//! [`TvBoundary::Interior`], one batch of `N` images), whose fused kernels also give the
//! derivatives in `log λ` and `log ν`.
//! Paper setting: the 25 Kodak images at 96×96, `σ = 0.1`, `θ₀ = (−5, −5)`.
//!
//! **Constants (all proven, so the error bound is certified).** `μ = 1/N` (data term; the TV
//! part is convex), `L = (1 + 8λ/ν)/N` (`φ_ν'' ≤ 1/ν`, `‖D‖² ≤ 8`), `L_g = 1/N`, `‖J(x̃)‖`
//! exactly from its two columns, `L_J ≤ √2·8λ/(Nν)` (both `φ_ν'` and `∂_{θ₂}φ_ν'` are
//! `1/ν`-Lipschitz), `L_{H⁻¹} ≤ L_H/μ²` with `L_H ≤ 8√2·c₃·λ/(Nν²)`, `c₃ = max|φ₁'''| =
//! 1.5/1.25^{5/2}` (each row of `D` has two entries ±1, so `‖Dv‖_∞ ≤ √2‖v‖`).
//!
//! **The reference code's convention** ([`TvDenoising::with_reference_convention`], to compare
//! with the paper's figures; TV_denoising.py of github.com/MohammadSadeghSalehi/MAID at
//! 6986372): the TV term carries a factor ½ (`h = (1/N) Σᵢ [½‖xᵢ − yᵢ‖² + ½λ TV_ν(xᵢ)]`), and the
//! constants are those of the un-averaged problem, `μ = 1`, `L = 1 + √8·λ/ν`, `L_g = 1`, while
//! `h` and `g` stay averaged over the `N` images. The lower-level stop `‖∇ₓh‖/μ ≤ ε` then
//! measures `‖∇ₓh‖` itself, `N` times less than the certified `‖x̃ − x̂‖` bound, and the
//! FISTA step `1/L` is about `N` times shorter than `1/L_true`. `‖J‖`, `L_J` and `L_{H⁻¹}` are
//! left to the oracle's online estimates, as in the reference code. The error bound is then
//! *not* certified (every record says so).

use crate::data::{fill, slice};
use crate::problem::{BilevelProblem, Constant, Constants};
use hyperprox_core::error::Result;
use hyperprox_core::func::{SmoothedTv, TvBoundary, TvKind};
use ndarray::{Array1, Array2, ArrayView1, ArrayViewMut1};
use rayon::prelude::*;

/// `max |d³/dt³ √(t² + 1)| = 1.5/1.25^{5/2}`, attained at `t = 1/2`.
pub(crate) fn c3() -> f64 {
    1.5 / 1.25f64.powf(2.5)
}

/// The TV-denoising bilevel problem (see the module docs).
#[derive(Clone, Debug)]
pub struct TvDenoising {
    y: Array1<f64>,
    x_true: Array1<f64>,
    n_img: usize,
    h: usize,
    w: usize,
    theta0: Array1<f64>,
    reference: bool,
}

impl TvDenoising {
    /// From clean and noisy images (equal sizes, at least 2×2, finite).
    pub fn new(clean: &[Array2<f64>], noisy: &[Array2<f64>]) -> Result<Self> {
        let (h, w) = crate::data::check_image_pairs("TV denoising", clean, noisy, 2)?;
        Ok(Self {
            y: crate::data::stack(noisy),
            x_true: crate::data::stack(clean),
            n_img: clean.len(),
            h,
            w,
            theta0: ndarray::array![-5.0, -5.0],
            reference: false,
        })
    }

    /// The MAID reference code's convention (see the module docs): TV weight `½λ`, constants
    /// `μ = 1`, `L = 1 + √8·λ/ν`, `L_g = 1`, the others estimated online. Not certified.
    pub fn with_reference_convention(mut self) -> Self {
        self.reference = true;
        self
    }

    /// The hyperparameters that give the same lower-level problem in this library's convention:
    /// the reference convention's `θ₁` weighs TV by `½e^θ₁`, which is `θ₁ + ln ½` here (so
    /// `e^{θ₁}` of the result is the TV weight). For the certified convention, `θ` itself.
    pub fn certified_theta(&self, theta: ArrayView1<'_, f64>) -> Array1<f64> {
        let mut t = theta.to_owned();
        if self.reference {
            t[0] -= 2f64.ln();
        }
        t
    }

    /// The same lower-level problem in this library's convention (certified constants) and the
    /// hyperparameters that give it ([`certified_theta`](Self::certified_theta)).
    pub fn certified_equivalent(&self, theta: ArrayView1<'_, f64>) -> (Self, Array1<f64>) {
        let p = Self {
            reference: false,
            ..self.clone()
        };
        (p, self.certified_theta(theta))
    }

    /// Whether the reference code's convention is used.
    pub fn is_reference_convention(&self) -> bool {
        self.reference
    }

    /// Image height and width, and the number of images.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.n_img, self.h, self.w)
    }

    /// The noisy images, stacked.
    pub fn noisy(&self) -> &Array1<f64> {
        &self.y
    }

    /// The clean images, stacked.
    pub fn clean(&self) -> &Array1<f64> {
        &self.x_true
    }

    fn params(theta: ArrayView1<'_, f64>) -> (f64, f64) {
        (theta[0].exp(), theta[1].exp())
    }

    /// The weight of `TV_ν` in `h`: `λ`, or `½λ` in the reference convention (its derivative
    /// in `θ₁ = log λ` is the weight itself either way).
    fn tv_weight(&self, theta: ArrayView1<'_, f64>) -> f64 {
        let lam = theta[0].exp();
        if self.reference {
            0.5 * lam
        } else {
            lam
        }
    }

    /// `λ·TV_ν` of one image at `θ` (anisotropic, interior differences).
    fn tv(&self, theta: ArrayView1<'_, f64>) -> Result<SmoothedTv<f64>> {
        let (lam, nu) = (self.tv_weight(theta), theta[1].exp());
        Ok(
            SmoothedTv::new(self.h, self.w, lam, nu, TvKind::Anisotropic)?
                .with_boundary(TvBoundary::Interior),
        )
    }

    fn npix(&self) -> usize {
        self.h * self.w
    }

    /// The two columns of `J(x) = ∂²_{xθ}h` (for `‖J‖`).
    fn j_columns(
        &self,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
    ) -> Result<(Array1<f64>, Array1<f64>)> {
        let tv = self.tv(theta)?;
        let inv_n = 1.0 / self.n_img as f64;
        let n = self.npix();
        let xc = x.as_standard_layout();
        let xs = slice(&xc)?;
        let mut c1 = vec![0.0; xs.len()];
        let mut c2 = vec![0.0; xs.len()];
        c1.par_chunks_mut(n)
            .zip(c2.par_chunks_mut(n))
            .zip(xs.par_chunks(n))
            .for_each(|((o1, o2), xi)| tv.image_log_param_gradients_add(o1, o2, xi, inv_n));
        Ok((Array1::from(c1), Array1::from(c2)))
    }
}

impl BilevelProblem for TvDenoising {
    fn name(&self) -> &str {
        "tv-denoising"
    }
    fn dim_x(&self) -> usize {
        self.y.len()
    }
    fn dim_theta(&self) -> usize {
        2
    }
    fn x_start(&self) -> Array1<f64> {
        Array1::zeros(self.y.len())
    }
    fn theta_start(&self) -> Array1<f64> {
        self.theta0.clone()
    }
    fn lower_value(&self, x: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<f64> {
        let tv = self.tv(theta)?;
        let n = self.npix();
        let xc = x.as_standard_layout();
        let xs = slice(&xc)?;
        let ys = slice(&self.y)?;
        let total: f64 = xs
            .par_chunks(n)
            .zip(ys.par_chunks(n))
            .map(|(xi, yi)| {
                let data = xi.iter().zip(yi).map(|(a, b)| (a - b) * (a - b));
                0.5 * data.sum::<f64>() + tv.image_value(xi)
            })
            .sum();
        Ok(total / self.n_img as f64)
    }
    fn lower_grad_into(
        &self,
        out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let tv = self.tv(theta)?;
        let inv_n = 1.0 / self.n_img as f64;
        let n = self.npix();
        let xc = x.as_standard_layout();
        let xs = slice(&xc)?;
        let ys = slice(&self.y)?;
        fill(out, |os| {
            os.par_chunks_mut(n)
                .zip(xs.par_chunks(n).zip(ys.par_chunks(n)))
                .for_each(|(o, (xi, yi))| {
                    for ((oi, a), b) in o.iter_mut().zip(xi).zip(yi) {
                        *oi = (a - b) * inv_n;
                    }
                    tv.image_gradient_add(o, xi, inv_n);
                });
        });
        Ok(())
    }
    fn lower_hvp_into(
        &self,
        out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
        v: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let tv = self.tv(theta)?;
        let inv_n = 1.0 / self.n_img as f64;
        let n = self.npix();
        let xc = x.as_standard_layout();
        let xs = slice(&xc)?;
        let vc = v.as_standard_layout();
        let vs = slice(&vc)?;
        fill(out, |os| {
            os.par_chunks_mut(n)
                .zip(xs.par_chunks(n).zip(vs.par_chunks(n)))
                .for_each(|(o, (xi, vi))| {
                    for (oi, a) in o.iter_mut().zip(vi) {
                        *oi = a * inv_n;
                    }
                    tv.image_hvp_add(o, xi, vi, inv_n);
                });
        });
        Ok(())
    }
    fn cross_jt_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
        q: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let tv = self.tv(theta)?;
        let n = self.npix();
        let xc = x.as_standard_layout();
        let qc = q.as_standard_layout();
        let (j1, j2) = slice(&xc)?
            .par_chunks(n)
            .zip(slice(&qc)?.par_chunks(n))
            .map(|(xi, qi)| tv.image_log_param_dots(xi, qi))
            .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        let inv_n = 1.0 / self.n_img as f64;
        out[0] = j1 * inv_n;
        out[1] = j2 * inv_n;
        Ok(())
    }
    fn upper_value(&self, x: ArrayView1<'_, f64>) -> Result<f64> {
        Ok(crate::data::upper_mse_value(x, &self.x_true, self.n_img))
    }
    fn upper_grad_into(&self, out: ArrayViewMut1<'_, f64>, x: ArrayView1<'_, f64>) -> Result<()> {
        crate::data::upper_mse_grad_into(out, x, &self.x_true, self.n_img);
        Ok(())
    }
    /// Convex: `g = (1/N)·½‖x − x_true‖²`.
    fn upper_convex(&self) -> bool {
        true
    }
    fn constants(&self, x: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<Constants> {
        let (lam, nu) = Self::params(theta);
        if self.reference {
            return Ok(Constants {
                mu: 1.0,
                lipschitz: 1.0 + 8f64.sqrt() * lam / nu,
                l_g: 1.0,
                j_norm: Constant::Unknown,
                l_j: Constant::Unknown,
                l_hinv: Constant::Unknown,
            });
        }
        let nn = self.n_img as f64;
        let mu = 1.0 / nn;
        let (c1, c2) = self.j_columns(x, theta)?;
        let (a, b, c) = (c1.dot(&c1), c1.dot(&c2), c2.dot(&c2));
        // Largest eigenvalue of the 2×2 Gram matrix [[a, b], [b, c]].
        let lmax = 0.5 * (a + c) + (0.25 * (a - c) * (a - c) + b * b).sqrt();
        let l_h = 8.0 * std::f64::consts::SQRT_2 * c3() * lam / (nn * nu * nu);
        Ok(Constants {
            mu,
            lipschitz: (1.0 + 8.0 * lam / nu) / nn,
            l_g: 1.0 / nn,
            j_norm: Constant::Known(lmax.sqrt()),
            l_j: Constant::Known(std::f64::consts::SQRT_2 * 8.0 * lam / (nn * nu)),
            l_hinv: Constant::Known(l_h / (mu * mu)),
        })
    }
}

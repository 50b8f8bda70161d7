//! Learning the weight and smoothing of total-variation denoising (MAID paper §4.2).
//!
//! For `N` noisy images `yᵢ` with clean counterparts `cᵢ`, stacked into `x`, `λ = e^{θ₁}` and
//! `ν = e^{θ₂}` (or `ν` fixed and `θ = (θ₁)`, [`TvModel::fixed_smoothing`]):
//!
//! ```text
//! h(x, θ) = (1/N) Σᵢ [ ½‖xᵢ − yᵢ‖² + λ·TV_ν(xᵢ) ],      g(x) = (1/N) Σᵢ ½‖xᵢ − cᵢ‖²,
//! anisotropic (the paper's): TV_ν(x) = Σ_p φ_ν((D_h x)_p) + φ_ν((D_v x)_p),  φ_ν(t) = √(t² + ν²),
//! isotropic:                 TV_ν(x) = Σ_p √((D_h x)_p² + (D_v x)_p² + ν²),
//! ```
//!
//! with forward differences `D_h`, `D_v`: the paper's anisotropic form sums the differences
//! between two pixels of the image ([`TvBoundary::Interior`], as in its code); the isotropic
//! form uses the Neumann boundary ([`TvBoundary::Neumann`]: the image is continued by its
//! border, so a difference leaving it is 0). Both give the same `∇ₓh` (a difference that is
//! always 0 only adds the constant `λν` to `h`), hence the same `x̂(θ)` and hypergradient.
//! The lower level is the data term plus the core [`SmoothedTv`] over one batch of `N` images,
//! whose fused kernels also give the derivatives in `log λ` and `log ν`.
//! Paper setting: the 25 Kodak images at 96×96, `σ = 0.1`, `θ₀ = (−5, −5)`, anisotropic.
//!
//! **Constants (all proven, so the error bound is certified).** `μ = 1/N` (data term; the TV
//! part is convex), `L = (1 + 8λ/ν)/N` (the Hessian of `φ_ν` — of `g ↦ √(|g|² + ν²)` on `ℝ²`
//! for isotropic TV, eigenvalues `1/s` and `ν²/s³` — is at most `1/ν`; `‖D‖² ≤ 8`),
//! `L_g = 1/N`, `‖J(x̃)‖` exactly from its columns, `L_J ≤ √2·8λ/(Nν)` (both `ψ(g) = g/s` and
//! `∂_{log ν}ψ = −ν²g/s³` are `1/ν`-Lipschitz: the Jacobian of the latter has eigenvalues
//! `ν²/s³` and `ν²(ν² − 2|g|²)/s⁵`; with `ν` fixed, one column and `8λ/(Nν)`),
//! `L_{H⁻¹} ≤ L_H/μ²` with
//! * anisotropic: `L_H ≤ 8√2·c₃·λ/(Nν²)`, `c₃ = max|φ₁'''| = 1.5/1.25^{5/2}` (each row of `D`
//!   has two entries ±1, so `‖Dv‖_∞ ≤ √2‖v‖`);
//! * isotropic: `L_H ≤ 8√3·c₃ᵢ·λ/(Nν²)`: `g_p` depends on three pixels through the form
//!   `[[1, −1, 0], [−1, 2, −1], [0, −1, 1]]` of largest eigenvalue 3, so
//!   `|g_p − g'_p| ≤ √3‖x − x'‖`; and the derivative of the Hessian of `φ₁(g) = √(1 + |g|²)`
//!   along a unit `u`, written with `g = r·e₁`, `u = (cos a, sin a)`, `s² = 1 + r²`, is
//!   `−(r/s³)·[[3cos a/s², sin a], [sin a, cos a]]`, of Frobenius norm at most
//!   `(r/s³)·√(2 + 9/s⁴) = √(2r²/s⁶ + 9r²/s¹⁰) ≤ √(8/27 + 2304/3125) = c₃ᵢ ≈ 1.0167`
//!   (each term maximized separately, at `r² = ½` and `r² = ¼`).
//!
//! **The reference code's convention** ([`TvDenoising::with_reference_convention`], to compare
//! with the paper's figures; TV_denoising.py of github.com/MohammadSadeghSalehi/MAID at
//! 6986372): the TV term carries a factor ½ (`h = (1/N) Σᵢ [½‖xᵢ − yᵢ‖² + ½λ TV_ν(xᵢ)]`), and the
//! constants are those of the un-averaged problem, `μ = 1`, `L = 1 + √8·λ/ν`, `L_g = 1`, while
//! `h` and `g` stay averaged over the `N` images. The lower-level stop `‖∇ₓh‖/μ ≤ ε` then
//! measures `‖∇ₓh‖` itself, `N` times less than the certified `‖x̃ − x̂‖` bound, and the
//! FISTA step `1/L` is about `N` times shorter than `1/L_true`. `‖J‖`, `L_J` and `L_{H⁻¹}` are
//! left to the oracle's online estimates, as in the reference code. The error bound is then
//! *not* certified (every record says so). Only for the paper's model (anisotropic, `ν` learned).

use crate::data::{fill, slice};
use crate::problem::{BilevelProblem, Constant, Constants};
use hyperprox_core::error::{Error, Result};
use hyperprox_core::func::{SmoothedTv, TvBoundary, TvKind};
use ndarray::{Array1, Array2, ArrayView1, ArrayViewMut1};
use rayon::prelude::*;

/// `max |d³/dt³ √(t² + 1)| = 1.5/1.25^{5/2}`, attained at `t = 1/2`.
pub(crate) fn c3() -> f64 {
    1.5 / 1.25f64.powf(2.5)
}

/// `c₃ᵢ = √(8/27 + 2304/3125)`: a bound on the Lipschitz constant (spectral norm) of the
/// Hessian of `g ↦ √(1 + |g|²)` on `ℝ²` (see the module docs).
pub fn c3_isotropic() -> f64 {
    (8.0 / 27.0 + 2304.0 / 3125.0f64).sqrt()
}

/// The lower-level model of [`TvDenoising`]: which TV, and whether `ν` is learned.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TvModel {
    /// Anisotropic (the paper's, interior differences) or isotropic (Neumann boundary).
    pub kind: TvKind,
    /// `Some(ν)`: the smoothing is fixed at `ν` and `θ = (log λ)`; `None`: `θ = (log λ, log ν)`.
    pub fixed_smoothing: Option<f64>,
}

impl Default for TvModel {
    /// The paper's: anisotropic, `λ` and `ν` learned.
    fn default() -> Self {
        Self {
            kind: TvKind::Anisotropic,
            fixed_smoothing: None,
        }
    }
}

impl TvModel {
    /// The differences summed: interior ones for anisotropic TV (the paper's), Neumann for
    /// isotropic TV (the same `∇ₓh` either way, see the module docs).
    pub fn boundary(&self) -> TvBoundary {
        match self.kind {
            TvKind::Anisotropic => TvBoundary::Interior,
            TvKind::Isotropic => TvBoundary::Neumann,
        }
    }

    /// The number of hyperparameters: 1 with `ν` fixed, else 2.
    pub fn dim_theta(&self) -> usize {
        if self.fixed_smoothing.is_some() {
            1
        } else {
            2
        }
    }

    /// `θ` for the weight `λ` and smoothing `ν` (`ν` is dropped when fixed).
    pub fn theta(&self, lambda: f64, nu: f64) -> Array1<f64> {
        match self.fixed_smoothing {
            Some(_) => ndarray::array![lambda.ln()],
            None => ndarray::array![lambda.ln(), nu.ln()],
        }
    }

    /// `(λ, ν)` at `θ`.
    pub fn params(&self, theta: ArrayView1<'_, f64>) -> (f64, f64) {
        let nu = self.fixed_smoothing.unwrap_or_else(|| theta[1].exp());
        (theta[0].exp(), nu)
    }
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
    model: TvModel,
}

impl TvDenoising {
    /// From clean and noisy images (equal sizes, at least 2×2, finite), with the paper's model
    /// and start `θ₀ = (−5, −5)`.
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
            model: TvModel::default(),
        })
    }

    /// Another lower-level model (isotropic TV, a fixed smoothing `ν`: finite and `> 0`). The
    /// start becomes `λ₀ = e^{−5}` and, where learned, the `ν₀` of the current start. Not with
    /// the reference convention.
    pub fn with_model(mut self, model: TvModel) -> Result<Self> {
        if self.reference && model != TvModel::default() {
            return Err(Error::param(
                "TV model",
                format!("{model:?}"),
                "the reference code's convention is the paper's model only (anisotropic, ν learned)",
            ));
        }
        if let Some(nu) = model.fixed_smoothing {
            if !(nu > 0.0 && nu.is_finite()) {
                return Err(Error::param("smoothing", nu, "must be finite and > 0"));
            }
        }
        let (lam, nu) = self.model.params(self.theta0.view());
        self.model = model;
        self.theta0 = model.theta(lam, nu);
        Ok(self)
    }

    /// Starts the outer method at the weight `λ₀` and (if learned) the smoothing `ν₀`, both
    /// finite and `> 0`.
    pub fn with_start(mut self, lambda0: f64, nu0: f64) -> Result<Self> {
        for (name, v) in [("lambda0", lambda0), ("smoothing", nu0)] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(Error::param(name, v, "must be finite and > 0"));
            }
        }
        self.theta0 = self.model.theta(lambda0, nu0);
        Ok(self)
    }

    /// The lower-level model.
    pub fn model(&self) -> TvModel {
        self.model
    }

    /// `(λ, ν)` at `θ` (the TV weight is `½λ` in the reference convention).
    pub fn params(&self, theta: ArrayView1<'_, f64>) -> (f64, f64) {
        self.model.params(theta)
    }

    /// The MAID reference code's convention (see the module docs): TV weight `½λ`, constants
    /// `μ = 1`, `L = 1 + √8·λ/ν`, `L_g = 1`, the others estimated online. Not certified. Only
    /// for the paper's model.
    pub fn with_reference_convention(mut self) -> Result<Self> {
        if self.model != TvModel::default() {
            return Err(Error::param(
                "TV model",
                format!("{:?}", self.model),
                "the reference code's convention is the paper's model only (anisotropic, ν learned)",
            ));
        }
        self.reference = true;
        Ok(self)
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

    /// `λ·TV_ν` of one image at `θ`.
    fn tv(&self, theta: ArrayView1<'_, f64>) -> Result<SmoothedTv<f64>> {
        let (lam, nu) = (self.tv_weight(theta), self.params(theta).1);
        Ok(SmoothedTv::new(self.h, self.w, lam, nu, self.model.kind)?
            .with_boundary(self.model.boundary()))
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
        self.model.dim_theta()
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
        // Per image in parallel, summed in image order (the same bits for any thread count).
        let parts: Vec<f64> = xs
            .par_chunks(n)
            .zip(ys.par_chunks(n))
            .map(|(xi, yi)| {
                let data = xi.iter().zip(yi).map(|(a, b)| (a - b) * (a - b));
                0.5 * data.sum::<f64>() + tv.image_value(xi)
            })
            .collect();
        let total: f64 = parts.iter().sum();
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
        let parts: Vec<(f64, f64)> = slice(&xc)?
            .par_chunks(n)
            .zip(slice(&qc)?.par_chunks(n))
            .map(|(xi, qi)| tv.image_log_param_dots(xi, qi))
            .collect();
        let (j1, j2) = parts.iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        let inv_n = 1.0 / self.n_img as f64;
        out[0] = j1 * inv_n;
        if self.model.fixed_smoothing.is_none() {
            out[1] = j2 * inv_n;
        }
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
        let (lam, nu) = self.params(theta);
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
        let (j_norm, l_j) = if self.model.fixed_smoothing.is_some() {
            (c1.dot(&c1).sqrt(), 8.0 * lam / (nn * nu))
        } else {
            let (a, b, c) = (c1.dot(&c1), c1.dot(&c2), c2.dot(&c2));
            // Largest eigenvalue of the 2×2 Gram matrix [[a, b], [b, c]].
            let lmax = 0.5 * (a + c) + (0.25 * (a - c) * (a - c) + b * b).sqrt();
            (
                lmax.sqrt(),
                std::f64::consts::SQRT_2 * 8.0 * lam / (nn * nu),
            )
        };
        let l_h = match self.model.kind {
            TvKind::Anisotropic => 8.0 * std::f64::consts::SQRT_2 * c3(),
            TvKind::Isotropic => 8.0 * 3f64.sqrt() * c3_isotropic(),
        } * lam
            / (nn * nu * nu);
        Ok(Constants {
            mu,
            lipschitz: (1.0 + 8.0 * lam / nu) / nn,
            l_g: 1.0 / nn,
            j_norm: Constant::Known(j_norm),
            l_j: Constant::Known(l_j),
            l_hinv: Constant::Known(l_h / (mu * mu)),
        })
    }
}

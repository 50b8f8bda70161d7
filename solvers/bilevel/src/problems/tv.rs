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
//! The problem is an instance of the composed form ([`crate::composed`]): the data fit
//! `½‖xᵢ − yᵢ‖²`, one term `λ·R(Dx)` with `R` the Charbonnier penalty (anisotropic, on the
//! interior [`Differences2d`]) or the isotropic TV penalty (on the Neumann differences), and the
//! squared error as upper level; its derivatives and constants come from those parts.
//! Paper setting: the 25 Kodak images at 96×96, `σ = 0.1`, `θ₀ = (−5, −5)`, anisotropic.
//!
//! **Constants (all proven, so the error bound is certified), as the parts give them.** `μ = 1/N` (data term; the TV
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

use crate::composed::{
    Charbonnier, ComposedProblem, DataFit, DiffBoundary, Differences2d, IsotropicTvPenalty,
    PartOperator, Smoothing, Term, UpperLoss, Weight,
};
use crate::problem::{BilevelProblem, Constant, Constants};
use hyperprox_core::error::{Error, Result};
use hyperprox_core::func::{TvBoundary, TvKind};
use ndarray::{Array1, Array2, ArrayView1};
use std::sync::Arc;

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
#[derive(Clone)]
pub struct TvDenoising {
    y: Array1<f64>,
    x_true: Array1<f64>,
    n_img: usize,
    h: usize,
    w: usize,
    theta0: Array1<f64>,
    reference: bool,
    model: TvModel,
    /// The `N` of the averages where this is a shard (0: the images held).
    normalization: usize,
    /// The composed form of the current model and convention.
    inner: ComposedProblem,
}

impl std::fmt::Debug for TvDenoising {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TvDenoising")
            .field("images", &(self.n_img, self.h, self.w))
            .field("model", &self.model)
            .field("reference", &self.reference)
            .finish()
    }
}

/// The composed lower level `(1/N) Σᵢ [½‖xᵢ − yᵢ‖² + c·e^{θ₁}·TV_ν(xᵢ)]` (`c = ½` in the
/// reference convention, else 1) with the squared error to `clean` as upper level.
fn composed(
    clean: &[Array2<f64>],
    noisy: &[Array2<f64>],
    model: TvModel,
    reference: bool,
) -> Result<ComposedProblem> {
    let (h, w) = noisy[0].dim();
    let smoothing = match model.fixed_smoothing {
        Some(nu) => Smoothing::Fixed(nu),
        None => Smoothing::Learned(1.0),
    };
    let (op, reg): (
        Arc<dyn PartOperator>,
        Arc<dyn crate::composed::ParametricSmooth>,
    ) = match model.kind {
        TvKind::Anisotropic => (
            Arc::new(Differences2d::new(h, w, DiffBoundary::Interior)?),
            Arc::new(Charbonnier::new(smoothing)?),
        ),
        TvKind::Isotropic => (
            Arc::new(Differences2d::new(h, w, DiffBoundary::Neumann)?),
            Arc::new(IsotropicTvPenalty::new(smoothing)?),
        ),
    };
    let weight = Weight::Exp {
        indices: vec![0],
        scale: if reference { 0.5 } else { 1.0 },
    };
    let reg_idx = if model.fixed_smoothing.is_some() {
        vec![]
    } else {
        vec![1]
    };
    let term = Term::new(weight, reg, reg_idx, op, vec![]);
    let theta0 = Array1::zeros(model.dim_theta());
    let n = noisy.len() * h * w;
    ComposedProblem::new(
        DataFit::denoising(noisy)?,
        vec![term],
        UpperLoss::squared_error(clean),
        theta0,
    )?
    .with_name("tv-denoising")
    .with_x_start(Array1::zeros(n))
}

impl TvDenoising {
    /// From clean and noisy images (equal sizes, at least 2×2, finite), with the paper's model
    /// and start `θ₀ = (−5, −5)`.
    pub fn new(clean: &[Array2<f64>], noisy: &[Array2<f64>]) -> Result<Self> {
        let (h, w) = crate::data::check_image_pairs("TV denoising", clean, noisy, 2)?;
        let model = TvModel::default();
        Ok(Self {
            y: crate::data::stack(noisy),
            x_true: crate::data::stack(clean),
            n_img: clean.len(),
            h,
            w,
            theta0: ndarray::array![-5.0, -5.0],
            reference: false,
            model,
            normalization: 0,
            inner: composed(clean, noisy, model, false)?,
        })
    }

    fn images(&self) -> (Vec<Array2<f64>>, Vec<Array2<f64>>) {
        let split = |v: &Array1<f64>| crate::data::unstack(v, self.h, self.w);
        (split(&self.x_true), split(&self.y))
    }

    fn rebuild(mut self) -> Result<Self> {
        let (clean, noisy) = self.images();
        self.inner = self.normalized(composed(&clean, &noisy, self.model, self.reference)?)?;
        Ok(self)
    }

    fn normalized(&self, inner: ComposedProblem) -> Result<ComposedProblem> {
        if self.normalization == 0 {
            Ok(inner)
        } else {
            inner.with_normalization(self.normalization)
        }
    }

    /// This problem as one rank's shard of a problem on `total` images: the averages `1/N` of
    /// the lower level and of the loss use `total` (see [`crate::sharded`]).
    pub fn with_normalization(mut self, total: usize) -> Result<Self> {
        self.inner = self.inner.with_normalization(total)?;
        self.normalization = total;
        Ok(self)
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
        self.rebuild()
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
        self.rebuild()
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
        let mut p = self.clone();
        if p.reference {
            p.reference = false;
            let (clean, noisy) = p.images();
            // The same images and model that built `self`: cannot fail.
            if let Ok(inner) =
                composed(&clean, &noisy, p.model, false).and_then(|c| p.normalized(c))
            {
                p.inner = inner;
            }
        }
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

    /// The composed form ([`crate::composed`]) the problem evaluates.
    pub fn composed(&self) -> &ComposedProblem {
        &self.inner
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
    crate::composed::forward_products_to!(inner);
    /// The parts' constants; in the reference convention the reference code's (`μ = 1`,
    /// `L = 1 + √8·λ/ν`, `L_g = 1`, the others estimated online).
    fn constants(&self, x: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<Constants> {
        if self.reference {
            let (lam, nu) = self.params(theta);
            return Ok(Constants {
                mu: 1.0,
                lipschitz: 1.0 + 8f64.sqrt() * lam / nu,
                l_g: 1.0,
                j_norm: Constant::Unknown,
                l_j: Constant::Unknown,
                l_hinv: Constant::Unknown,
            });
        }
        self.inner.constants(x, theta)
    }
}

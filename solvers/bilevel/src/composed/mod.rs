//! Bilevel problems from parts: tune the weights (and the parts' own parameters) of a
//! variational model without writing derivatives.
//!
//! The lower level is, over `N` samples `xᵢ ∈ ℝⁿ` stacked into `x`,
//!
//! ```text
//! h(x, θ) = (1/N) Σᵢ [ fᵢ(xᵢ) + Σ_t w_t(θ)·R_t(K_t(θ) xᵢ; θ) ],
//! ```
//!
//! with `fᵢ` a [`DataFit`] (least squares through an operator, weighted least squares,
//! logistic), `R_t` a [`ParametricSmooth`] regularizer (Charbonnier/anisotropic TV, isotropic
//! TV, squared ℓ2, the smoothed generalized Gaussian, any core smooth function such as Huber),
//! `K_t` a [`PartOperator`] (identity, image differences, a learned or fixed filter, any core
//! operator), and weights `w_t = c·exp(Σ_{k∈S_t} θ_k)`, `c·softplus(θ_k)` or fixed. The upper
//! level is an [`UpperLoss`]. The oracle, MAID and HOAG get `∇ₓh`, `H·v` and
//! `Jᵀq = ∇_θ⟨∇ₓh, q⟩` from the parts: for one term and `z = Kx`,
//!
//! ```text
//! ∇ₓ(w R(Kx))      = w Kᵀ∇R(z),          H v = w Kᵀ∇²R(z) K v,
//! ∂_{θ_k}⟨·, q⟩     = w'(θ)·⟨∇R(z), Kq⟩                                  (weight),
//!                   = w·∂_{p}⟨∇R(z; p), Kq⟩                               (R's own p),
//!                   = w·[∇_p⟨K(p)x, ∇²R(z)Kq⟩ + ∇_p⟨K(p)q, ∇R(z)⟩]        (K's own p).
//! ```
//!
//! **Constants from the parts** (the MAID paper's error bound, Salehi et al. 2025):
//! `μ = (μ_f + Σ_t w_t μ_{R_t} σ_min(K_t)²)/N`; `L = (L_f + Σ_t w_t L_{R_t}‖K_t‖²)/N`; `L_g`
//! from the upper loss; `‖J(x)‖` exactly, as the largest singular value of its columns, when
//! `θ` has at most 64 entries and every part gives its columns; `L_J ≤ (Σ_k L_k²)^{1/2}` with
//! `L_k` the sum over the parts that depend on `θ_k` of `|w'|L_R‖K‖²/N` (a weight) or
//! `w‖K‖²·Lip(∂_{p}∇R)/N` (R's parameter); `L_{H⁻¹} ≤ L_H/μ²` with
//! `L_H = (L_{H,f} + Σ_t w_t T_t‖K_t‖²κ_t)/N` ([`ParametricSmooth::hessian_lipschitz`],
//! [`PartOperator::group_norm`]). Learned operators give no `‖J‖`, `L_J` (estimated online).
//! The error bound is certified only when every bound used is proven ([`Bound`]); otherwise
//! `‖J‖`, `L_J` and `L_{H⁻¹}` are all left to the oracle's online estimates and every record
//! says *estimated*.

mod losses;
mod operators;
mod parts;
pub mod spec;

pub use losses::{DataFit, UpperClosure, UpperLoss};
pub use operators::{Correlation, DiffBoundary, Differences2d, Identity, Linear, PartOperator};
pub use parts::{
    c3, c3_isotropic, Bound, Charbonnier, CoreSmooth, GeneralizedGaussian, Grouping,
    IsotropicTvPenalty, ParametricSmooth, Smoothing, SquaredL2,
};

use crate::data::{fill, slice};
use crate::problem::{BilevelProblem, Constant, Constants};
use hyperprox_core::error::{Error, Result};
use ndarray::{Array1, ArrayView1, ArrayViewMut1};
use rayon::prelude::*;
use std::sync::Arc;

/// Forwards the products and the upper level of a [`BilevelProblem`] to a field holding a
/// [`ComposedProblem`] (the TV and FoE problems are instances).
macro_rules! forward_products_to {
    ($field:ident) => {
        fn lower_value(
            &self,
            x: ndarray::ArrayView1<'_, f64>,
            theta: ndarray::ArrayView1<'_, f64>,
        ) -> hyperprox_core::Result<f64> {
            self.$field.lower_value(x, theta)
        }
        fn lower_grad_into(
            &self,
            out: ndarray::ArrayViewMut1<'_, f64>,
            x: ndarray::ArrayView1<'_, f64>,
            theta: ndarray::ArrayView1<'_, f64>,
        ) -> hyperprox_core::Result<()> {
            self.$field.lower_grad_into(out, x, theta)
        }
        fn lower_hvp_into(
            &self,
            out: ndarray::ArrayViewMut1<'_, f64>,
            x: ndarray::ArrayView1<'_, f64>,
            theta: ndarray::ArrayView1<'_, f64>,
            v: ndarray::ArrayView1<'_, f64>,
        ) -> hyperprox_core::Result<()> {
            self.$field.lower_hvp_into(out, x, theta, v)
        }
        fn cross_jt_into(
            &self,
            out: ndarray::ArrayViewMut1<'_, f64>,
            x: ndarray::ArrayView1<'_, f64>,
            theta: ndarray::ArrayView1<'_, f64>,
            q: ndarray::ArrayView1<'_, f64>,
        ) -> hyperprox_core::Result<()> {
            self.$field.cross_jt_into(out, x, theta, q)
        }
        fn upper_value(&self, x: ndarray::ArrayView1<'_, f64>) -> hyperprox_core::Result<f64> {
            self.$field.upper_value(x)
        }
        fn upper_grad_into(
            &self,
            out: ndarray::ArrayViewMut1<'_, f64>,
            x: ndarray::ArrayView1<'_, f64>,
        ) -> hyperprox_core::Result<()> {
            self.$field.upper_grad_into(out, x)
        }
        fn upper_convex(&self) -> bool {
            self.$field.upper_convex()
        }
        fn j_gram(
            &self,
            x: ndarray::ArrayView1<'_, f64>,
            theta: ndarray::ArrayView1<'_, f64>,
        ) -> hyperprox_core::Result<Option<Vec<f64>>> {
            self.$field.j_gram(x, theta)
        }
    };
}
pub(crate) use forward_products_to;

/// At most this many hyperparameters for the exact `‖J‖` (from the Gram matrix of `J`'s
/// columns); above it `‖J‖` is estimated online.
pub const J_EXACT_MAX_DIM: usize = 64;

/// How a weight depends on `θ`.
#[derive(Clone, Debug, PartialEq)]
pub enum Weight {
    /// `w = c·exp(Σ_{k∈S} θ_k)`.
    Exp {
        /// The indices `S` into `θ`.
        indices: Vec<usize>,
        /// The factor `c > 0`.
        scale: f64,
    },
    /// `w = c·log(1 + e^{θ_k})`.
    Softplus {
        /// The index `k` into `θ`.
        index: usize,
        /// The factor `c > 0`.
        scale: f64,
    },
    /// `w = c·σ(θ_k) = c/(1 + e^{−θ_k}) ∈ (0, c)`: a weight kept below `c`, for a weakly
    /// convex regularizer (`μ_R < 0`) that keeps `h` strongly convex only for `w < c`.
    Bounded {
        /// The index `k` into `θ`.
        index: usize,
        /// The bound `c > 0`.
        scale: f64,
    },
    /// A fixed `w = c ≥ 0`.
    Fixed(f64),
}

impl Weight {
    fn indices(&self) -> &[usize] {
        match self {
            Weight::Exp { indices, .. } => indices,
            Weight::Softplus { index, .. } | Weight::Bounded { index, .. } => {
                std::slice::from_ref(index)
            }
            Weight::Fixed(_) => &[],
        }
    }
    /// `w(θ)`.
    pub fn value(&self, theta: &[f64]) -> f64 {
        match self {
            Weight::Exp { indices, scale } => {
                scale * indices.iter().map(|&k| theta[k]).sum::<f64>().exp()
            }
            Weight::Softplus { index, scale } => {
                let t = theta[*index];
                scale * (t.max(0.0) + (-t.abs()).exp().ln_1p())
            }
            Weight::Bounded { index, scale } => scale / (1.0 + (-theta[*index]).exp()),
            Weight::Fixed(c) => *c,
        }
    }
    /// `∂w/∂θ_k` for every `k` of [`indices`](Self::indices) (the same for all).
    fn derivative(&self, theta: &[f64]) -> f64 {
        match self {
            Weight::Exp { .. } => self.value(theta),
            Weight::Softplus { index, scale } => scale / (1.0 + (-theta[*index]).exp()),
            Weight::Bounded { index, scale } => {
                let s = 1.0 / (1.0 + (-theta[*index]).exp());
                scale * s * (1.0 - s)
            }
            Weight::Fixed(_) => 0.0,
        }
    }
    fn check(&self) -> Result<()> {
        let (c, positive) = match self {
            Weight::Exp { scale, .. }
            | Weight::Softplus { scale, .. }
            | Weight::Bounded { scale, .. } => (*scale, true),
            Weight::Fixed(c) => (*c, false),
        };
        if c.is_finite() && (c > 0.0 || (!positive && c >= 0.0)) {
            Ok(())
        } else {
            Err(Error::param(
                "weight",
                c,
                "a weight's factor must be finite, > 0 when learned and ≥ 0 when fixed",
            ))
        }
    }
}

/// How the builder starts a weight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightInit {
    /// Learned as `w = e^θ`, starting at `w₀ > 0`.
    Exp(f64),
    /// Learned as `w = softplus(θ)`, starting at `w₀ > 0`.
    Softplus(f64),
    /// Learned as `w = c·σ(θ)` (below `c`), starting at `0 < w₀ < c`: `Bounded(w₀, c)`.
    Bounded(f64, f64),
    /// Fixed at `w ≥ 0`.
    Fixed(f64),
}

/// One term `w(θ)·R(K(θ)x; θ)`: the weight, the regularizer and the indices of its own
/// parameters in `θ`, the operator and the indices of its parameters.
#[derive(Clone)]
pub struct Term {
    weight: Weight,
    reg: Arc<dyn ParametricSmooth>,
    reg_idx: Vec<usize>,
    op: Arc<dyn PartOperator>,
    op_idx: Vec<usize>,
}

impl Term {
    /// A term with an explicit layout in `θ` (see [`ComposedProblem::builder`] for the
    /// automatic one).
    pub fn new(
        weight: Weight,
        reg: Arc<dyn ParametricSmooth>,
        reg_idx: Vec<usize>,
        op: Arc<dyn PartOperator>,
        op_idx: Vec<usize>,
    ) -> Self {
        Self {
            weight,
            reg,
            reg_idx,
            op,
            op_idx,
        }
    }
    /// `"regularizer ∘ operator"`.
    pub fn describe(&self) -> String {
        format!("{} ∘ {}", self.reg.name(), self.op.name())
    }
}

/// A term's parameters at one `θ`.
struct At<'a> {
    t: &'a Term,
    w: f64,
    dw: f64,
    rp: Vec<f64>,
    kp: Vec<f64>,
}

impl At<'_> {
    fn m(&self) -> usize {
        self.t.op.shape().0
    }
    /// `z = Kx`.
    fn k(&self, x: &[f64]) -> Vec<f64> {
        let mut z = vec![0.0; self.m()];
        self.t.op.apply(&self.kp, x, &mut z);
        z
    }
    /// `∇R(z)`.
    fn grad(&self, z: &[f64]) -> Vec<f64> {
        let mut g = vec![0.0; z.len()];
        self.t.reg.grad_add(z, &self.rp, 1.0, &mut g);
        g
    }
    /// `∇²R(z) v`.
    fn hvp(&self, z: &[f64], v: &[f64]) -> Vec<f64> {
        let mut g = vec![0.0; z.len()];
        self.t.reg.hvp_add(z, &self.rp, v, 1.0, &mut g);
        g
    }
}

/// A bilevel problem assembled from parts (see the module docs).
#[derive(Clone)]
pub struct ComposedProblem {
    name: String,
    data: DataFit,
    terms: Vec<Term>,
    upper: UpperLoss,
    theta0: Array1<f64>,
    labels: Vec<String>,
    x0: Array1<f64>,
    /// The `N` of the `1/N` averages: the samples here, or all ranks' samples for a shard
    /// ([`ComposedProblem::with_normalization`]).
    normalization: usize,
}

/// Builds a [`ComposedProblem`], laying `θ` out term by term: the weight (if learned), the
/// regularizer's parameters, the operator's parameters.
pub struct ComposedBuilder {
    data: DataFit,
    upper: UpperLoss,
    terms: Vec<Term>,
    theta0: Vec<f64>,
    labels: Vec<String>,
    error: Option<Error>,
}

impl ComposedBuilder {
    /// Adds the term `w·R(Kx)`.
    pub fn term(
        mut self,
        weight: WeightInit,
        reg: impl ParametricSmooth + 'static,
        op: impl PartOperator + 'static,
    ) -> Self {
        let t = self.terms.len();
        let what = format!("{} ∘ {}", reg.name(), op.name());
        let next = |s: &mut Self, v: f64, label: String| {
            s.theta0.push(v);
            s.labels.push(label);
            s.theta0.len() - 1
        };
        let weight = match weight {
            WeightInit::Exp(w0) | WeightInit::Softplus(w0) if !(w0 > 0.0 && w0.is_finite()) => {
                self.error.get_or_insert(Error::param(
                    "initial weight",
                    w0,
                    "a learned weight starts at a finite value > 0",
                ));
                Weight::Fixed(0.0)
            }
            WeightInit::Exp(w0) => Weight::Exp {
                indices: vec![next(
                    &mut self,
                    w0.ln(),
                    format!("term {t} ({what}): log weight"),
                )],
                scale: 1.0,
            },
            WeightInit::Softplus(w0) => Weight::Softplus {
                index: next(
                    &mut self,
                    w0.exp_m1().ln(),
                    format!("term {t} ({what}): softplus⁻¹ weight"),
                ),
                scale: 1.0,
            },
            WeightInit::Bounded(w0, c) if !(w0 > 0.0 && w0 < c && c.is_finite()) => {
                self.error.get_or_insert(Error::param(
                    "initial weight",
                    format!("{w0} below {c}"),
                    "a bounded weight starts strictly between 0 and its bound",
                ));
                Weight::Fixed(0.0)
            }
            WeightInit::Bounded(w0, c) => Weight::Bounded {
                index: next(
                    &mut self,
                    (w0 / (c - w0)).ln(),
                    format!("term {t} ({what}): logit of weight/{c}"),
                ),
                scale: c,
            },
            WeightInit::Fixed(c) => Weight::Fixed(c),
        };
        let mut params = |init: Vec<f64>, whose: &str| -> Vec<usize> {
            (init.into_iter().enumerate())
                .map(|(j, v)| {
                    next(
                        &mut self,
                        v,
                        format!("term {t} ({what}): {whose} parameter {j}"),
                    )
                })
                .collect()
        };
        let reg_idx = params(reg.initial_params(), "regularizer");
        let op_idx = params(op.initial_params(), "operator");
        self.terms.push(Term::new(
            weight,
            Arc::new(reg),
            reg_idx,
            Arc::new(op),
            op_idx,
        ));
        self
    }

    /// The problem (checked: see [`ComposedProblem::new`]).
    pub fn build(self) -> Result<ComposedProblem> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut p = ComposedProblem::new(self.data, self.terms, self.upper, self.theta0.into())?;
        p.labels = self.labels;
        Ok(p)
    }
}

impl ComposedProblem {
    /// Starts a problem with data fit `data` (which fixes the samples) and upper level `upper`.
    pub fn builder(data: DataFit, upper: UpperLoss) -> ComposedBuilder {
        ComposedBuilder {
            data,
            upper,
            terms: Vec::new(),
            theta0: Vec::new(),
            labels: Vec::new(),
            error: None,
        }
    }

    /// A problem with an explicit layout of `θ` (length of `theta0`). Checked: the operators
    /// act on the samples' dimension, parameter counts and indices match, a pairwise
    /// regularizer gets an even length, `θ₀` is finite, the upper level fits the samples, and
    /// `h(·, θ₀)` is strongly convex (else: add a [`SquaredL2`] term on the [`Identity`]).
    pub fn new(
        data: DataFit,
        terms: Vec<Term>,
        upper: UpperLoss,
        theta0: Array1<f64>,
    ) -> Result<Self> {
        let n = data.dim();
        let dim = theta0.len();
        hyperprox_core::linalg::check_finite("theta0", theta0.view())?;
        for (t, term) in terms.iter().enumerate() {
            let ctx = format!("term {t} ({})", term.describe());
            term.weight.check()?;
            let (m, tn) = term.op.shape();
            if tn != n {
                return Err(Error::shape(&ctx, "operator domain", n, tn));
            }
            if let Some(d) = term.reg.dim() {
                if d != m {
                    return Err(Error::shape(
                        &ctx,
                        "regularizer input (operator outputs)",
                        d,
                        m,
                    ));
                }
            }
            if term.reg.grouping() == Grouping::Pairs && m % 2 != 0 {
                return Err(Error::param(
                    &ctx,
                    m,
                    "a pairwise regularizer needs an operator with an even number of outputs (the Neumann gradient)",
                ));
            }
            for (what, len, want) in [
                (
                    "regularizer parameters",
                    term.reg_idx.len(),
                    term.reg.n_params(),
                ),
                ("operator parameters", term.op_idx.len(), term.op.n_params()),
            ] {
                if len != want {
                    return Err(Error::shape(&ctx, what, want, len));
                }
            }
            let all = term
                .weight
                .indices()
                .iter()
                .chain(&term.reg_idx)
                .chain(&term.op_idx);
            if let Some(k) = all.copied().find(|&k| k >= dim) {
                return Err(Error::param(
                    &ctx,
                    k,
                    format!("indexes θ beyond its length {dim}"),
                ));
            }
        }
        upper.check(data.samples(), n)?;
        let x0 = if data.observation(0).len() == n {
            (0..data.samples())
                .flat_map(|i| data.observation(i).to_vec())
                .collect()
        } else {
            Array1::zeros(n * data.samples())
        };
        let p = Self {
            name: "composed".into(),
            labels: (0..dim).map(|k| format!("θ[{k}]")).collect(),
            data,
            terms,
            upper,
            theta0,
            x0,
            normalization: 0,
        };
        let mu = p.mu(p.theta0.as_slice().unwrap_or(&[]));
        if !(mu > 0.0) {
            return Err(Error::param(
                "lower level",
                "not strongly convex",
                "the data fit is not strongly convex and no term makes it so: add a squared-ℓ2 term on the identity (e.g. with a small fixed weight)",
            ));
        }
        Ok(p)
    }

    /// Renames the problem (reports).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Starts the lower level at `x0` (length `N·n`, finite). The default is the
    /// observations when they have the samples' size, zeros otherwise.
    pub fn with_x_start(mut self, x0: Array1<f64>) -> Result<Self> {
        hyperprox_core::linalg::check_len(&self.name, "x0", self.dim_x(), x0.len())?;
        hyperprox_core::linalg::check_finite("x0", x0.view())?;
        self.x0 = x0;
        Ok(self)
    }

    /// Starts the outer method at `θ₀` (its length, finite).
    pub fn with_theta_start(mut self, theta0: Array1<f64>) -> Result<Self> {
        hyperprox_core::linalg::check_len(&self.name, "theta0", self.theta0.len(), theta0.len())?;
        hyperprox_core::linalg::check_finite("theta0", theta0.view())?;
        self.theta0 = theta0;
        Ok(self)
    }

    pub(crate) fn set_labels(&mut self, labels: Vec<String>) {
        self.labels = labels;
    }

    /// What each entry of `θ` is.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The terms' weights at `θ`.
    pub fn weights(&self, theta: ArrayView1<'_, f64>) -> Vec<f64> {
        let t = theta.to_vec();
        self.terms
            .iter()
            .map(|term| term.weight.value(&t))
            .collect()
    }

    /// The terms, described.
    pub fn describe(&self) -> Vec<String> {
        self.terms.iter().map(Term::describe).collect()
    }

    /// `(N, n)`: samples and the dimension of one.
    pub fn samples(&self) -> (usize, usize) {
        (self.data.samples(), self.data.dim())
    }

    /// The upper loss.
    pub fn upper(&self) -> &UpperLoss {
        &self.upper
    }

    fn scale(&self) -> f64 {
        1.0 / self.normalization_count() as f64
    }

    /// The `N` of the averages `(1/N) Σᵢ`.
    pub fn normalization_count(&self) -> usize {
        if self.normalization == 0 {
            self.data.samples()
        } else {
            self.normalization
        }
    }

    /// Averages over `total` samples instead of the samples held here: this problem is then
    /// one shard of a data-parallel problem whose `h` and `g` are the sums of the shards'
    /// (see [`crate::sharded`]). The lower level's `1/N` and the upper loss's `1/N` both use
    /// `total`. `Err` if `total` is below the samples held.
    pub fn with_normalization(mut self, total: usize) -> Result<Self> {
        let here = self.data.samples();
        if total < here {
            return Err(Error::param(
                "normalization",
                total,
                format!("the shard holds {here} samples: the total must be at least that"),
            ));
        }
        self.upper
            .rescale(self.normalization_count() as f64 / total as f64)?;
        self.normalization = total;
        Ok(self)
    }

    fn at(&self, theta: &[f64]) -> Vec<At<'_>> {
        self.terms
            .iter()
            .map(|t| At {
                t,
                w: t.weight.value(theta),
                dw: t.weight.derivative(theta),
                rp: t.reg_idx.iter().map(|&k| theta[k]).collect(),
                kp: t.op_idx.iter().map(|&k| theta[k]).collect(),
            })
            .collect()
    }

    fn mu(&self, theta: &[f64]) -> f64 {
        let mut mu = self.data.mu();
        for a in self.at(theta) {
            let mu_r = a.t.reg.strong_convexity(&a.rp);
            // A weakly convex part (μ_R < 0) costs up to w·|μ_R|·‖K‖².
            let k2 = if mu_r < 0.0 {
                a.t.op.norm(&a.kp).value.powi(2)
            } else {
                a.t.op.min_singular().powi(2)
            };
            mu += a.w * mu_r * k2;
        }
        mu * self.scale()
    }

    /// `x` and `other` as contiguous vectors (copies only when strided).
    fn contiguous<'a>(
        x: ArrayView1<'a, f64>,
        other: Option<ArrayView1<'a, f64>>,
    ) -> (
        ndarray::CowArray<'a, f64, ndarray::Ix1>,
        ndarray::CowArray<'a, f64, ndarray::Ix1>,
    ) {
        let cow = |v: ArrayView1<'a, f64>| {
            if v.is_standard_layout() {
                ndarray::CowArray::from(v)
            } else {
                ndarray::CowArray::from(v.to_owned())
            }
        };
        let o = other.map_or_else(|| ndarray::CowArray::from(Array1::zeros(0)), cow);
        (cow(x), o)
    }

    /// `f(i, xᵢ, other_i)` per sample in parallel, in sample order.
    fn per_sample<R: Send>(
        &self,
        x: ArrayView1<'_, f64>,
        other: Option<ArrayView1<'_, f64>>,
        f: impl Fn(usize, &[f64], &[f64]) -> R + Sync,
    ) -> Result<Vec<R>> {
        let n = self.data.dim();
        let (xc, oc) = Self::contiguous(x, other);
        let (xs, os) = (slice(&xc)?, slice(&oc)?);
        Ok(xs
            .par_chunks(n)
            .enumerate()
            .map(|(i, xi)| f(i, xi, os.get(i * n..(i + 1) * n).unwrap_or(&[])))
            .collect())
    }

    /// Per sample in parallel into the sample's chunk of `out`.
    fn for_samples(
        &self,
        out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        other: Option<ArrayView1<'_, f64>>,
        f: impl Fn(usize, &[f64], &[f64], &mut [f64]) + Sync,
    ) -> Result<()> {
        let n = self.data.dim();
        let (xc, oc) = Self::contiguous(x, other);
        let (xs, os) = (slice(&xc)?, slice(&oc)?);
        fill(out, |out| {
            out.par_chunks_mut(n)
                .zip(xs.par_chunks(n))
                .enumerate()
                .for_each(|(i, (o, xi))| {
                    o.fill(0.0);
                    f(i, xi, os.get(i * n..(i + 1) * n).unwrap_or(&[]), o)
                });
        });
        Ok(())
    }

    /// The columns of `J` (`dim_θ` vectors of length `N·n`), when every part gives them.
    fn j_columns(&self, x: ArrayView1<'_, f64>, theta: &[f64]) -> Result<Option<Vec<Vec<f64>>>> {
        let dim = theta.len();
        let at = self.at(theta);
        let columns_known = at.iter().all(|a| {
            a.kp.is_empty()
                && (0..a.rp.len()).all(|j| a.t.reg.param_column_lipschitz(&a.rp, j).is_some())
        });
        if !columns_known || dim > J_EXACT_MAX_DIM || dim * x.len() > 50_000_000 {
            return Ok(None);
        }
        let s = self.scale();
        let blocks = self.per_sample(x, None, |_, xi, _| {
            let mut cols = vec![vec![0.0; xi.len()]; dim];
            for a in &at {
                let z = a.k(xi);
                let g = a.grad(&z);
                for &k in a.t.weight.indices() {
                    a.t.op.adjoint_add(&a.kp, &g, s * a.dw, &mut cols[k]);
                }
                for (j, &k) in a.t.reg_idx.iter().enumerate() {
                    let mut c = vec![0.0; z.len()];
                    a.t.reg.param_column_add(&z, &a.rp, j, 1.0, &mut c);
                    a.t.op.adjoint_add(&a.kp, &c, s * a.w, &mut cols[k]);
                }
            }
            cols
        })?;
        Ok(Some(
            (0..dim)
                .map(|k| blocks.iter().flat_map(|b| b[k].iter().copied()).collect())
                .collect(),
        ))
    }
}

/// The largest eigenvalue of a symmetric `k × k` matrix (row-major): closed form for `k ≤ 2`,
/// cyclic Jacobi rotations otherwise.
pub(crate) fn sym_max_eigenvalue(mut g: Vec<f64>, k: usize) -> f64 {
    match k {
        0 => 0.0,
        1 => g[0],
        2 => {
            let (a, b, c) = (g[0], g[1], g[3]);
            0.5 * (a + c) + (0.25 * (a - c) * (a - c) + b * b).sqrt()
        }
        _ => {
            for _sweep in 0..100 {
                let off: f64 = (0..k)
                    .flat_map(|i| (0..k).filter(move |&j| j != i).map(move |j| (i, j)))
                    .map(|(i, j)| g[i * k + j] * g[i * k + j])
                    .sum();
                let diag: f64 = (0..k).map(|i| g[i * k + i] * g[i * k + i]).sum();
                if off <= 1e-30 * diag.max(f64::MIN_POSITIVE) {
                    break;
                }
                for p in 0..k {
                    for q in p + 1..k {
                        let apq = g[p * k + q];
                        if apq == 0.0 {
                            continue;
                        }
                        let tau = (g[q * k + q] - g[p * k + p]) / (2.0 * apq);
                        let t = tau.signum() / (tau.abs() + (1.0 + tau * tau).sqrt());
                        let t = if tau == 0.0 { 1.0 } else { t };
                        let c = 1.0 / (1.0 + t * t).sqrt();
                        let s = t * c;
                        for r in 0..k {
                            let (grp, grq) = (g[r * k + p], g[r * k + q]);
                            g[r * k + p] = c * grp - s * grq;
                            g[r * k + q] = s * grp + c * grq;
                        }
                        for r in 0..k {
                            let (gpr, gqr) = (g[p * k + r], g[q * k + r]);
                            g[p * k + r] = c * gpr - s * gqr;
                            g[q * k + r] = s * gpr + c * gqr;
                        }
                    }
                }
            }
            (0..k)
                .map(|i| g[i * k + i])
                .fold(f64::NEG_INFINITY, f64::max)
        }
    }
}

impl ComposedProblem {
    /// `JᵀJ` (row-major) from `J`'s columns, where they are known (see [`J_EXACT_MAX_DIM`]).
    fn gram(&self, x: ArrayView1<'_, f64>, th: &[f64]) -> Result<Option<Vec<f64>>> {
        Ok(self.j_columns(x, th)?.map(|cols| {
            let k = cols.len();
            let mut g = vec![0.0; k * k];
            for i in 0..k {
                for j in i..k {
                    let v: f64 = cols[i].iter().zip(&cols[j]).map(|(a, b)| a * b).sum();
                    g[i * k + j] = v;
                    g[j * k + i] = v;
                }
            }
            g
        }))
    }
}

impl BilevelProblem for ComposedProblem {
    fn name(&self) -> &str {
        &self.name
    }
    fn dim_x(&self) -> usize {
        self.data.samples() * self.data.dim()
    }
    fn dim_theta(&self) -> usize {
        self.theta0.len()
    }
    fn x_start(&self) -> Array1<f64> {
        self.x0.clone()
    }
    fn theta_start(&self) -> Array1<f64> {
        self.theta0.clone()
    }
    fn lower_value(&self, x: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<f64> {
        let at = self.at(&theta.to_vec());
        let parts = self.per_sample(x, None, |i, xi, _| {
            let mut v = self.data.value(i, xi);
            for a in &at {
                v += a.w * a.t.reg.value(&a.k(xi), &a.rp);
            }
            v
        })?;
        Ok(parts.iter().sum::<f64>() * self.scale())
    }
    fn lower_grad_into(
        &self,
        out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let at = self.at(&theta.to_vec());
        let s = self.scale();
        self.for_samples(out, x, None, |i, xi, _, o| {
            self.data.grad_add(i, xi, s, o);
            for a in &at {
                let g = a.grad(&a.k(xi));
                a.t.op.adjoint_add(&a.kp, &g, s * a.w, o);
            }
        })
    }
    fn lower_hvp_into(
        &self,
        out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
        v: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let at = self.at(&theta.to_vec());
        let s = self.scale();
        self.for_samples(out, x, Some(v), |i, xi, vi, o| {
            self.data.hvp_add(i, xi, vi, s, o);
            for a in &at {
                let hv = a.hvp(&a.k(xi), &a.k(vi));
                a.t.op.adjoint_add(&a.kp, &hv, s * a.w, o);
            }
        })
    }
    fn cross_jt_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
        q: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let at = self.at(&theta.to_vec());
        let s = self.scale();
        let dim = self.dim_theta();
        let parts = self.per_sample(x, Some(q), |_, xi, qi| {
            let mut r = vec![0.0; dim];
            for a in &at {
                let z = a.k(xi);
                let kq = a.k(qi);
                let g = a.grad(&z);
                if !a.t.weight.indices().is_empty() {
                    let d: f64 = g.iter().zip(&kq).map(|(u, v)| u * v).sum();
                    for &k in a.t.weight.indices() {
                        r[k] += s * a.dw * d;
                    }
                }
                if !a.rp.is_empty() {
                    let mut tmp = vec![0.0; a.rp.len()];
                    a.t.reg.cross_add(&z, &a.rp, &kq, s * a.w, &mut tmp);
                    for (&k, v) in a.t.reg_idx.iter().zip(tmp) {
                        r[k] += v;
                    }
                }
                if !a.kp.is_empty() {
                    let hkq = a.hvp(&z, &kq);
                    let mut tmp = vec![0.0; a.kp.len()];
                    a.t.op.param_vjp_add(&a.kp, xi, &hkq, s * a.w, &mut tmp);
                    a.t.op.param_vjp_add(&a.kp, qi, &g, s * a.w, &mut tmp);
                    for (&k, v) in a.t.op_idx.iter().zip(tmp) {
                        r[k] += v;
                    }
                }
            }
            r
        })?;
        out.fill(0.0);
        for r in parts {
            out.iter_mut().zip(r).for_each(|(o, v)| *o += v);
        }
        Ok(())
    }
    fn upper_value(&self, x: ArrayView1<'_, f64>) -> Result<f64> {
        self.upper.value(x, self.data.dim())
    }
    fn upper_grad_into(&self, out: ArrayViewMut1<'_, f64>, x: ArrayView1<'_, f64>) -> Result<()> {
        self.upper.grad_into(out, x, self.data.dim())
    }
    fn upper_convex(&self) -> bool {
        self.upper.convex()
    }
    fn j_gram(
        &self,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
    ) -> Result<Option<Vec<f64>>> {
        let th = theta.to_vec();
        self.gram(x, &th)
    }
    fn constants(&self, x: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<Constants> {
        let th = theta.to_vec();
        let at = self.at(&th);
        let s = self.scale();
        let mu = self.mu(&th);
        if !(mu > 0.0) {
            return Err(Error::param(
                "lower level",
                format!("μ = {mu:e} at θ = {th:?}"),
                "a weakly convex part outweighs the strongly convex ones here: bound its weight (WeightInit::Bounded)",
            ));
        }
        let mut l = self.data.lipschitz();
        let mut l_h = Some(self.data.hessian_lipschitz());
        let mut l_k = vec![Some(Bound::proven(0.0)); th.len()];
        for a in &at {
            let kn = a.t.op.norm(&a.kp);
            let k2 = kn.times(kn);
            let lr = a.t.reg.curvature(&a.rp);
            l = l.plus(lr.times(k2).scaled(a.w));
            l_h = match (l_h, a.t.reg.hessian_lipschitz(&a.rp)) {
                (Some(acc), Some(t)) => {
                    let kappa = a.t.op.group_norm(&a.kp, a.t.reg.grouping());
                    Some(acc.plus(t.times(k2).times(kappa).scaled(a.w)))
                }
                _ => None,
            };
            for &k in a.t.weight.indices() {
                l_k[k] = l_k[k].map(|b| b.plus(lr.times(k2).scaled(a.dw.abs())));
            }
            for (j, &k) in a.t.reg_idx.iter().enumerate() {
                let c = a.t.reg.param_column_lipschitz(&a.rp, j);
                l_k[k] = l_k[k].zip(c).map(|(b, c)| b.plus(c.times(k2).scaled(a.w)));
            }
            for &k in &a.t.op_idx {
                l_k[k] = None;
            }
        }
        let l = l.scaled(s);
        let l_g = self.upper.l_g();
        let l_j: Option<Bound> = l_k.iter().try_fold(Bound::proven(0.0), |acc, b| {
            b.map(|b| Bound {
                value: acc.value + b.value * b.value,
                proven: acc.proven && b.proven,
            })
        });
        let l_j = l_j.map(|b| Bound {
            value: b.value.sqrt() * s,
            proven: b.proven,
        });
        let j_norm = self
            .gram(x, &th)?
            .map(|g| sym_max_eigenvalue(g, th.len()).max(0.0).sqrt());
        let base_proven = l.proven && l_g.proven;
        let known = |b: Option<Bound>| match b {
            Some(b) if b.proven && base_proven => Constant::Known(b.value),
            _ => Constant::Unknown,
        };
        Ok(Constants {
            mu,
            lipschitz: l.value,
            l_g: l_g.value,
            j_norm: match j_norm {
                Some(v) if base_proven => Constant::Known(v),
                _ => Constant::Unknown,
            },
            l_j: known(l_j),
            l_hinv: known(l_h.map(|b| b.scaled(s / (mu * mu)))),
        })
    }
}

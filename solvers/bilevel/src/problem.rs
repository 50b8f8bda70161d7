//! The bilevel problem interface.
//!
//! ```text
//! min_θ f(θ) = g(x̂(θ)),     x̂(θ) = argmin_x h(x, θ)
//! ```
//!
//! with `h(·, θ)` μ-strongly convex and smooth, `g` `L_g`-smooth. A problem states the
//! lower-level gradient `∇ₓh`, the Hessian-vector product `H v = ∇²ₓₓh v`, the cross product
//! `Jᵀq = ∇_θ⟨∇ₓh(x, θ), q⟩` (`J = ∂²_{xθ}h`), the upper level `g`, `∇g`, and the constants of
//! the a-posteriori error bound (see [`Constants`]).

use hyperprox_core::error::{Error, Result};
use ndarray::{Array1, ArrayView1, ArrayViewMut1};

/// A constant of the error bound: known (an exact value or a proven upper bound, which keeps
/// the bound certified) or unknown (then the oracle estimates it online and the bound is
/// reported as *estimated*).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Constant {
    /// An exact value or a proven upper bound.
    Known(f64),
    /// Not available in closed form: estimated online by the oracle.
    Unknown,
}

impl Constant {
    /// `Some(v)` for a known constant.
    pub fn known(self) -> Option<f64> {
        match self {
            Constant::Known(v) => Some(v),
            Constant::Unknown => None,
        }
    }
}

/// Constants at a lower-level point `x̃` and hyperparameter `θ`.
///
/// `mu`, `lipschitz` and `l_g` are required and must be valid (a lower bound for `mu`, upper
/// bounds for the others): the lower-level certificate `‖∇ₓh(x̃)‖/μ ≥ ‖x̃ − x̂(θ)‖` and the line
/// search of MAID rely on them.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Constants {
    /// Strong-convexity modulus of `h(·, θ)`.
    pub mu: f64,
    /// Lipschitz constant of `∇ₓh(·, θ)` (the lower-level step is `1/lipschitz`).
    pub lipschitz: f64,
    /// Lipschitz constant of `∇g`.
    pub l_g: f64,
    /// `‖J(x̃)‖` (spectral norm of `∂²_{xθ}h` at `x̃`).
    pub j_norm: Constant,
    /// Lipschitz constant of `x ↦ J(x)`.
    pub l_j: Constant,
    /// Lipschitz constant of `x ↦ H(x)⁻¹`.
    pub l_hinv: Constant,
}

/// A bilevel problem `min_θ g(x̂(θ))`, `x̂(θ) = argmin_x h(x, θ)` (f64; see the module docs).
///
/// Implementations must be thread-safe (`Sync`): the oracles may evaluate products in
/// parallel.
pub trait BilevelProblem: Sync {
    /// A short name for reports.
    fn name(&self) -> &str;
    /// Dimension of the lower-level variable `x`.
    fn dim_x(&self) -> usize;
    /// Number of hyperparameters `θ`.
    fn dim_theta(&self) -> usize;
    /// The default starting point of the lower level.
    fn x_start(&self) -> Array1<f64>;
    /// The default starting hyperparameters.
    fn theta_start(&self) -> Array1<f64>;
    /// Lower-level objective `h(x, θ)`.
    fn lower_value(&self, x: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<f64>;
    /// `out ← ∇ₓh(x, θ)`.
    fn lower_grad_into(
        &self,
        out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
    ) -> Result<()>;
    /// `out ← ∇²ₓₓh(x, θ) v`.
    fn lower_hvp_into(
        &self,
        out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
        v: ArrayView1<'_, f64>,
    ) -> Result<()>;
    /// `out ← J(x, θ)ᵀ q = ∇_θ ⟨∇ₓh(x, θ), q⟩` (length `dim_theta`).
    fn cross_jt_into(
        &self,
        out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
        q: ArrayView1<'_, f64>,
    ) -> Result<()>;
    /// Upper-level objective `g(x)`.
    fn upper_value(&self, x: ArrayView1<'_, f64>) -> Result<f64>;
    /// `out ← ∇g(x)`.
    fn upper_grad_into(&self, out: ArrayViewMut1<'_, f64>, x: ArrayView1<'_, f64>) -> Result<()>;
    /// Whether `g` is convex. A required statement, not a default: MAID drops the `ε²` term
    /// of the lower sandwich bound `U⁻(x̃, ε) = g(x̃) − ‖∇g(x̃)‖ε − (L_g/2)ε²` for a convex `g`
    /// (Remark 3.6 of the MAID paper), so claiming convexity for a non-convex `g` voids the
    /// certified decrease. Answer `false` when unsure: that is always safe, only more cautious.
    fn upper_convex(&self) -> bool;
    /// The constants of the error bound at `(x, θ)`.
    fn constants(&self, x: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<Constants>;
    /// The Gram matrix `JᵀJ` of `J = ∂²_{xθ}h` at `(x, θ)` (row-major, `dim_theta²`), where
    /// the problem computes its known `‖J‖` from it (`‖J‖² = λ_max(JᵀJ)`). A data-parallel
    /// run ([`crate::sharded`]) sums the ranks' Gram matrices to get the exact `‖J‖` of the
    /// whole problem. The default, `None`, makes it fall back to the bound
    /// `‖J‖ ≤ (Σ_r ‖J_r‖²)^{1/2}`.
    fn j_gram(
        &self,
        _x: ArrayView1<'_, f64>,
        _theta: ArrayView1<'_, f64>,
    ) -> Result<Option<Vec<f64>>> {
        Ok(None)
    }
    /// Where the problem is one rank's shard of a data-parallel problem
    /// ([`crate::sharded::Sharded`]): the communicator and the place of this rank's block of
    /// `x` in the whole. The oracle then takes the norms and inner products of `x`-space
    /// vectors over all ranks. `None` (the default): the problem is whole.
    fn sharding(&self) -> Option<crate::sharded::ShardInfo<'_>> {
        None
    }
}

/// `Err` unless `theta` has length `p.dim_theta()` and finite entries.
pub fn check_theta<P: BilevelProblem + ?Sized>(p: &P, theta: ArrayView1<'_, f64>) -> Result<()> {
    hyperprox_core::linalg::check_len(
        &format!("{} hyperparameters", p.name()),
        "theta",
        p.dim_theta(),
        theta.len(),
    )?;
    hyperprox_core::linalg::check_finite("theta", theta)?;
    Ok(())
}

/// `Err` unless `x` has length `p.dim_x()` and finite entries.
pub fn check_x<P: BilevelProblem + ?Sized>(p: &P, x: ArrayView1<'_, f64>) -> Result<()> {
    hyperprox_core::linalg::check_len(
        &format!("{} lower-level variable", p.name()),
        "x",
        p.dim_x(),
        x.len(),
    )?;
    hyperprox_core::linalg::check_finite("x", x)?;
    Ok(())
}

/// `Err(InvalidParameter)` for a non-positive or non-finite accuracy.
pub(crate) fn check_accuracy(name: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(Error::param(
            name,
            v,
            "accuracies must be positive and finite (e.g. 0.1)",
        ))
    }
}

/// `Err(InvalidParameter)` for a negative or non-finite stopping tolerance (0 turns a test off).
pub(crate) fn check_tolerance(name: &str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(Error::param(
            name,
            v,
            "must be ≥ 0 and finite (0 turns the test off)",
        ))
    }
}

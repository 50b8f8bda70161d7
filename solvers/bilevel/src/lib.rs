#![allow(clippy::neg_cmp_op_on_partial_ord)] // `!(x > 0)` also rejects NaN
//! # hyperprox-bilevel
//!
//! Bilevel learning of hyperparameters,
//!
//! ```text
//! min_θ f(θ) = g(x̂(θ)),     x̂(θ) = argmin_x h(x, θ),
//! ```
//!
//! with `h(·, θ)` strongly convex and smooth and `g` smooth:
//!
//! - [`BilevelProblem`]: what a problem states (`∇ₓh`, Hessian-vector products, `Jᵀq`, `g`,
//!   `∇g`, and the constants of the error bound);
//! - [`Oracle`]: inexact implicit hypergradients with the a-posteriori error bound `ω(ε, δ)`
//!   (certified when all constants are known), exact and unrolled hypergradients, and a
//!   finite-difference check;
//! - [`Maid`]: the adaptively inexact method (Salehi, Mukherjee, Roberts & Ehrhardt 2025), and
//!   [`Hoag`] (Pedregosa 2016) with its a-priori accuracy sequences; both run on their own
//!   ([`OuterSolver::run`]) or under argmin's `Executor` through
//!   [`hyperprox_core::solve::ArgminSolver`] (observers, checkpointing);
//! - problems: the paper's [`QuadraticProblem`], [`TvDenoising`], [`FieldOfExperts`],
//!   [`MultinomialLogistic`], and [`LassoTuning`] (implicit differentiation over the support).
//!
//! All computations are in `f64`.

pub mod composed;
pub mod data;
pub mod experiments;
mod hoag;
mod lasso;
mod maid;
pub mod oracle;
mod outer;
mod problem;
pub mod problems;
pub mod sharded;

pub use composed::{ComposedBuilder, ComposedProblem, DataFit, UpperLoss, WeightInit};
pub use hoag::{AccuracySequence, Hoag, HoagParams, HoagState};
pub use lasso::{LassoEval, LassoTuned, LassoTuning};
pub use maid::{Maid, MaidConstants, MaidParams, MaidState};
pub use oracle::{
    Estimates, FistaLower, Hypergradient, LbfgsLower, LowerObjective, LowerResult, LowerSolve,
    LowerSolver, Oracle, OracleParams,
};
pub use outer::{certified_stationarity, outer_stop, run_from};
pub use outer::{OuterRecord, OuterResult, OuterSolver, OuterStop};
pub use problem::{check_theta, check_x, BilevelProblem, Constant, Constants};
pub use problems::{
    c3_isotropic, FieldOfExperts, MultinomialLogistic, QuadraticProblem, RidgeProblem, TvDenoising,
    TvModel,
};

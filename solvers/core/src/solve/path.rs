//! Regularization paths: the Lasso-type problem solved for a decreasing sequence of `λ`, each
//! solve warm-started from the previous solution, with the first working set of each solve
//! seeded by the **sequential strong rule**: feature `j` is expected to stay zero at `λₖ` if
//! `|aⱼᵀr(λₖ₋₁)|/n < αwⱼ(2λₖ − λₖ₋₁)`. The rule is a heuristic (it can be wrong); here it only
//! chooses the first working set, and every solve still stops on its own certified duality
//! gap over all features, so a wrong guess costs time, never accuracy.
//!
//! The design is put in column-major order once for the whole path (coordinate descent reads
//! columns); every solve uses it without a copy.
//!
//! # References
//! R. Tibshirani, J. Bien, J. Friedman, T. Hastie, N. Simon, J. Taylor, R. Tibshirani, "Strong
//! rules for discarding predictors in lasso-type problems", JRSS B 74 (2012); J. Friedman,
//! T. Hastie, R. Tibshirani, "Regularization paths for generalized linear models via coordinate
//! descent", J. Stat. Softw. 33 (2010) (warm starts, geometric grid from `λ_max`).

use super::Design;
use super::{CoordinateDescent, CoordinateDescentParams, LassoPenalty, LassoProblem, NoObserver};
use crate::error::{Error, Result};
use crate::linalg::Real;
use ndarray::Array1;

/// One point of a path.
#[derive(Clone, Debug)]
pub struct PathPoint<T> {
    /// `λ`.
    pub lambda: T,
    /// The solution.
    pub x: Array1<T>,
    /// `P(x)`.
    pub objective: T,
    /// The certified duality gap.
    pub gap: T,
    /// Epochs of this solve.
    pub epochs: usize,
    /// Outer iterations of the working-set solver (gap evaluations; 0 for plain epochs).
    pub outer: usize,
    /// Whether the gap reached the tolerance.
    pub converged: bool,
}

/// `n` values of `λ` from `λ_max` down to `min_ratio·λ_max`, evenly spaced in `log λ` (the
/// grid of glmnet, scikit-learn and skglm).
pub fn lambda_grid<T: Real>(lambda_max: T, n: usize, min_ratio: T) -> Result<Vec<T>> {
    if n == 0 {
        return Err(Error::param(
            "path",
            0,
            "needs at least one value of lambda",
        ));
    }
    if !(min_ratio > T::zero() && min_ratio < T::one()) {
        return Err(Error::param(
            "lambda_min_ratio",
            min_ratio,
            "must lie in (0, 1)",
        ));
    }
    if !(lambda_max > T::zero() && lambda_max.is_finite()) {
        return Err(Error::param(
            "lambda_max",
            lambda_max,
            "must be finite and > 0 (b is orthogonal to every column of A: every λ gives x = 0)",
        ));
    }
    let step = if n > 1 {
        min_ratio.ln() / T::c((n - 1) as f64)
    } else {
        T::zero()
    };
    Ok((0..n)
        .map(|k| lambda_max * (step * T::c(k as f64)).exp())
        .collect())
}

/// Solves `‖Ax − b‖²/(2n) + Ω_λ(x)` for every `λ` of `lambdas` (in the order given; decreasing
/// is the efficient order), by coordinate descent with `params` (working sets for ℓ1 and the
/// elastic net), warm starts and the sequential strong rule (see the module documentation).
pub fn lasso_path<T: Real>(
    a: impl Into<Design<T>>,
    b: Array1<T>,
    penalty: LassoPenalty<T>,
    lambdas: &[T],
    params: CoordinateDescentParams<T>,
) -> Result<Vec<PathPoint<T>>> {
    let Some(&first) = lambdas.first() else {
        return Err(Error::param(
            "path",
            0,
            "needs at least one value of lambda",
        ));
    };
    // Column-major once for the whole path (the column norms and a sparse design's compressed
    // columns are cached in the design: computed once too).
    let mut prob = LassoProblem::with_design(a.into().into_column_major(), b, first, penalty)?;
    let p = prob.n_features();
    let l1_share = match prob.penalty() {
        LassoPenalty::ElasticNet { alpha } => Some(*alpha),
        LassoPenalty::L1 { .. } => Some(T::one()),
        LassoPenalty::Group { .. } => None,
    };
    let mut x = Array1::zeros(p);
    let mut out = Vec::with_capacity(lambdas.len());
    let mut prev: Option<(T, Array1<T>)> = None;
    for &lam in lambdas {
        prob.set_lambda(lam)?;
        let cd = CoordinateDescent::new(&prob, params)?;
        let hint = match (l1_share, &prev) {
            (Some(alpha), Some((lam_prev, corr))) => {
                let w = prob.weights();
                let cut = T::c(2.0) * lam - *lam_prev;
                Some(
                    (0..p)
                        .filter(|&j| x[j] != T::zero() || corr[j].abs() >= alpha * w[j] * cut)
                        .collect::<Vec<usize>>(),
                )
            }
            _ => None,
        };
        let sol = cd.run_from(x.view(), hint.as_deref(), NoObserver)?;
        x = sol.x;
        prev = l1_share.map(|_| (lam, cd.correlations_all(&sol.state.r)));
        out.push(PathPoint {
            lambda: lam,
            x: x.clone(),
            objective: sol.objective,
            gap: sol.certificate,
            epochs: sol.iterations,
            outer: sol.state.trace.outer.len(),
            converged: sol.reason == super::TerminationReason::Converged,
        });
    }
    Ok(out)
}

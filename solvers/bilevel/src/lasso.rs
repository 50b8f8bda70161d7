//! Tuning the Lasso's `λ` on held-out data with an implicit hypergradient over the active set
//! (the approach of sparse-ho), compared against a grid.
//!
//! Lower level (non-smooth, so outside MAID's class): `x̂(λ) = argmin ‖Ax − b‖²/(2n) + λ‖x‖₁`,
//! solved by coordinate descent to a duality gap. On the support `S` with signs `s`, the
//! optimality condition `A_Sᵀ(A_S x_S − b)/n + λ s = 0` gives
//! `∂x_S/∂λ = −n (A_SᵀA_S)⁻¹ s` (zero off `S`), valid where the support is locally constant.
//! Upper level: validation mean squared error `(1/n_v)‖A_v x̂ − b_v‖²`, optimized over
//! `θ = log λ` by gradient descent with Armijo backtracking.
//!
//! # References
//! Q. Bertrand, Q. Klopfenstein, M. Blondel, S. Vaiter, A. Gramfort, J. Salmon, "Implicit
//! differentiation of Lasso-type models for hyperparameter optimization", ICML 2020.

use hyperprox_core::error::{Error, Result};
use hyperprox_core::linalg::{cholesky_solve_in_place, Real};
use hyperprox_core::solve::{
    CoordinateDescent, CoordinateDescentParams, LassoPenalty, LassoProblem,
};
use ndarray::{Array1, Array2, Axis};

/// A Lasso `λ`-tuning problem (see the module docs).
#[derive(Clone, Debug)]
pub struct LassoTuning {
    a: Array2<f64>,
    b: Array1<f64>,
    a_val: Array2<f64>,
    b_val: Array1<f64>,
    lambda_max: f64,
    /// Duality-gap tolerance of each lower-level solve, relative to `‖b‖²/(2n)`.
    pub rel_tol: f64,
}

/// One evaluation of the validation loss (serialized without `x`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct LassoEval {
    /// `λ`.
    pub lambda: f64,
    /// Validation MSE.
    pub val_mse: f64,
    /// `d val_mse / d log λ`.
    #[serde(rename = "grad_log_lambda")]
    pub grad: f64,
    /// The Lasso solution.
    #[serde(skip)]
    pub x: Array1<f64>,
    /// Coordinate-descent epochs used.
    pub epochs: usize,
}

/// Result of [`LassoTuning::tune`].
#[derive(Clone, Debug)]
pub struct LassoTuned {
    /// Accepted iterates, in order.
    pub history: Vec<LassoEval>,
    /// The best point found.
    pub best: LassoEval,
    /// Total CD epochs (all evaluations, including rejected trials).
    pub epochs_total: usize,
}

impl LassoTuning {
    /// From training and validation data (equal feature counts, finite, non-empty).
    pub fn new(
        a: Array2<f64>,
        b: Array1<f64>,
        a_val: Array2<f64>,
        b_val: Array1<f64>,
    ) -> Result<Self> {
        if a.ncols() != a_val.ncols() {
            return Err(Error::shape(
                "Lasso tuning",
                "validation matrix",
                format!("{} columns", a.ncols()),
                format!("{} columns", a_val.ncols()),
            ));
        }
        if b_val.len() != a_val.nrows() || a_val.nrows() == 0 {
            return Err(Error::shape(
                "Lasso tuning",
                "validation targets",
                format!("length {} (> 0)", a_val.nrows()),
                format!("length {}", b_val.len()),
            ));
        }
        for (what, v) in [
            ("validation matrix", a_val.iter().find(|v| !v.is_finite())),
            ("validation targets", b_val.iter().find(|v| !v.is_finite())),
        ] {
            if let Some(v) = v {
                return Err(Error::NonFinite {
                    what: what.into(),
                    index: 0,
                    value: v.to_string(),
                });
            }
        }
        let pen = LassoPenalty::L1 { weights: None };
        let lambda_max = LassoProblem::lambda_max(a.view(), b.view(), &pen)?;
        if !(lambda_max > 0.0) {
            return Err(Error::param(
                "b",
                "Aᵀb = 0",
                "λ_max = 0: the training targets carry no signal",
            ));
        }
        Ok(Self {
            a,
            b,
            a_val,
            b_val,
            lambda_max,
            rel_tol: 1e-10,
        })
    }

    /// `λ_max` of the training problem.
    pub fn lambda_max(&self) -> f64 {
        self.lambda_max
    }

    /// Solves at `λ` (warm start `x0`) and returns the validation MSE and its derivative in
    /// `log λ`.
    pub fn eval(&self, lambda: f64, x0: Option<&Array1<f64>>) -> Result<LassoEval> {
        if !(lambda > 0.0 && lambda.is_finite()) {
            return Err(Error::param(
                "lambda",
                lambda,
                "must be positive and finite",
            ));
        }
        let n = self.a.nrows() as f64;
        let p = LassoProblem::new(
            self.a.clone(),
            self.b.clone(),
            lambda,
            LassoPenalty::L1 { weights: None },
        )?;
        let tol = self.rel_tol * self.b.dot(&self.b) / (2.0 * n);
        let cd = CoordinateDescent::new(&p, CoordinateDescentParams::default().with_tol(tol))?;
        let start = x0.cloned().unwrap_or_else(|| Array1::zeros(self.a.ncols()));
        let sol = cd.run(start.view(), hyperprox_core::solve::NoObserver)?;
        let x = sol.x;
        let support: Vec<usize> = (0..x.len()).filter(|&j| x[j] != 0.0).collect();
        let r_val = self.a_val.dot(&x) - &self.b_val;
        let nv = self.b_val.len() as f64;
        let val_mse = r_val.dot(&r_val) / nv;
        let grad = if support.is_empty() {
            0.0
        } else {
            let a_s = self.a.select(Axis(1), &support);
            let gram = a_s.t().dot(&a_s);
            let l = f64::cholesky_lower(gram.view()).map_err(|_| {
                Error::param("support", support.len(), "A_Sᵀ A_S is singular on the Lasso support: the implicit derivative is not defined here (use more samples or a larger λ)")
            })?;
            let mut dx: Array1<f64> = support.iter().map(|&j| x[j].signum()).collect();
            cholesky_solve_in_place(l.view(), dx.view_mut());
            // dx_S/dlogλ = λ·dx_S/dλ = −nλ(A_SᵀA_S)⁻¹ s.
            dx.mapv_inplace(|v| -n * lambda * v);
            let av_s = self.a_val.select(Axis(1), &support);
            2.0 / nv * r_val.dot(&av_s.dot(&dx))
        };
        Ok(LassoEval {
            lambda,
            val_mse,
            grad,
            x,
            epochs: sol.iterations,
        })
    }

    /// Gradient descent on `θ = log λ` from `λ0` with Armijo backtracking (step doubled after
    /// acceptance, halved on failure), at most `max_iters` accepted steps; stops when a step
    /// changes `λ` by less than a relative `1e-6`.
    pub fn tune(&self, lambda0: f64, max_iters: usize) -> Result<LassoTuned> {
        let mut cur = self.eval(lambda0, None)?;
        let mut epochs_total = cur.epochs;
        let mut history = vec![cur.clone()];
        // Initial step: move log λ by at most 1 in the first trial.
        let mut t = 1.0 / cur.grad.abs().max(1e-300);
        for _ in 0..max_iters {
            if cur.grad == 0.0 {
                break;
            }
            let theta = cur.lambda.ln();
            let mut accepted = None;
            for _ in 0..40 {
                let cand = self.eval((theta - t * cur.grad).exp(), Some(&cur.x))?;
                epochs_total += cand.epochs;
                if cand.val_mse <= cur.val_mse - 1e-4 * t * cur.grad * cur.grad {
                    accepted = Some(cand);
                    break;
                }
                t *= 0.5;
            }
            let Some(next) = accepted else { break };
            let rel = (next.lambda / cur.lambda).ln().abs();
            cur = next;
            history.push(cur.clone());
            t *= 2.0;
            if rel < 1e-6 {
                break;
            }
        }
        let best = history
            .iter()
            .min_by(|a, b| a.val_mse.total_cmp(&b.val_mse))
            .cloned()
            .expect("history holds the start");
        Ok(LassoTuned {
            history,
            best,
            epochs_total,
        })
    }

    /// Validation MSE on `points` values of `λ` log-spaced from `λ_max` down to `10⁻³λ_max`
    /// (warm-started along the path). Returns `(evaluations, total epochs)`.
    pub fn grid(&self, points: usize) -> Result<(Vec<LassoEval>, usize)> {
        if points < 2 {
            return Err(Error::param(
                "points",
                points,
                "a grid needs at least 2 points",
            ));
        }
        let mut out: Vec<LassoEval> = Vec::with_capacity(points);
        let mut epochs = 0;
        for i in 0..points {
            let lam = self.lambda_max * 10f64.powf(-3.0 * i as f64 / (points - 1) as f64);
            let e = self.eval(lam, out.last().map(|e| &e.x))?;
            epochs += e.epochs;
            out.push(e);
        }
        Ok((out, epochs))
    }
}

//! Classical baselines, batched over samples, all run by the core batched solver
//! ([`BatchFista`]): ISTA, IHT (step 1/L), FISTA, and the LASSO optimum
//! `F* = min ½‖y − Ax‖² + λ‖x‖₁` from FISTA with adaptive restart run to a duality gap.

use crate::data::{nmse_db, Batch, Problem};
use crate::layers::Penalty;
use hyperprox_core::diff::{residual, LeastSquaresBatch};
use hyperprox_core::error::{Error, Result};
use hyperprox_core::func::{NormL0, NormL1, Prox};
use hyperprox_core::solve::{lasso_gaps, BatchFista, BatchFistaParams, Restart};
use ndarray::{Array2, ArrayView2};

/// Per-sample objective `½‖y − Ax‖² + λ·penalty(x)`.
pub fn objective_values(
    problem: &Problem,
    x: ArrayView2<'_, f64>,
    y: ArrayView2<'_, f64>,
    lambda: f64,
    penalty: Penalty,
) -> Vec<f64> {
    let r = residual(problem.a.view(), x, y);
    r.rows()
        .into_iter()
        .zip(x.rows())
        .map(|(rr, xr)| {
            let pen = match penalty {
                Penalty::L1 => xr.iter().map(|v| v.abs()).sum::<f64>(),
                Penalty::L0 => xr.iter().filter(|v| **v != 0.0).count() as f64,
            };
            0.5 * rr.dot(&rr) + lambda * pen
        })
        .collect()
}

/// Mean of [`objective_values`].
pub fn mean_objective(
    problem: &Problem,
    x: ArrayView2<'_, f64>,
    y: ArrayView2<'_, f64>,
    lambda: f64,
    penalty: Penalty,
) -> f64 {
    let v = objective_values(problem, x, y, lambda, penalty);
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Per-layer test curves: index t is the state after t layers / iterations.
#[derive(Clone, Debug, PartialEq)]
pub struct Curves {
    /// NMSE (dB) to the true signals.
    pub nmse_db: Vec<f64>,
    /// Mean objective of the original problem.
    pub objective: Vec<f64>,
}

impl Curves {
    /// Curves of a list of iterates.
    pub fn of(
        problem: &Problem,
        batch: &Batch,
        xs: &[Array2<f64>],
        lambda: f64,
        penalty: Penalty,
    ) -> Self {
        Self {
            nmse_db: xs
                .iter()
                .map(|x| nmse_db(x.view(), batch.x.view()))
                .collect(),
            objective: xs
                .iter()
                .map(|x| mean_objective(problem, x.view(), batch.y.view(), lambda, penalty))
                .collect(),
        }
    }
}

/// The batched core solver with step `1/L` on `½‖y − Ax‖² + λ·penalty(x)`.
fn batch_solver<R>(
    problem: &Problem,
    lambda: f64,
    penalty: Penalty,
    momentum: bool,
    restart: Restart,
    run: impl FnOnce(&BatchFista<'_, LeastSquaresBatch, dyn Prox<f64>>) -> Result<R>,
) -> Result<R> {
    let f = LeastSquaresBatch::new(problem.a.clone())?;
    let g: Box<dyn Prox<f64>> = match penalty {
        Penalty::L1 => Box::new(NormL1::new(lambda)?),
        Penalty::L0 => Box::new(NormL0::new(lambda)?),
    };
    let params = BatchFistaParams {
        step: 1.0 / problem.lipschitz,
        momentum,
        restart,
    };
    run(&BatchFista::new(&f, g.as_ref(), params)?)
}

/// `iters` iterations of ISTA (ℓ1) or IHT (ℓ0: hard threshold `√(2λ/L)`) with step 1/L from
/// `x₀ = 0` (the core [`BatchFista`] without momentum); all iterates.
pub fn ista(
    problem: &Problem,
    y: ArrayView2<'_, f64>,
    lambda: f64,
    penalty: Penalty,
    iters: usize,
) -> Result<Vec<Array2<f64>>> {
    batch_solver(problem, lambda, penalty, false, Restart::None, |s| {
        s.iterates(Array2::zeros((y.nrows(), problem.n())).view(), y, iters)
    })
}

/// `iters` iterations of FISTA (Beck & Teboulle 2009) with step 1/L from `x₀ = 0` (the core
/// [`BatchFista`]); all iterates.
pub fn fista(
    problem: &Problem,
    y: ArrayView2<'_, f64>,
    lambda: f64,
    iters: usize,
) -> Result<Vec<Array2<f64>>> {
    batch_solver(problem, lambda, Penalty::L1, true, Restart::None, |s| {
        s.iterates(Array2::zeros((y.nrows(), problem.n())).view(), y, iters)
    })
}

/// The LASSO solution of every row, by the core [`BatchFista`] with O'Donoghue–Candès gradient
/// restart (per row), until every row's duality gap ([`lasso_gaps`]) is at most
/// `tol·max(1, F)` (checked every 20 iterations). Returns `(x*, F*, iterations)` where `F*`
/// are the per-row primal values; `Err` if `max_iters` is reached first.
pub fn lasso_optimum(
    problem: &Problem,
    y: ArrayView2<'_, f64>,
    lambda: f64,
    tol: f64,
    max_iters: usize,
) -> Result<(Array2<f64>, Vec<f64>, usize)> {
    batch_solver(
        problem,
        lambda,
        Penalty::L1,
        true,
        Restart::Gradient,
        |solver| {
            let mut s = solver.init(Array2::zeros((y.nrows(), problem.n())).view())?;
            let mut worst = f64::INFINITY;
            for k in 1..=max_iters {
                solver.step(&mut s, y)?;
                if k % 20 == 0 || k == max_iters {
                    let (gaps, vals) = duality_gaps(problem, s.x.view(), y, lambda);
                    worst = gaps
                        .iter()
                        .zip(&vals)
                        .map(|(g, v)| g / v.max(1.0))
                        .fold(0.0, f64::max);
                    if worst <= tol {
                        return Ok((s.x, vals, k));
                    }
                }
            }
            Err(Error::NotConverged {
                method: "FISTA (LASSO optimum)".into(),
                iterations: max_iters,
                residual: worst,
                tol,
            })
        },
    )
}

/// Per-row `(duality gap, primal value)` of the LASSO at `x` (the core [`lasso_gaps`]).
pub fn duality_gaps(
    problem: &Problem,
    x: ArrayView2<'_, f64>,
    y: ArrayView2<'_, f64>,
    lambda: f64,
) -> (Vec<f64>, Vec<f64>) {
    lasso_gaps(problem.a.view(), x, y, lambda)
}

//! Classical baselines, batched over samples: ISTA, IHT (step 1/L), FISTA, and the LASSO
//! optimum `F* = min ½‖y − Ax‖² + λ‖x‖₁` from FISTA with adaptive restart run to a duality gap.

use crate::data::{nmse_db, Batch, Problem};
use crate::layers::{Penalty, ProxGradLayer};
use hyperprox_core::diff::{matmul, residual, Differentiable};
use hyperprox_core::error::{Error, Result};
use hyperprox_core::Real;
use ndarray::{Array2, ArrayView2, Zip};

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

/// `iters` iterations of ISTA (ℓ1) or IHT (ℓ0) with step 1/L from `x₀ = 0`; all iterates.
pub fn ista(
    problem: &Problem,
    y: ArrayView2<'_, f64>,
    lambda: f64,
    penalty: Penalty,
    iters: usize,
) -> Result<Vec<Array2<f64>>> {
    let layer = ProxGradLayer::new(problem.a.clone(), lambda, penalty);
    let alpha = [1.0 / problem.lipschitz];
    let mut xs = vec![Array2::zeros((y.nrows(), problem.n()))];
    for _ in 0..iters {
        let next = layer.forward(&alpha, xs.last().unwrap().view(), y)?;
        xs.push(next);
    }
    Ok(xs)
}

fn soft(v: f64, t: f64) -> f64 {
    v.signum() * (v.abs() - t).max(0.0)
}

/// `iters` iterations of FISTA (Beck & Teboulle 2009) with step 1/L from `x₀ = 0`; all iterates.
pub fn fista(
    problem: &Problem,
    y: ArrayView2<'_, f64>,
    lambda: f64,
    iters: usize,
) -> Result<Vec<Array2<f64>>> {
    let l = problem.lipschitz;
    let a = problem.a.view();
    let mut xs = vec![Array2::zeros((y.nrows(), problem.n()))];
    let mut z = xs[0].clone();
    let mut t = 1.0f64;
    for _ in 0..iters {
        let r = residual(a, z.view(), y);
        let mut u = z.clone();
        f64::gemm(u.view_mut(), r.view(), a, 1.0 / l, true);
        u.mapv_inplace(|v| soft(v, lambda / l));
        let t1 = 0.5 * (1.0 + (1.0 + 4.0 * t * t).sqrt());
        let prev = xs.last().unwrap();
        z = &u + &((&u - prev) * ((t - 1.0) / t1));
        t = t1;
        xs.push(u);
    }
    Ok(xs)
}

/// The LASSO solution of every row, by FISTA with O'Donoghue–Candès gradient restart (per
/// row), until every row's duality gap is at most `tol·max(1, F)`. Returns `(x*, F*, iterations)`
/// where `F*` are the per-row primal values; `Err` if `max_iters` is reached first.
///
/// The gap uses the dual point `ν = r·min(1, λ/‖Aᵀr‖∞)`, `r = y − Ax`:
/// `gap = ½‖r‖² + λ‖x‖₁ − (½‖y‖² − ½‖y − ν‖²) ≥ F(x) − F*`.
pub fn lasso_optimum(
    problem: &Problem,
    y: ArrayView2<'_, f64>,
    lambda: f64,
    tol: f64,
    max_iters: usize,
) -> Result<(Array2<f64>, Vec<f64>, usize)> {
    let l = problem.lipschitz;
    let a = problem.a.view();
    let (b, n) = (y.nrows(), problem.n());
    let mut x = Array2::<f64>::zeros((b, n));
    let mut z = x.clone();
    let mut t = vec![1.0f64; b];
    let mut worst = f64::INFINITY;
    for k in 1..=max_iters {
        let r = residual(a, z.view(), y);
        let mut u = z.clone();
        f64::gemm(u.view_mut(), r.view(), a, 1.0 / l, true);
        u.mapv_inplace(|v| soft(v, lambda / l));
        for (i, ti) in t.iter_mut().enumerate() {
            // Restart when the step points against the momentum: ⟨z − u, u − x⟩ > 0.
            let (zr, ur, xr) = (z.row(i), u.row(i), x.row(i));
            let mut s = 0.0;
            Zip::from(&zr)
                .and(&ur)
                .and(&xr)
                .for_each(|zv, uv, xv| s += (zv - uv) * (uv - xv));
            let t1 = 0.5 * (1.0 + (1.0 + 4.0 * *ti * *ti).sqrt());
            let beta = if s > 0.0 { 0.0 } else { (*ti - 1.0) / t1 };
            *ti = if s > 0.0 { 1.0 } else { t1 };
            let mut zrow = z.row_mut(i);
            Zip::from(&mut zrow)
                .and(&ur)
                .and(&xr)
                .for_each(|zv, uv, xv| *zv = uv + beta * (uv - xv));
        }
        x = u;
        if k % 20 == 0 || k == max_iters {
            let (gaps, vals) = duality_gaps(problem, x.view(), y, lambda);
            worst = gaps
                .iter()
                .zip(&vals)
                .map(|(g, v)| g / v.max(1.0))
                .fold(0.0, f64::max);
            if worst <= tol {
                return Ok((x, vals, k));
            }
        }
    }
    Err(Error::NotConverged {
        method: "FISTA (LASSO optimum)".into(),
        iterations: max_iters,
        residual: worst,
        tol,
    })
}

/// Per-row `(duality gap, primal value)` of the LASSO at `x`.
pub fn duality_gaps(
    problem: &Problem,
    x: ArrayView2<'_, f64>,
    y: ArrayView2<'_, f64>,
    lambda: f64,
) -> (Vec<f64>, Vec<f64>) {
    let r = residual(problem.a.view(), x, y);
    let atr = matmul(r.view(), problem.a.view());
    let mut gaps = Vec::with_capacity(x.nrows());
    let mut vals = Vec::with_capacity(x.nrows());
    for i in 0..x.nrows() {
        let (rr, yr) = (r.row(i), y.row(i));
        let c = atr.row(i).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let s = if c > lambda { lambda / c } else { 1.0 };
        let p = 0.5 * rr.dot(&rr) + lambda * x.row(i).iter().map(|v| v.abs()).sum::<f64>();
        let ymn = &yr - &(&rr * s);
        let d = 0.5 * yr.dot(&yr) - 0.5 * ymn.dot(&ymn);
        gaps.push((p - d).max(0.0));
        vals.push(p);
    }
    (gaps, vals)
}

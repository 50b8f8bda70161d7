//! Batched forward–backward splitting: the rows of a matrix are independent problems
//! `min_x f(x; c_b) + g(x)` sharing one smooth part `f` (a [`BatchSmooth`], e.g.
//! `½‖Ax − y_b‖²`) and one nonsmooth part `g` with a prox. ISTA, FISTA, IHT and FISTA with
//! per-row gradient restart run as one matrix iteration, so a batch of `B` problems costs two
//! `B × N` by `N × M` products per iteration. The unfolded-algorithm baselines and the LASSO
//! optimum of a test set use it.
//!
//! # References
//! A. Beck, M. Teboulle, SIAM J. Imaging Sci. 2 (2009); B. O'Donoghue, E. Candès, Found.
//! Comput. Math. 15 (2015); T. Blumensath, M. E. Davies, Appl. Comput. Harmon. Anal. 27 (2009).

use super::Restart;
use crate::error::{Error, Result};
use crate::func::BatchSmooth;
use crate::func::Prox;
use crate::linalg::check_positive;
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut1, Zip};

/// Settings of [`BatchFista`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchFistaParams {
    /// Step `s` (`≤ 1/L` for the guarantees).
    pub step: f64,
    /// `true`: FISTA momentum; `false`: ISTA / IHT.
    pub momentum: bool,
    /// [`Restart::None`] or [`Restart::Gradient`] (per row, when `⟨y − x⁺, x⁺ − x⟩ > 0`).
    pub restart: Restart,
}

/// State of [`BatchFista`]: the iterates of every row.
#[derive(Clone, Debug)]
pub struct BatchFistaState {
    /// Current iterates `x_k` (one row per problem).
    pub x: Array2<f64>,
    /// Extrapolated points `y_k` (FISTA; ISTA/IHT step from `x_k` and leave `y` unused).
    pub y: Array2<f64>,
    /// Momentum sequences `t_k`, per row.
    pub t: Vec<f64>,
    /// Iterations done.
    pub iter: usize,
    u: Array2<f64>,
    v: Array2<f64>,
}

/// Batched ISTA/FISTA/IHT (see the module docs): `x⁺ = prox_{sg}(y − s∇f(y; c))` row by row,
/// `y⁺ = x⁺ + β(x⁺ − x)`.
pub struct BatchFista<'a, F: ?Sized, G: ?Sized> {
    f: &'a F,
    g: &'a G,
    params: BatchFistaParams,
}

impl<'a, F: BatchSmooth + ?Sized, G: Prox<f64> + ?Sized> BatchFista<'a, F, G> {
    /// `Err` for a non-positive step or a function-value restart (not available batched).
    pub fn new(f: &'a F, g: &'a G, params: BatchFistaParams) -> Result<Self> {
        check_positive("step", params.step)?;
        if params.restart == Restart::FunctionValue {
            return Err(Error::param(
                "restart",
                "FunctionValue",
                "the batched solver restarts per row on the gradient test: use Restart::Gradient",
            ));
        }
        Ok(Self { f, g, params })
    }

    /// State at `x0` (rows = problems).
    pub fn init(&self, x0: ArrayView2<'_, f64>) -> Result<BatchFistaState> {
        crate::linalg::check_batch("BatchFista", "x0", x0.nrows(), self.f.dim(), x0)?;
        Ok(BatchFistaState {
            x: x0.to_owned(),
            y: x0.to_owned(),
            t: vec![1.0; x0.nrows()],
            iter: 0,
            u: Array2::zeros(x0.raw_dim()),
            v: Array2::zeros(x0.raw_dim()),
        })
    }

    /// One iteration for every row, with contexts `c` (e.g. the measurements `y_b`).
    pub fn step(&self, s: &mut BatchFistaState, c: ArrayView2<'_, f64>) -> Result<()> {
        let step = self.params.step;
        let momentum = self.params.momentum;
        // v ← p − s∇f(p; c) at p = y (FISTA) or x (ISTA), then u ← prox_{sg}(v).
        let point = if momentum { &s.y } else { &s.x };
        self.f.forward_step_into(&mut s.v, point.view(), c, step);
        self.prox_rows(&mut s.u, &s.v, s.iter)?;
        if momentum {
            for (i, ti) in s.t.iter_mut().enumerate() {
                let (yr, ur, xr) = (s.y.row(i), s.u.row(i), s.x.row(i));
                let restart = self.params.restart == Restart::Gradient
                    && Zip::from(&yr)
                        .and(&ur)
                        .and(&xr)
                        .fold(0.0, |d, y, u, x| d + (y - u) * (u - x))
                        > 0.0;
                let t1 = 0.5 * (1.0 + (1.0 + 4.0 * *ti * *ti).sqrt());
                let beta = if restart { 0.0 } else { (*ti - 1.0) / t1 };
                *ti = if restart { 1.0 } else { t1 };
                let mut yrow = s.y.row_mut(i);
                Zip::from(&mut yrow)
                    .and(&ur)
                    .and(&xr)
                    .for_each(|y, &u, &x| *y = u + beta * (u - x));
            }
        }
        std::mem::swap(&mut s.x, &mut s.u);
        s.iter += 1;
        Ok(())
    }

    /// `u ← prox_{sg}(v)` row by row: one call on the whole (contiguous) batch when `g` takes
    /// any length (a scalar-weight separable function), else one call per row. A non-finite
    /// `v` (the prox rejects it) is a divergence at this iteration.
    fn prox_rows(&self, u: &mut Array2<f64>, v: &Array2<f64>, iter: usize) -> Result<()> {
        let step = self.params.step;
        let whole = self.g.dim().is_none();
        let r = match (whole, u.as_slice_mut(), v.as_slice()) {
            (true, Some(us), Some(vs)) => {
                self.g
                    .prox_into(ArrayViewMut1::from(us), ArrayView1::from(vs), step)
            }
            _ => u
                .rows_mut()
                .into_iter()
                .zip(v.rows())
                .try_for_each(|(urow, vrow)| self.g.prox_into(urow, vrow, step)),
        };
        r.map_err(|e| match e {
            Error::NonFinite { value, .. } => Error::Diverged {
                method: "batched FISTA".into(),
                iteration: iter + 1,
                detail: format!("forward step = {value}; decrease the step"),
            },
            e => e,
        })
    }

    /// `iters` iterations from `x0`; all iterates `x_0 … x_iters`.
    pub fn iterates(
        &self,
        x0: ArrayView2<'_, f64>,
        c: ArrayView2<'_, f64>,
        iters: usize,
    ) -> Result<Vec<Array2<f64>>> {
        let mut s = self.init(x0)?;
        let mut xs = Vec::with_capacity(iters + 1);
        xs.push(s.x.clone());
        for _ in 0..iters {
            self.step(&mut s, c)?;
            xs.push(s.x.clone());
        }
        Ok(xs)
    }
}

/// Per-row `(duality gap, primal value)` of the LASSO `½‖y_b − Ax‖² + λ‖x‖₁` at the rows of
/// `x`, with the dual point `ν = r·min(1, λ/‖Aᵀr‖∞)`, `r = y − Ax`:
/// `gap = ½‖r‖² + λ‖x‖₁ − (⟨y, ν⟩ − ½‖ν‖²) ≥ F(x) − F*`.
pub fn lasso_gaps(
    a: ArrayView2<'_, f64>,
    x: ArrayView2<'_, f64>,
    y: ArrayView2<'_, f64>,
    lambda: f64,
) -> (Vec<f64>, Vec<f64>) {
    let r = crate::func::residual(a, x, y);
    let atr = crate::func::matmul(r.view(), a);
    let mut gaps = Vec::with_capacity(x.nrows());
    let mut vals = Vec::with_capacity(x.nrows());
    for i in 0..x.nrows() {
        let (rr, yr) = (r.row(i), y.row(i));
        let c = atr.row(i).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let s = if c > lambda { lambda / c } else { 1.0 };
        let p = 0.5 * rr.dot(&rr) + lambda * x.row(i).iter().map(|v| v.abs()).sum::<f64>();
        gaps.push(super::lasso::gap_from_residual(p, rr, yr, s, 1.0, 0.0));
        vals.push(p);
    }
    (gaps, vals)
}

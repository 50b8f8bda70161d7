//! Smooth functions evaluated row by row on batches (rows are independent samples or problems):
//! the batched solvers, the gradient-step block and the unsupervised losses use them.

use crate::error::{Error, Result};
use crate::linalg::{check_batch, Real};
use ndarray::{Array2, ArrayView2, Zip};
use std::sync::Arc;

/// `A·B` (faer GEMM, parallel above a size threshold).
pub fn matmul<T: Real>(a: ArrayView2<'_, T>, b: ArrayView2<'_, T>) -> Array2<T> {
    let mut c = Array2::zeros((a.nrows(), b.ncols()));
    T::gemm(c.view_mut(), a, b, T::one(), false);
    c
}

/// Residuals `y_b − A x_b` row by row: `Y − X Aᵀ` (B × M) for states `X` (B × N).
pub fn residual<T: Real>(
    a: ArrayView2<'_, T>,
    x: ArrayView2<'_, T>,
    y: ArrayView2<'_, T>,
) -> Array2<T> {
    let mut r = y.to_owned();
    T::gemm(r.view_mut(), x, a.t(), -T::one(), true);
    r
}

/// A smooth function of the state with a context, evaluated row by row:
/// the gradient step block and the unsupervised losses use it.
pub trait BatchSmooth: Send + Sync {
    /// Name for reports.
    fn name(&self) -> String;
    /// State width.
    fn dim(&self) -> usize;
    /// Context width.
    fn ctx_dim(&self) -> usize;
    /// `f(x_b; c_b)` for every row.
    fn values(&self, x: ArrayView2<'_, f64>, c: ArrayView2<'_, f64>) -> Vec<f64>;
    /// `∇f(x_b; c_b)` row by row.
    fn gradient(&self, x: ArrayView2<'_, f64>, c: ArrayView2<'_, f64>) -> Array2<f64>;
    /// The forward (gradient) step `out ← x − s∇f(x; c)` row by row (`out` is made the shape
    /// of `x`). The default forms the gradient; a function with a cheaper fused form (least
    /// squares: one GEMM accumulating into a copy of `x`) overrides it.
    fn forward_step_into(
        &self,
        out: &mut Array2<f64>,
        x: ArrayView2<'_, f64>,
        c: ArrayView2<'_, f64>,
        s: f64,
    ) {
        let g = self.gradient(x, c);
        *out = g;
        Zip::from(&mut *out)
            .and(&x)
            .for_each(|o, &xv| *o = xv - s * *o);
    }
    /// `∇²f(x_b; c_b) v_b` row by row.
    fn hvp(
        &self,
        x: ArrayView2<'_, f64>,
        c: ArrayView2<'_, f64>,
        v: ArrayView2<'_, f64>,
    ) -> Array2<f64>;
    /// `(∂∇f/∂c)ᵀ v` row by row (B × `ctx_dim`): how the gradient moves with the context, for
    /// the context VJP of a gradient step. Default: `Unsupported`.
    fn grad_ctx_vjp(
        &self,
        x: ArrayView2<'_, f64>,
        c: ArrayView2<'_, f64>,
        v: ArrayView2<'_, f64>,
    ) -> Result<Array2<f64>> {
        let _ = (x, c, v);
        Err(Error::unsupported(
            "a context derivative of the gradient",
            self.name(),
        ))
    }
}

/// `f(x; y) = ½‖A x − y‖²` with a dense `A` (M × N); the context is `y`.
#[derive(Clone, Debug)]
pub struct LeastSquaresBatch {
    a: Arc<Array2<f64>>,
}

impl LeastSquaresBatch {
    /// `Err` if `A` is empty or not finite.
    pub fn new(a: Arc<Array2<f64>>) -> Result<Self> {
        if a.is_empty() {
            return Err(Error::param(
                "A",
                "empty",
                "the matrix needs rows and columns",
            ));
        }
        check_batch("LeastSquaresBatch", "A", a.nrows(), a.ncols(), a.view())?;
        Ok(Self { a })
    }

    /// The matrix.
    pub fn matrix(&self) -> &Arc<Array2<f64>> {
        &self.a
    }

    /// Residuals `y − A x` row by row (B × M).
    pub fn residual(&self, x: ArrayView2<'_, f64>, y: ArrayView2<'_, f64>) -> Array2<f64> {
        residual(self.a.view(), x, y)
    }
}

impl BatchSmooth for LeastSquaresBatch {
    fn name(&self) -> String {
        "½‖Ax − y‖²".into()
    }
    /// `∇f = Aᵀ(Ax − y)`, so `∂∇f/∂y = −Aᵀ` and the VJP is `−A v` (rows: `−v Aᵀ`).
    fn grad_ctx_vjp(
        &self,
        _x: ArrayView2<'_, f64>,
        _c: ArrayView2<'_, f64>,
        v: ArrayView2<'_, f64>,
    ) -> Result<Array2<f64>> {
        let mut out = Array2::zeros((v.nrows(), self.a.nrows()));
        f64::gemm(out.view_mut(), v, self.a.t(), -1.0, false);
        Ok(out)
    }
    fn dim(&self) -> usize {
        self.a.ncols()
    }
    fn ctx_dim(&self) -> usize {
        self.a.nrows()
    }
    fn values(&self, x: ArrayView2<'_, f64>, c: ArrayView2<'_, f64>) -> Vec<f64> {
        self.residual(x, c)
            .rows()
            .into_iter()
            .map(|r| 0.5 * r.dot(&r))
            .collect()
    }
    fn gradient(&self, x: ArrayView2<'_, f64>, c: ArrayView2<'_, f64>) -> Array2<f64> {
        // −rA in one GEMM (α = −1), r = y − Ax.
        let r = self.residual(x, c);
        let mut g = Array2::zeros((x.nrows(), self.a.ncols()));
        f64::gemm(g.view_mut(), r.view(), self.a.view(), -1.0, false);
        g
    }
    /// `x + s·rA`, `r = y − Ax`: one GEMM accumulating into a copy of `x`.
    fn forward_step_into(
        &self,
        out: &mut Array2<f64>,
        x: ArrayView2<'_, f64>,
        c: ArrayView2<'_, f64>,
        s: f64,
    ) {
        let r = self.residual(x, c);
        if out.dim() != x.dim() {
            *out = Array2::zeros(x.raw_dim());
        }
        out.assign(&x);
        f64::gemm(out.view_mut(), r.view(), self.a.view(), s, true);
    }
    fn hvp(
        &self,
        _x: ArrayView2<'_, f64>,
        _c: ArrayView2<'_, f64>,
        v: ArrayView2<'_, f64>,
    ) -> Array2<f64> {
        let av = matmul(v, self.a.t());
        matmul(av.view(), self.a.view())
    }
}

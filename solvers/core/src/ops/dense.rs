//! Dense matrices (faer GEMV/GEMM) and seeded Gaussian measurement matrices.

use super::{check_batch, LinearOperator};
use crate::error::{Error, Result};
use crate::linalg::{norm2, Real};
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};
use rand::SeedableRng;

/// A dense matrix `A ∈ ℝ^{m×n}` as an operator. Products go through faer's GEMM on zero-copy
/// views; [`LinearOperator::apply_batch_into`] multiplies a whole batch (columns) at once.
#[derive(Clone, Debug)]
pub struct DenseMatrix<T: Real> {
    a: Array2<T>,
}

impl<T: Real> DenseMatrix<T> {
    /// Wraps a matrix; its entries must be finite.
    pub fn new(a: Array2<T>) -> Result<Self> {
        if let Some((i, v)) = crate::linalg::first_non_finite(&a) {
            return Err(Error::NonFinite {
                what: "DenseMatrix::new matrix".into(),
                index: i,
                value: format!("{v}"),
            });
        }
        Ok(Self { a })
    }

    /// Gaussian measurement matrix with i.i.d. entries `N(0, 1/m)` from a seeded RNG
    /// (the compressed-sensing convention: columns have unit norm in expectation).
    pub fn gaussian(m: usize, n: usize, seed: u64) -> Result<Self> {
        if m == 0 || n == 0 {
            return Err(Error::param(
                "shape",
                format!("{m}x{n}"),
                "a Gaussian matrix needs m >= 1 and n >= 1",
            ));
        }
        use rand_distr::{Distribution, StandardNormal};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let s = 1.0 / (m as f64).sqrt();
        let a = Array2::from_shape_simple_fn((m, n), || {
            let v: f64 = StandardNormal.sample(&mut rng);
            T::c(v * s)
        });
        Ok(Self { a })
    }

    /// Rescales every nonzero column to unit Euclidean norm.
    pub fn normalize_columns(mut self) -> Self {
        for mut col in self.a.axis_iter_mut(Axis(1)) {
            let nrm = norm2(col.view());
            if nrm > T::zero() {
                col.mapv_inplace(|v| v / nrm);
            }
        }
        self
    }

    /// The matrix.
    pub fn matrix(&self) -> ArrayView2<'_, T> {
        self.a.view()
    }
}

impl<T: Real> LinearOperator<T> for DenseMatrix<T> {
    fn shape(&self) -> (usize, usize) {
        self.a.dim()
    }
    fn name(&self) -> String {
        format!("DenseMatrix({}x{})", self.a.nrows(), self.a.ncols())
    }
    fn apply_unchecked(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        crate::linalg::gemv_into(out, self.a.view(), x);
    }
    fn adjoint_unchecked(&self, out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        crate::linalg::gemv_into(out, self.a.t(), y);
    }
    /// `‖A‖₂` **exactly** (to rounding) when `min(m, n) ≤ 2048`: `√λ_max` of the smaller Gram
    /// matrix (`AAᵀ` or `AᵀA`, one GEMM) by faer's symmetric eigensolver — for a 500×2000
    /// Gaussian matrix 0.1 s where the power iteration took 1.3 s (about 1700 products with
    /// `A` and `Aᵀ`: the top singular values of such matrices are close) and still approached
    /// from below. Larger matrices, or an eigensolver failure, use the power iteration.
    fn opnorm_estimate(&self, params: super::PowerIteration) -> Result<T> {
        let (m, n) = self.a.dim();
        let k = m.min(n);
        if k == 0 {
            return Ok(T::zero());
        }
        if k <= 2048 {
            let mut g = Array2::zeros((k, k));
            if m <= n {
                T::gemm(g.view_mut(), self.a.view(), self.a.t(), T::one(), false);
            } else {
                T::gemm(g.view_mut(), self.a.t(), self.a.view(), T::one(), false);
            }
            if let Ok(ev) = T::sym_eigenvalues(g.view()) {
                if let Some(&top) = ev.last() {
                    if top.is_finite() {
                        return Ok(top.max(T::zero()).sqrt());
                    }
                }
            }
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(params.seed);
        let x: ndarray::Array1<T> = crate::linalg::randn(n, &mut rng);
        super::lanczos_norm_on(self, x, ndarray::Array1::zeros(m), params)
    }
    fn apply_batch_into(&self, out: ArrayViewMut2<'_, T>, x: ArrayView2<'_, T>) -> Result<()> {
        let (m, n) = self.shape();
        check_batch(&self.name(), "apply_batch", (n, m), x.dim(), out.dim())?;
        T::gemm(out, self.a.view(), x, T::one(), false);
        Ok(())
    }
    fn adjoint_batch_into(&self, out: ArrayViewMut2<'_, T>, y: ArrayView2<'_, T>) -> Result<()> {
        let (m, n) = self.shape();
        check_batch(&self.name(), "adjoint_batch", (m, n), y.dim(), out.dim())?;
        T::gemm(out, self.a.t(), y, T::one(), false);
        Ok(())
    }
}

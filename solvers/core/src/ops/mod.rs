//! Linear operators with adjoints, combinators, and nonlinear forward maps.
//!
//! A [`LinearOperator`] `A: ℝⁿ → ℝᵐ` maps flat vectors (images are stored row-major) and knows
//! its adjoint `Aᵀ`, i.e. `⟨Ax, y⟩ = ⟨x, Aᵀy⟩` for all `x`, `y` (checked for every operator of
//! the crate by the test kit's dot-product test). Implementors write the two unchecked kernels
//! [`LinearOperator::apply_unchecked`] / [`LinearOperator::adjoint_unchecked`]; callers use
//! [`LinearOperator::apply_into`] / [`LinearOperator::adjoint_into`], which check shapes and
//! return [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) instead of panicking.

mod combinators;
mod conv;
mod correlation;
mod dense;
mod forward;
mod grad;
mod mask;
mod sparse;

/// The backend-generic view of [`LinearOperator`] the solvers use (see [`crate::backend`]).
pub use crate::backend::{lanczos_norm_on, power_iteration_on, OperatorOn};
pub use combinators::{Compose, Diagonal, Identity, Scaled, Stack, Sum, Transpose};
pub use conv::{invert_extension, Boundary, Conv2d, ConvMethod};
pub use correlation::ValidCorrelation2d;
pub use dense::DenseMatrix;
pub use forward::{ForwardMap, Linear, SquaredModulus};
pub use grad::Gradient2d;
pub use mask::{Mask, Subsample};
/// Scalars the FFT path of [`Conv2d`] works with (`f32`, `f64`); re-exported from rustfft.
pub use rustfft::FftNum;
pub use sparse::{CscMatrix, CsrMatrix};

use crate::error::Result;
use crate::linalg::{check_len, randn, Real};
use ndarray::{Array1, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};
use rand::SeedableRng;

/// Settings of the iterative norm estimate behind [`LinearOperator::opnorm_estimate`] (the
/// Lanczos process, [`lanczos_norm_on`]; the same settings drive [`power_iteration_on`]).
#[derive(Clone, Copy, Debug)]
pub struct PowerIteration {
    /// Maximum number of `AᵀA` products.
    pub max_iters: usize,
    /// Stop when the estimate of ‖A‖² changes by less than `tol` relatively.
    pub tol: f64,
    /// Seed of the random start vector.
    pub seed: u64,
}

impl Default for PowerIteration {
    fn default() -> Self {
        Self {
            max_iters: 5000,
            tol: 1e-10,
            seed: 0,
        }
    }
}

/// A linear map `A: ℝⁿ → ℝᵐ` with its adjoint.
pub trait LinearOperator<T: Real>: Send + Sync {
    /// `(m, n)`: dimension of the range, dimension of the domain.
    fn shape(&self) -> (usize, usize);

    /// A short human-readable name (used in error messages and reports).
    fn name(&self) -> String {
        "operator".into()
    }

    /// `out ← A x`. Implementors may assume `x.len() == n` and `out.len() == m`.
    fn apply_unchecked(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>);

    /// `out ← Aᵀ y`. Implementors may assume `y.len() == m` and `out.len() == n`.
    fn adjoint_unchecked(&self, out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>);

    /// `out ← A x`, with shape checks.
    fn apply_into(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) -> Result<()> {
        let (m, n) = self.shape();
        if x.len() != n || out.len() != m {
            check_len(&format!("{}::apply", self.name()), "x", n, x.len())?;
            check_len(&format!("{}::apply", self.name()), "out", m, out.len())?;
        }
        self.apply_unchecked(out, x);
        Ok(())
    }

    /// `out ← Aᵀ y`, with shape checks.
    fn adjoint_into(&self, out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) -> Result<()> {
        let (m, n) = self.shape();
        if y.len() != m || out.len() != n {
            check_len(&format!("{}::adjoint", self.name()), "y", m, y.len())?;
            check_len(&format!("{}::adjoint", self.name()), "out", n, out.len())?;
        }
        self.adjoint_unchecked(out, y);
        Ok(())
    }

    /// Allocating `A x`.
    fn apply(&self, x: ArrayView1<'_, T>) -> Result<Array1<T>> {
        let mut out = Array1::zeros(self.shape().0);
        self.apply_into(out.view_mut(), x)?;
        Ok(out)
    }

    /// Allocating `Aᵀ y`.
    fn adjoint(&self, y: ArrayView1<'_, T>) -> Result<Array1<T>> {
        let mut out = Array1::zeros(self.shape().1);
        self.adjoint_into(out.view_mut(), y)?;
        Ok(out)
    }

    /// Batched `OUT ← A X` where the columns of `X` (n × B) are samples; `OUT` is m × B.
    /// The default loops over columns; dense matrices override it with one GEMM.
    fn apply_batch_into(&self, mut out: ArrayViewMut2<'_, T>, x: ArrayView2<'_, T>) -> Result<()> {
        let (m, n) = self.shape();
        check_batch(&self.name(), "apply_batch", (n, m), x.dim(), out.dim())?;
        for (o, xi) in out.axis_iter_mut(Axis(1)).zip(x.axis_iter(Axis(1))) {
            self.apply_unchecked(o, xi);
        }
        Ok(())
    }

    /// Batched `OUT ← Aᵀ Y` where the columns of `Y` (m × B) are samples; `OUT` is n × B.
    fn adjoint_batch_into(
        &self,
        mut out: ArrayViewMut2<'_, T>,
        y: ArrayView2<'_, T>,
    ) -> Result<()> {
        let (m, n) = self.shape();
        check_batch(&self.name(), "adjoint_batch", (m, n), y.dim(), out.dim())?;
        for (o, yi) in out.axis_iter_mut(Axis(1)).zip(y.axis_iter(Axis(1))) {
            self.adjoint_unchecked(o, yi);
        }
        Ok(())
    }

    /// Estimate of the operator norm ‖A‖₂ = σ_max(A) by the Lanczos process on `AᵀA` from a
    /// seeded random start ([`lanczos_norm_on`]): a lower bound of σ_max that increases to
    /// it; it stops when it changes by less than `tol` (relative) or after `max_iters`
    /// products. Operators with a closed form (the 2-D gradient) or a cheaper exact route
    /// (small dense matrices) override it.
    fn opnorm_estimate(&self, params: PowerIteration) -> Result<T> {
        let (m, n) = self.shape();
        if n == 0 || m == 0 {
            return Ok(T::zero());
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(params.seed);
        let x: Array1<T> = randn(n, &mut rng);
        lanczos_norm_on(self, x, Array1::zeros(m), params)
    }
}

fn check_batch(
    name: &str,
    what: &str,
    (n_in, n_out): (usize, usize),
    x: (usize, usize),
    out: (usize, usize),
) -> Result<()> {
    let ctx = format!("{name}::{what}");
    check_len(&ctx, "input rows", n_in, x.0)?;
    check_len(&ctx, "output rows", n_out, out.0)?;
    check_len(&ctx, "output columns (batch size)", x.1, out.1)
}

macro_rules! forward_impl {
    ($($ty:ty),*) => {$(
        impl<T: Real, O: LinearOperator<T> + ?Sized> LinearOperator<T> for $ty {
            fn shape(&self) -> (usize, usize) {
                (**self).shape()
            }
            fn name(&self) -> String {
                (**self).name()
            }
            fn apply_unchecked(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
                (**self).apply_unchecked(out, x)
            }
            fn adjoint_unchecked(&self, out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
                (**self).adjoint_unchecked(out, y)
            }
            fn apply_batch_into(&self, out: ArrayViewMut2<'_, T>, x: ArrayView2<'_, T>) -> Result<()> {
                (**self).apply_batch_into(out, x)
            }
            fn adjoint_batch_into(&self, out: ArrayViewMut2<'_, T>, y: ArrayView2<'_, T>) -> Result<()> {
                (**self).adjoint_batch_into(out, y)
            }
        }
    )*};
}
forward_impl!(&O, Box<O>, std::sync::Arc<O>);

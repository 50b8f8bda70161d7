//! The [`Differentiable`] trait (batched forward pass and vector-Jacobian products) and the
//! batch losses. [`Unrolled`](super::Unrolled) composes blocks into a K-layer network.
//!
//! # Conventions
//! A batch is an `Array2<T>` whose **rows are samples**. Every block maps a state batch
//! `x` (B × n_in) to a state batch (B × n_out) and may read a *context* batch `c` (B × n_c)
//! that is constant through the unrolled network, e.g. the measurements `y` of an inverse
//! problem. Parameters are a flat `&[T]` owned by the caller, so a whole network's
//! parameters are one vector (one optimizer state, one checkpoint).
//!
//! The backward pass is reverse mode by hand: `vjp(p, x, c, ḡ)` returns `x̄ = (∂f/∂x)ᵀ ḡ`
//! (summed over the batch row by row) and *adds* `(∂f/∂p)ᵀ ḡ`, summed over the batch, to the
//! parameter gradient. There is no tape: [`Unrolled`] stores the K + 1 iterates
//! (memory `(K + 1)·B·n`) and each block recomputes any cheap intermediate it needs.

use crate::error::Result;
use crate::linalg::{check_batch, Real};
use ndarray::{Array2, ArrayView2};

/// A differentiable map on batches with explicit vector-Jacobian products.
///
/// Implement it for one new block to add a new unfolded algorithm; see the
/// [`blocks`](super::blocks) module for the provided ones.
pub trait Differentiable<T: Real = f64>: Send + Sync {
    /// Short name for reports and errors.
    fn name(&self) -> String;
    /// Width of the input state.
    fn in_dim(&self) -> usize;
    /// Width of the output state.
    fn out_dim(&self) -> usize;
    /// Width of the context (0 if unused).
    fn ctx_dim(&self) -> usize {
        0
    }
    /// Number of parameters.
    fn num_params(&self) -> usize;
    /// `f(p; x, c)`, row by row.
    fn forward(&self, p: &[T], x: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Result<Array2<T>>;
    /// Returns `(∂f/∂x)ᵀ ḡ` row by row and adds `Σ_rows (∂f/∂p)ᵀ ḡ` to `gp`.
    fn vjp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>>;
    /// Forward pass that also returns intermediates for [`Differentiable::vjp_saved`], so the
    /// backward pass need not recompute them (default: saves nothing).
    fn forward_save(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
    ) -> Result<(Array2<T>, Saved)> {
        Ok((self.forward(p, x, c)?, None))
    }
    /// [`Differentiable::vjp`] given what [`Differentiable::forward_save`] kept (default:
    /// ignores it).
    fn vjp_saved(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        _saved: &Saved,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        self.vjp(p, x, c, g, gp)
    }
}

/// Intermediates a block keeps from its forward pass for its backward pass.
pub type Saved = Option<Box<dyn std::any::Any + Send + Sync>>;

impl<T: Real, D: Differentiable<T> + ?Sized> Differentiable<T> for Box<D> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn in_dim(&self) -> usize {
        (**self).in_dim()
    }
    fn out_dim(&self) -> usize {
        (**self).out_dim()
    }
    fn ctx_dim(&self) -> usize {
        (**self).ctx_dim()
    }
    fn num_params(&self) -> usize {
        (**self).num_params()
    }
    fn forward(&self, p: &[T], x: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        (**self).forward(p, x, c)
    }
    fn vjp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        (**self).vjp(p, x, c, g, gp)
    }
    fn forward_save(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
    ) -> Result<(Array2<T>, Saved)> {
        (**self).forward_save(p, x, c)
    }
    fn vjp_saved(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        saved: &Saved,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        (**self).vjp_saved(p, x, c, saved, g, gp)
    }
}

/// A loss on the last state of a batch: `value` is the mean over the batch and the gradient is
/// that of the mean.
pub trait BatchLoss<T: Real = f64>: Send + Sync {
    /// Name for reports.
    fn name(&self) -> String;
    /// `(ℓ, ∂ℓ/∂x)` for the output batch `x`, the context `c` and the targets.
    fn value_grad(
        &self,
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        target: ArrayView2<'_, T>,
    ) -> Result<(T, Array2<T>)>;
}

/// Supervised loss `(1/B) Σ_b ‖x_b − x*_b‖²` (sum over coordinates, mean over samples).
#[derive(Clone, Copy, Debug, Default)]
pub struct SquaredError;

impl<T: Real> BatchLoss<T> for SquaredError {
    fn name(&self) -> String {
        "squared error".into()
    }
    fn value_grad(
        &self,
        x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        target: ArrayView2<'_, T>,
    ) -> Result<(T, Array2<T>)> {
        check_batch("SquaredError", "target", x.nrows(), x.ncols(), target)?;
        let b = T::c(x.nrows().max(1) as f64);
        let d = &x - &target;
        let v = d.iter().map(|&e| e * e).sum::<T>() / b;
        Ok((v, d * (T::c(2.0) / b)))
    }
}

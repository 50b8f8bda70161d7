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
use ndarray::{Array2, ArrayView2, ArrayViewMut2};

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
    /// `(∂f/∂c)ᵀ ḡ` row by row: the gradient that flows into the context (B × `c.ncols()`), so
    /// that hyperparameters, times or conditioning inputs carried in the context get gradients.
    /// The default returns zeros for a block that reads no context (`ctx_dim() == 0`) and an
    /// `Unsupported` error otherwise; a block that reads its context overrides it.
    fn vjp_ctx(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        let _ = (p, g);
        if self.ctx_dim() == 0 {
            Ok(Array2::zeros((x.nrows(), c.ncols())))
        } else {
            Err(crate::error::Error::unsupported(
                "a context vector-Jacobian product",
                self.name(),
            ))
        }
    }
    /// `(∂f/∂x) v` row by row: the state JVP (forward mode), used by ODE adjoints,
    /// linearizations and forward-over-reverse second order. The default is an `Unsupported`
    /// error.
    fn jvp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        let _ = (p, x, c, v);
        Err(crate::error::Error::unsupported(
            "a Jacobian-vector product",
            self.name(),
        ))
    }
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
    /// Forward pass into `out` (made B × n_out), keeping what the backward pass needs in
    /// `ws`; the caller reuses both from call to call: a block that overrides this and
    /// [`Differentiable::vjp_ws`] allocates nothing once its buffers exist. The default moves
    /// the result of [`Differentiable::forward_save`] into `out` (allocates, copies nothing).
    fn forward_ws(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        ws: &mut Workspace<T>,
        out: &mut Array2<T>,
    ) -> Result<()> {
        let (y, saved) = self.forward_save(p, x, c)?;
        *out = y;
        ws.saved = saved;
        Ok(())
    }
    /// `out = (∂f/∂x)ᵀ ḡ` (made B × n_in) after [`Differentiable::forward_ws`] on the same
    /// `x` and `ws`; adds the parameter gradient to `gp`. The default moves the result of
    /// [`Differentiable::vjp_saved`] into `out`.
    #[allow(clippy::too_many_arguments)]
    fn vjp_ws(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        ws: &mut Workspace<T>,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
        out: &mut Array2<T>,
    ) -> Result<()> {
        *out = self.vjp_saved(p, x, c, &ws.saved, g, gp)?;
        Ok(())
    }
}

/// Intermediates a block keeps from its forward pass for its backward pass.
pub type Saved = Option<Box<dyn std::any::Any + Send + Sync>>;

/// What a block keeps between [`Differentiable::forward_ws`] and
/// [`Differentiable::vjp_ws`]: numbered buffers, reallocated only when their shape changes,
/// and (for blocks without their own `_ws` methods) a [`Saved`]. The host case of
/// [`WorkspaceOn`](super::on::WorkspaceOn).
pub type Workspace<T> = super::on::WorkspaceOn<Array2<T>>;

impl<T: Real> super::on::WorkspaceOn<Array2<T>> {
    /// Makes `bufs[i]` of shape `shapes[i]` (allocating only buffers that are missing or of
    /// another shape) and returns the buffers.
    pub fn buffers(&mut self, shapes: &[(usize, usize)]) -> &mut [Array2<T>] {
        if self.bufs.len() < shapes.len() {
            self.bufs
                .resize_with(shapes.len(), || Array2::zeros((0, 0)));
        }
        for (b, &sh) in self.bufs.iter_mut().zip(shapes) {
            if b.dim() != sh {
                *b = Array2::zeros(sh);
            }
        }
        &mut self.bufs[..shapes.len()]
    }
}

/// Boxed and shared blocks are blocks.
macro_rules! forward_pointer {
    ($ptr:ident) => {
        impl<T: Real, D: Differentiable<T> + ?Sized> Differentiable<T> for $ptr<D> {
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
            fn forward(
                &self,
                p: &[T],
                x: ArrayView2<'_, T>,
                c: ArrayView2<'_, T>,
            ) -> Result<Array2<T>> {
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
            fn vjp_ctx(
                &self,
                p: &[T],
                x: ArrayView2<'_, T>,
                c: ArrayView2<'_, T>,
                g: ArrayView2<'_, T>,
            ) -> Result<Array2<T>> {
                (**self).vjp_ctx(p, x, c, g)
            }
            fn jvp(
                &self,
                p: &[T],
                x: ArrayView2<'_, T>,
                c: ArrayView2<'_, T>,
                v: ArrayView2<'_, T>,
            ) -> Result<Array2<T>> {
                (**self).jvp(p, x, c, v)
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
            fn forward_ws(
                &self,
                p: &[T],
                x: ArrayView2<'_, T>,
                c: ArrayView2<'_, T>,
                ws: &mut Workspace<T>,
                out: &mut Array2<T>,
            ) -> Result<()> {
                (**self).forward_ws(p, x, c, ws, out)
            }
            fn vjp_ws(
                &self,
                p: &[T],
                x: ArrayView2<'_, T>,
                c: ArrayView2<'_, T>,
                ws: &mut Workspace<T>,
                g: ArrayView2<'_, T>,
                gp: &mut [T],
                out: &mut Array2<T>,
            ) -> Result<()> {
                (**self).vjp_ws(p, x, c, ws, g, gp, out)
            }
        }
    };
}
forward_pointer!(Box);
use std::sync::Arc;
forward_pointer!(Arc);

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
    /// [`BatchLoss::value_grad`] writing the gradient into `out` (default: allocates).
    fn value_grad_into(
        &self,
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        target: ArrayView2<'_, T>,
        mut out: ArrayViewMut2<'_, T>,
    ) -> Result<T> {
        let (v, g) = self.value_grad(x, c, target)?;
        out.assign(&g);
        Ok(v)
    }
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
    fn value_grad_into(
        &self,
        x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        target: ArrayView2<'_, T>,
        mut out: ArrayViewMut2<'_, T>,
    ) -> Result<T> {
        check_batch("SquaredError", "target", x.nrows(), x.ncols(), target)?;
        if out.dim() != x.dim() {
            return Err(crate::error::Error::shape(
                "SquaredError",
                "gradient buffer",
                format!("{:?}", x.dim()),
                format!("{:?}", out.dim()),
            ));
        }
        let b = T::c(x.nrows().max(1) as f64);
        let (two_b, mut v) = (T::c(2.0) / b, T::zero());
        ndarray::Zip::from(&mut out)
            .and(&x)
            .and(&target)
            .for_each(|o, &a, &t| {
                let d = a - t;
                v += d * d;
                *o = d * two_b;
            });
        Ok(v / b)
    }
}

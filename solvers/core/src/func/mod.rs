//! Functions, smooth functions and proximal operators.
//!
//! * [`Function`]: value `f(x)` (`+∞` outside the domain of an indicator), [`Properties`] and,
//!   where known in closed form, the convex conjugate `f*(y)`.
//! * [`Smooth`]: gradient, Hessian-vector product and the Lipschitz constant of the gradient.
//! * [`Prox`]: the proximal operator
//!   `prox_{γf}(x) = argmin_p f(p) + ‖p − x‖²/(2γ)`, the prox of the conjugate through the
//!   Moreau identity `x = prox_{γf}(x) + γ·prox_{f*/γ}(x/γ)`, and the Jacobian of the prox
//!   applied to a vector (`prox_jvp`, `prox_vjp`) where it exists almost everywhere.
//!
//! Every function of this module is run through the test kit (module `testing`, feature `testing`): agreement
//! with a brute-force minimization oracle on small inputs, the optimality condition
//! `(x − p)/γ ∈ ∂f(p)`, the Moreau identity (Fenchel–Young equality with the closed-form
//! conjugate), and finite-difference checks of gradients, Hessian-vector products and prox
//! Jacobians, in `f32` and `f64`.

mod batch;
mod fgp;
mod group;
mod indicators;
mod kernel_params;
mod losses;
mod matrix;
mod nonconvex;
mod norms;
mod separable;
mod tv;
mod wrappers;

/// The backend-generic views of these traits the solvers use (see [`crate::backend`]).
pub use crate::backend::{FunctionOn, ProxOn, SmoothOn};
pub use batch::{matmul, residual, BatchSmooth, LeastSquaresBatch};
pub use fgp::{fgp_iterations, CpuFgp, FgpKernels, FgpRun};
pub use group::{Groups, NormL21, Wgsef};
pub use indicators::{IndBallL1, IndBallL2, IndBox, IndNonnegative, IndSimplex};
pub use kernel_params::{CoordParams, SeparableKernel};
pub use losses::{LeastSquares, Logistic, MultinomialLogistic};
pub use matrix::{NuclearNorm, SorsaOrthonormality};
pub use nonconvex::{Cel0, GeneralizedGaussian, NormL0, NormLq};
pub use norms::{soft_threshold, ElasticNet, Huber, NormL1, SqrNormL2};
pub use tv::{SmoothedTv, TotalVariation, TvBoundary, TvKind, TvProx};
pub use wrappers::{Conjugate, MoreauEnvelope, Precompose, SeparableSum, Translate};

use crate::error::{Error, Result};
use crate::linalg::{check_finite_lazy, check_len, check_positive, Real};
use ndarray::{Array1, ArrayView1, ArrayViewMut1, Zip};

/// Structural properties of a function, used by solvers and by the test kit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Properties {
    /// Convex (then the Moreau identity and the subgradient inequality hold).
    pub convex: bool,
    /// A sum of functions of single coordinates.
    pub separable: bool,
    /// The indicator of a set (values 0 or +∞).
    pub indicator: bool,
    /// Differentiable with Lipschitz gradient (implements [`Smooth`]).
    pub smooth: bool,
    /// The prox is computed exactly (closed form or to machine precision); `false` for proxes
    /// computed by an inner iterative solver to a stated tolerance.
    pub exact_prox: bool,
}

impl Properties {
    /// The indicator of a closed convex set with an exact projection.
    pub fn convex_indicator() -> Self {
        Self {
            convex: true,
            indicator: true,
            exact_prox: true,
            ..Default::default()
        }
    }
}

/// A function `f: ℝⁿ → ℝ ∪ {+∞}`.
pub trait Function<T: Real>: Send + Sync {
    /// Short name for reports and errors.
    fn name(&self) -> String;
    /// The dimension `n` if the function is defined on a fixed space (`None`: any length).
    fn dim(&self) -> Option<usize> {
        None
    }
    /// `f(x)`; `+∞` outside the domain.
    fn value(&self, x: ArrayView1<'_, T>) -> Result<T>;
    /// Structural properties.
    fn properties(&self) -> Properties;
    /// The convex conjugate `f*(y) = sup_x ⟨x, y⟩ − f(x)` where known in closed form.
    fn conj_value(&self, _y: ArrayView1<'_, T>) -> Result<T> {
        Err(Error::unsupported(
            "the convex conjugate value",
            self.name(),
        ))
    }
}

/// A differentiable function with an `L`-Lipschitz gradient.
pub trait Smooth<T: Real>: Function<T> {
    /// `out ← ∇f(x)`.
    fn gradient_into(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) -> Result<()>;
    /// Allocating `∇f(x)`.
    fn gradient(&self, x: ArrayView1<'_, T>) -> Result<Array1<T>> {
        let mut out = Array1::zeros(x.len());
        self.gradient_into(out.view_mut(), x)?;
        Ok(out)
    }
    /// `out ← ∇²f(x) v` (Hessian-vector product).
    fn hvp_into(
        &self,
        out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        v: ArrayView1<'_, T>,
    ) -> Result<()>;
    /// Lipschitz constant of `∇f` (an upper bound), if known.
    fn lipschitz(&self) -> Option<T>;
}

/// A function with a computable proximal operator.
pub trait Prox<T: Real>: Function<T> {
    /// `out ← prox_{γf}(x) = argmin_p f(p) + ‖p − x‖²/(2γ)`, `γ > 0`.
    fn prox_into(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>, gamma: T) -> Result<()>;

    /// Allocating `prox_{γf}(x)`.
    fn prox(&self, x: ArrayView1<'_, T>, gamma: T) -> Result<Array1<T>> {
        let mut out = Array1::zeros(x.len());
        self.prox_into(out.view_mut(), x, gamma)?;
        Ok(out)
    }

    /// `out ← prox_{γf*}(x)` by the Moreau identity `prox_{γf*}(x) = x − γ·prox_{f/γ}(x/γ)`.
    fn conj_prox_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
    ) -> Result<()> {
        check_positive("gamma", gamma)?;
        let xs = x.mapv(|v| v / gamma);
        self.prox_into(out.view_mut(), xs.view(), T::one() / gamma)?;
        Zip::from(&mut out)
            .and(&x)
            .for_each(|o, &xi| *o = xi - gamma * *o);
        Ok(())
    }

    /// One dual update of PDHG for `g = f(· − z)` (`z = shift`, or 0), fused into one sweep
    /// where the function allows it: `y_old ← y` when `save_old`, then
    /// `y ← prox_{σg*}(y + σt) = prox_{σf*}(y + σ(t − z))` with `t = K x̄` (overwritten).
    /// Lengths are the caller's (PDHG checks them once). The default runs the generic
    /// operations; separable functions, [`NormL21`], [`SeparableSum`] and [`Translate`] fuse
    /// them (the same numbers up to rounding, one pass over the arrays).
    fn pdhg_dual_update_into(
        &self,
        y: ArrayViewMut1<'_, T>,
        y_old: ArrayViewMut1<'_, T>,
        save_old: bool,
        t: ArrayViewMut1<'_, T>,
        sigma: T,
        shift: Option<ArrayView1<'_, T>>,
    ) -> Result<()> {
        pdhg_dual_generic(self, y, y_old, save_old, t, sigma, shift)
    }

    /// One primal update of PDHG for `g = f(· − z)` (`z = shift`, or 0), fused where the
    /// function allows it: `x_old ← x` when `save_old`,
    /// `x ← prox_{τg}(x − τu) = z + prox_{τf}(x − τu − z)` with `u = Kᵀy`, and the
    /// extrapolation `x̄ ← x + θ(x − x_prev)` (`x_prev` the `x` on entry); `tmp` is scratch.
    #[allow(clippy::too_many_arguments)]
    fn pdhg_primal_update_into(
        &self,
        x: ArrayViewMut1<'_, T>,
        x_old: ArrayViewMut1<'_, T>,
        save_old: bool,
        xbar: ArrayViewMut1<'_, T>,
        u: ArrayView1<'_, T>,
        tmp: ArrayViewMut1<'_, T>,
        (tau, theta): (T, T),
        shift: Option<ArrayView1<'_, T>>,
    ) -> Result<()> {
        pdhg_primal_generic(self, x, x_old, save_old, xbar, u, tmp, (tau, theta), shift)
    }

    /// `out ← J v`, `J` the Jacobian of `x ↦ prox_{γf}(x)` (where it exists; a.e. for the
    /// piecewise-smooth proxes of this crate).
    fn prox_jvp_into(
        &self,
        _out: ArrayViewMut1<'_, T>,
        _x: ArrayView1<'_, T>,
        _gamma: T,
        _v: ArrayView1<'_, T>,
    ) -> Result<()> {
        Err(Error::unsupported("the prox Jacobian", self.name()))
    }

    /// `out ← Jᵀ w`. The default uses `J = Jᵀ`, true for the prox of every convex function
    /// (it is the Hessian of `½‖x‖² − γ·M_{γf}(x)`) and for separable proxes.
    fn prox_vjp_into(
        &self,
        out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
        w: ArrayView1<'_, T>,
    ) -> Result<()> {
        self.prox_jvp_into(out, x, gamma, w)
    }
}

/// [`Prox::pdhg_dual_update_into`] by the generic operations (any function).
pub(crate) fn pdhg_dual_generic<T: Real, F: Prox<T> + ?Sized>(
    f: &F,
    y: ArrayViewMut1<'_, T>,
    mut y_old: ArrayViewMut1<'_, T>,
    save_old: bool,
    mut t: ArrayViewMut1<'_, T>,
    sigma: T,
    shift: Option<ArrayView1<'_, T>>,
) -> Result<()> {
    if save_old {
        y_old.assign(&y);
    }
    match shift {
        Some(z) => Zip::from(&mut t)
            .and(&y)
            .and(&z)
            .for_each(|t, &y, &z| *t = y + sigma * (*t - z)),
        None => Zip::from(&mut t)
            .and(&y)
            .for_each(|t, &y| *t = y + sigma * *t),
    }
    f.conj_prox_into(y, t.view(), sigma)
}

/// [`Prox::pdhg_primal_update_into`] by the generic operations (any function).
#[allow(clippy::too_many_arguments)]
pub(crate) fn pdhg_primal_generic<T: Real, F: Prox<T> + ?Sized>(
    f: &F,
    mut x: ArrayViewMut1<'_, T>,
    mut x_old: ArrayViewMut1<'_, T>,
    save_old: bool,
    mut xbar: ArrayViewMut1<'_, T>,
    u: ArrayView1<'_, T>,
    mut tmp: ArrayViewMut1<'_, T>,
    (tau, theta): (T, T),
    shift: Option<ArrayView1<'_, T>>,
) -> Result<()> {
    xbar.assign(&x);
    match shift {
        Some(z) => {
            Zip::from(&mut tmp)
                .and(&x)
                .and(&u)
                .and(&z)
                .for_each(|t, &x, &u, &z| *t = x - tau * u - z);
            f.prox_into(x.view_mut(), tmp.view(), tau)?;
            x += &z;
        }
        None => {
            Zip::from(&mut tmp)
                .and(&x)
                .and(&u)
                .for_each(|t, &x, &u| *t = x - tau * u);
            f.prox_into(x.view_mut(), tmp.view(), tau)?;
        }
    }
    if save_old {
        x_old.assign(&xbar);
    }
    Zip::from(&mut xbar)
        .and(&x)
        .for_each(|b, &x| *b = x + theta * (x - *b));
    Ok(())
}

/// Validates the arguments of a prox: lengths, finiteness of `x`, `γ > 0`.
pub(crate) fn check_prox_args<T: Real>(
    name: &str,
    dim: Option<usize>,
    out_len: usize,
    x: ArrayView1<'_, T>,
    gamma: T,
) -> Result<()> {
    if let Some(n) = dim {
        check_len(name, "x", n, x.len())?;
    }
    check_len(name, "out", x.len(), out_len)?;
    check_positive("gamma", gamma)?;
    check_finite_lazy(|| format!("{name}: x"), x)
}

/// Validates a vector argument of fixed dimension and finiteness.
pub(crate) fn check_arg<T: Real>(
    name: &str,
    what: &str,
    dim: Option<usize>,
    x: ArrayView1<'_, T>,
) -> Result<()> {
    if let Some(n) = dim {
        check_len(name, what, n, x.len())?;
    }
    check_finite_lazy(|| format!("{name}: {what}"), x)
}

/// Tolerance used when testing membership of a set (relative to the scale of the set).
pub(crate) fn set_tol<T: Real>(scale: T) -> T {
    T::c(100.0) * T::epsilon() * (T::one() + scale.abs())
}

//! The backend-generic traits the solvers are written over.
//!
//! The solvers of [`solve`](crate::solve) (FISTA, PDHG, the TV prox's FGP loop, CG) are
//! written once over a vector type `V: `[`Vector`] and four traits on it:
//!
//! | trait | what a solver needs |
//! |---|---|
//! | [`FunctionOn`] | `f(x)`, the dimension, `f*(y)` where known |
//! | [`SmoothOn`] | `∇f(x)`, the Lipschitz constant of `∇f` |
//! | [`ProxOn`] | `prox_{γf}(x)`, `prox_{γf*}(x)` |
//! | [`OperatorOn`] | `Ax`, `Aᵀy`, the shape, an estimate of `‖A‖` |
//!
//! **On the CPU** the vector type is [`Array1`], and every ndarray [`Function`],
//! [`Smooth`], [`Prox`] and [`LinearOperator`] implements these traits through the blanket
//! implementations below: an implementor writes the ndarray traits (views, batches,
//! Jacobians), and the solvers see them through these.
//!
//! **On a device** the vector type is the backend's buffer; the backend implements
//! [`Vector`] (BLAS-1 and the fused momentum updates) and these traits for its operators and
//! functions, and the same solver code runs there, with no copy of an iterate to the host
//! per iteration. Method names end in `_on` so that they never clash with the ndarray
//! traits' methods on a type that has both.
//!
//! # Example: FISTA on a vector type that is not ndarray
//! See `solvers/core/tests/backend.rs`, which runs FISTA and PDHG on a plain `Vec` wrapper
//! and gets the ndarray iterates bit for bit.

use crate::error::{Error, Result};
use crate::func::{Function, Prox, Smooth};
use crate::linalg::{Real, Vector};
use crate::ops::{LinearOperator, PowerIteration};
use ndarray::Array1;

/// A function `f: V → ℝ ∪ {+∞}` on a backend's vectors (see the [module docs](self)).
pub trait FunctionOn<T: Real, V>: Send + Sync {
    /// Short name for reports and errors.
    fn name_on(&self) -> String;
    /// The dimension if fixed (`None`: any length).
    fn dim_on(&self) -> Option<usize>;
    /// `f(x)`.
    fn value_on(&self, x: &V) -> Result<T>;
    /// `f*(y)` where known in closed form (`Err(Unsupported)` otherwise).
    fn conj_value_on(&self, _y: &V) -> Result<T> {
        Err(Error::unsupported(
            "the convex conjugate value",
            self.name_on(),
        ))
    }
}

/// A differentiable function with a Lipschitz gradient on a backend's vectors.
pub trait SmoothOn<T: Real, V>: FunctionOn<T, V> {
    /// `out ← ∇f(x)`.
    fn gradient_on(&self, out: &mut V, x: &V) -> Result<()>;
    /// Lipschitz constant of `∇f`, if known.
    fn lipschitz_on(&self) -> Option<T>;
}

/// A function with a proximal operator on a backend's vectors.
pub trait ProxOn<T: Real, V>: FunctionOn<T, V> {
    /// `out ← prox_{γf}(x)`.
    fn prox_on(&self, out: &mut V, x: &V, gamma: T) -> Result<()>;
    /// `out ← prox_{γf*}(x)`; the default is the Moreau identity
    /// `prox_{γf*}(x) = x − γ·prox_{f/γ}(x/γ)` written with the [`Vector`] operations.
    fn conj_prox_on(&self, out: &mut V, x: &V, gamma: T) -> Result<()>
    where
        V: Vector<T>,
    {
        crate::linalg::check_positive("gamma", gamma)?;
        let mut xs = x.clone();
        xs.scale(T::one() / gamma);
        self.prox_on(out, &xs, T::one() / gamma)?;
        out.xpay(x, -gamma);
        Ok(())
    }
    /// The forward–backward step of FISTA and ISTA, `out ← prox_{sf}(y − s·g)` (`g = ∇h(y)`
    /// of the smooth part); `tmp` is scratch. The default is the generic operations; a device
    /// backend fuses it into one kernel for its separable functions.
    fn forward_backward_on(&self, out: &mut V, y: &V, step: T, g: &V, tmp: &mut V) -> Result<()>
    where
        V: Vector<T>,
    {
        tmp.set_axpy(y, -step, g);
        self.prox_on(out, tmp, step)
    }
    /// PDHG's dual update `y_old ← y` (when `save_old`), `y ← prox_{σf*}(y + σt)`, `t = Kx̄`
    /// (overwritten); see [`Prox::pdhg_dual_update_into`],
    /// which the CPU vectors use. The default is the generic operations.
    fn pdhg_dual_update_on(
        &self,
        y: &mut V,
        y_old: &mut V,
        save_old: bool,
        t: &mut V,
        sigma: T,
    ) -> Result<()>
    where
        V: Vector<T>,
    {
        if save_old {
            y_old.copy_from(y);
        }
        t.xpay(y, sigma);
        self.conj_prox_on(y, t, sigma)
    }
    /// PDHG's primal update `x_old ← x`, `x ← prox_{τf}(x − τu)` (`u = Kᵀy`),
    /// `x̄ ← x + θ(x − x_old)`; `tmp` is scratch. The default is the generic operations (and
    /// always saves `x_old`); the CPU vectors fuse it where the function allows
    /// ([`Prox::pdhg_primal_update_into`]).
    #[allow(clippy::too_many_arguments)]
    fn pdhg_primal_update_on(
        &self,
        x: &mut V,
        x_old: &mut V,
        save_old: bool,
        xbar: &mut V,
        u: &V,
        tmp: &mut V,
        (tau, theta): (T, T),
    ) -> Result<()>
    where
        V: Vector<T>,
    {
        let _ = save_old;
        x_old.copy_from(x);
        tmp.set_axpy(x_old, -tau, u);
        self.prox_on(x, tmp, tau)?;
        xbar.set_extrapolation(x, x_old, theta);
        Ok(())
    }
}

/// A linear map with its adjoint on a backend's vectors.
pub trait OperatorOn<T: Real, V>: Send + Sync {
    /// `(m, n)`: dimension of the range, of the domain.
    fn shape_on(&self) -> (usize, usize);
    /// `out ← A x` (lengths are the caller's responsibility, as in
    /// [`LinearOperator::apply_unchecked`]).
    fn apply_on(&self, out: &mut V, x: &V);
    /// `out ← Aᵀ y`.
    fn adjoint_on(&self, out: &mut V, y: &V);
    /// An estimate of `‖A‖₂` (see [`LinearOperator::opnorm_estimate`]).
    fn opnorm_on(&self, params: PowerIteration) -> Result<T>;
}

impl<T: Real, F: Function<T> + ?Sized> FunctionOn<T, Array1<T>> for F {
    fn name_on(&self) -> String {
        self.name()
    }
    fn dim_on(&self) -> Option<usize> {
        self.dim()
    }
    fn value_on(&self, x: &Array1<T>) -> Result<T> {
        self.value(x.view())
    }
    fn conj_value_on(&self, y: &Array1<T>) -> Result<T> {
        self.conj_value(y.view())
    }
}

impl<T: Real, F: Smooth<T> + ?Sized> SmoothOn<T, Array1<T>> for F {
    fn gradient_on(&self, out: &mut Array1<T>, x: &Array1<T>) -> Result<()> {
        self.gradient_into(out.view_mut(), x.view())
    }
    fn lipschitz_on(&self) -> Option<T> {
        self.lipschitz()
    }
}

impl<T: Real, F: Prox<T> + ?Sized> ProxOn<T, Array1<T>> for F {
    fn prox_on(&self, out: &mut Array1<T>, x: &Array1<T>, gamma: T) -> Result<()> {
        self.prox_into(out.view_mut(), x.view(), gamma)
    }
    fn conj_prox_on(&self, out: &mut Array1<T>, x: &Array1<T>, gamma: T) -> Result<()> {
        self.conj_prox_into(out.view_mut(), x.view(), gamma)
    }
    fn pdhg_dual_update_on(
        &self,
        y: &mut Array1<T>,
        y_old: &mut Array1<T>,
        save_old: bool,
        t: &mut Array1<T>,
        sigma: T,
    ) -> Result<()> {
        self.pdhg_dual_update_into(
            y.view_mut(),
            y_old.view_mut(),
            save_old,
            t.view_mut(),
            sigma,
            None,
        )
    }
    fn pdhg_primal_update_on(
        &self,
        x: &mut Array1<T>,
        x_old: &mut Array1<T>,
        save_old: bool,
        xbar: &mut Array1<T>,
        u: &Array1<T>,
        tmp: &mut Array1<T>,
        steps: (T, T),
    ) -> Result<()> {
        self.pdhg_primal_update_into(
            x.view_mut(),
            x_old.view_mut(),
            save_old,
            xbar.view_mut(),
            u.view(),
            tmp.view_mut(),
            steps,
            None,
        )
    }
}

impl<T: Real, O: LinearOperator<T> + ?Sized> OperatorOn<T, Array1<T>> for O {
    fn shape_on(&self) -> (usize, usize) {
        self.shape()
    }
    fn apply_on(&self, out: &mut Array1<T>, x: &Array1<T>) {
        self.apply_unchecked(out.view_mut(), x.view())
    }
    fn adjoint_on(&self, out: &mut Array1<T>, y: &Array1<T>) {
        self.adjoint_unchecked(out.view_mut(), y.view())
    }
    fn opnorm_on(&self, params: PowerIteration) -> Result<T> {
        self.opnorm_estimate(params)
    }
}

/// The power iteration for `‖A‖₂` on any [`Vector`] type, from the start vector `x`
/// (nonzero; overwritten): what [`LinearOperator::opnorm_estimate`] does on the CPU, for
/// backends implementing [`OperatorOn::opnorm_on`].
pub fn power_iteration_on<T: Real, V: Vector<T>, A: OperatorOn<T, V> + ?Sized>(
    a: &A,
    mut x: V,
    mut y: V,
    params: PowerIteration,
) -> Result<T> {
    let nx = x.norm2();
    if !(nx > T::zero()) {
        return Err(Error::param(
            "x",
            nx,
            "the power iteration needs a nonzero start vector",
        ));
    }
    x.scale(T::one() / nx);
    let mut z = x.zeros_like();
    let mut est = T::zero();
    let tol = T::c(params.tol);
    for _ in 0..params.max_iters {
        a.apply_on(&mut y, &x);
        a.adjoint_on(&mut z, &y);
        let nz = z.norm2();
        if nz == T::zero() {
            return Ok(T::zero());
        }
        let done = (nz - est).abs() <= tol * nz;
        est = nz;
        x.copy_from(&z);
        x.scale(T::one() / nz);
        if done {
            break;
        }
    }
    Ok(est.sqrt())
}

/// `‖A‖₂` by the Lanczos process on `AᵀA` from the start vector `x` (nonzero; overwritten), on
/// any [`Vector`] type: what [`LinearOperator::opnorm_estimate`] does by default.
///
/// With `q₁ = x/‖x‖`, the three-term recurrence `βⱼ₊₁qⱼ₊₁ = AᵀAqⱼ − αⱼqⱼ − βⱼqⱼ₋₁` builds the
/// tridiagonal `Tₖ` (diagonal `α`, off-diagonal `β`), whose largest eigenvalue (by Sturm
/// bisection) increases to `λ_max(AᵀA) = ‖A‖²` from below; it stops when that estimate changes
/// by less than `tol` relatively, after `max_iters` products, or when `βₖ₊₁ = 0` (an invariant
/// subspace: the estimate is then exact). Three vectors, no reorthogonalization (lost
/// orthogonality only repeats converged Ritz values; it never raises the largest above
/// `λ_max` beyond rounding). Its convergence depends on the square root of the relative
/// spectral gap where the power iteration's depends on the gap itself: the 2-D gradient's
/// norm, which the power iteration meets to 1e-10 after thousands of products, takes about a
/// hundred here.
///
/// # References
/// C. Lanczos, "An iteration method for the solution of the eigenvalue problem of linear
/// differential and integral operators", J. Res. Nat. Bur. Standards 45 (1950);
/// J. Kuczyński, H. Woźniakowski, "Estimating the largest eigenvalue by the power and Lanczos
/// algorithms with a random start", SIAM J. Matrix Anal. Appl. 13 (1992).
pub fn lanczos_norm_on<T: Real, V: Vector<T>, A: OperatorOn<T, V> + ?Sized>(
    a: &A,
    mut q: V,
    mut y: V,
    params: PowerIteration,
) -> Result<T> {
    let nq = q.norm2();
    if !(nq > T::zero()) {
        return Err(Error::param(
            "x",
            nq,
            "the Lanczos process needs a nonzero start vector",
        ));
    }
    q.scale(T::one() / nq);
    let mut q_prev = q.zeros_like();
    let mut w = q.zeros_like();
    let (mut alpha, mut beta): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let mut est = 0.0f64;
    let mut b_prev = 0.0f64;
    for _ in 0..params.max_iters.max(1) {
        a.apply_on(&mut y, &q);
        a.adjoint_on(&mut w, &y);
        let al = q.dot(&w);
        w.axpy(-al, &q);
        if b_prev > 0.0 {
            w.axpy(-T::c(b_prev), &q_prev);
        }
        alpha.push(al.as_f64());
        let b = w.norm2().as_f64();
        let new = tridiagonal_max_eigenvalue(&alpha, &beta);
        let done = (new - est).abs() <= params.tol * new.abs() || !(b > 1e-14 * new.abs());
        est = new;
        if done || !b.is_finite() {
            break;
        }
        beta.push(b);
        std::mem::swap(&mut q_prev, &mut q);
        std::mem::swap(&mut q, &mut w);
        q.scale(T::one() / T::c(b));
        b_prev = b;
    }
    Ok(T::c(est.max(0.0).sqrt()))
}

/// The largest eigenvalue of the symmetric tridiagonal matrix with diagonal `a` and
/// off-diagonal `b` (`b.len() = a.len() − 1`), by bisection on the Sturm count (the number of
/// negative pivots of `T − x I`) inside the Gershgorin interval, to about machine precision.
fn tridiagonal_max_eigenvalue(a: &[f64], b: &[f64]) -> f64 {
    let k = a.len();
    let off = |i: usize| -> f64 {
        (if i > 0 { b[i - 1].abs() } else { 0.0 }) + (if i + 1 < k { b[i].abs() } else { 0.0 })
    };
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (i, &ai) in a.iter().enumerate() {
        lo = lo.min(ai - off(i));
        hi = hi.max(ai + off(i));
    }
    // Eigenvalues below x.
    let below = |x: f64| -> usize {
        let mut count = 0;
        let mut d = 1.0f64;
        for (i, &ai) in a.iter().enumerate() {
            let bb = if i > 0 { b[i - 1] * b[i - 1] } else { 0.0 };
            d = ai - x - if i > 0 { bb / d } else { 0.0 };
            if d == 0.0 {
                d = -f64::EPSILON * (x.abs() + 1.0);
            }
            if d < 0.0 {
                count += 1;
            }
        }
        count
    };
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if below(mid) == k {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// Checks a start point on a backend's vectors: its length `n` (where the problem fixes it)
/// and that every entry is finite.
pub(crate) fn check_start<T: Real, V: Vector<T>>(
    ctx: &str,
    n: Option<usize>,
    x0: &V,
) -> Result<()> {
    if let Some(n) = n {
        crate::linalg::check_len(ctx, "x0", n, x0.len())?;
    }
    if !x0.all_finite() {
        return Err(Error::param(
            "x0",
            "a non-finite entry",
            "the start point must be finite",
        ));
    }
    Ok(())
}

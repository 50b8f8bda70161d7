//! One Chambolle–Pock (PDHG) iteration as a trainable block: the piece from which a learned
//! primal–dual method is unrolled, with its derivatives written once here.
//!
//! For `min_x f(x) + g(Kx − z)` (`f`, `g` convex with proxes, `K` a core operator, `z` the
//! context placed in the first `ctx` coordinates of `Kx`, zero below), one iteration from the
//! state `[x, x̄, y]` (widths `n`, `n`, `m`) is, with the core [`Pdhg`](crate::solve::Pdhg)'s
//! order and notation:
//!
//! ```text
//! t  = K x̄ − z,      w = y + σ t,       y⁺ = prox_{σg*}(w)
//! u  = Kᵀ y⁺,        v = x − τ u,       x⁺ = prox_{τf}(v)
//! x̄⁺ = x⁺ + θ (x⁺ − x)
//! ```
//!
//! The learned parameters are `[ln τ, ln σ]` (positive steps without a constraint); θ is fixed
//! (default 1). With `τ = 1/‖K‖`, `σ = 0.99/(τ‖K‖²)` ([`PdhgStep::classical_params`]) K blocks
//! are K iterations of the core PDHG from `y = 0`.
//!
//! # Derivatives
//! `D*`, the Jacobian of `prox_{σg*}` at `w`, is `I − J_g(w/σ; 1/σ)` by Moreau's identity
//! (`J_g` the prox Jacobian of [`Prox::prox_jvp_into`], symmetric); `J_f` is that of
//! `prox_{τf}` at `v`. A prox depends on its scale through `∂_s prox_{sh}(a) = −J (a − p)/s`
//! (differentiate `p + s∇h(p) = a`; a.e. for the piecewise-smooth proxes), so
//!
//! ```text
//! ∂y⁺/∂σ = D*(t − (w − y⁺)/σ),      ∂x⁺/∂τ = J_f(−u − (v − x⁺)/τ).
//! ```
//!
//! The VJP runs these backwards: from `(ḡ_x, ḡ_x̄, ḡ_y)`, `a = ḡ_x + (1+θ)ḡ_x̄`,
//! `v̄ = J_fᵀ a`, `x̄_in = v̄ − θ ḡ_x̄`, `ȳ⁺ = ḡ_y − τ K v̄`, `w̄ = D*ᵀ ȳ⁺`, `ȳ_in = w̄`,
//! `x̄̄_in = σ Kᵀ w̄`, `z̄ = −σ w̄` (first `ctx` coordinates), and the step gradients
//! `τ⟨v̄, −u − (v − x⁺)/τ⟩`, `σ⟨w̄, t − (w − y⁺)/σ⟩` (the factors τ, σ from the logarithms).
//!
//! # References
//! - A. Chambolle, T. Pock, "A first-order primal-dual algorithm for convex problems with
//!   applications to imaging", J. Math. Imaging Vis. 40 (2011), 120–145.
//! - J. Adler, O. Öktem, "Learned primal-dual reconstruction", IEEE TMI 37 (2018) — unrolled
//!   primal–dual iterations with learned components.

use super::Differentiable;
use crate::error::{Error, Result};
use crate::func::Prox;
use crate::linalg::{check_len, Real};
use crate::ops::{LinearOperator, PowerIteration};
use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, Zip};
use std::sync::Arc;

/// One PDHG iteration with learned steps `τ = e^{p₀}`, `σ = e^{p₁}` (see the module docs).
pub struct PdhgStep<T: Real = f64> {
    k: Arc<dyn LinearOperator<T>>,
    f: Arc<dyn Prox<T>>,
    g: Arc<dyn Prox<T>>,
    ctx: usize,
    theta: T,
}

/// The intermediates of one row's forward pass.
struct Row<T> {
    t: Array1<T>,
    w: Array1<T>,
    y: Array1<T>,
    u: Array1<T>,
    v: Array1<T>,
    x: Array1<T>,
}

impl<T: Real> PdhgStep<T> {
    /// The iteration for `min_x f(x) + g(Kx − z)`, the context `z` shifting the first `ctx`
    /// coordinates of `Kx` (`ctx = 0`: no context). `Err` if `ctx` exceeds `K`'s rows or a
    /// function's fixed dimension does not match `K`.
    pub fn new(
        k: Arc<dyn LinearOperator<T>>,
        f: Arc<dyn Prox<T>>,
        g: Arc<dyn Prox<T>>,
        ctx: usize,
    ) -> Result<Self> {
        let (m, n) = k.shape();
        if ctx > m {
            return Err(Error::param(
                "PdhgStep context width",
                ctx,
                format!("at most the {m} rows of K"),
            ));
        }
        if let Some(d) = f.dim() {
            check_len("PdhgStep", "primal function dimension", n, d)?;
        }
        if let Some(d) = g.dim() {
            check_len("PdhgStep", "dual-side function dimension", m, d)?;
        }
        Ok(Self {
            k,
            f,
            g,
            ctx,
            theta: T::one(),
        })
    }

    /// Over-relaxation θ ∈ [0, 1] (default 1).
    pub fn with_theta(mut self, theta: T) -> Result<Self> {
        if !(theta >= T::zero() && theta <= T::one()) {
            return Err(Error::param("theta", theta, "must lie in [0, 1]"));
        }
        self.theta = theta;
        Ok(self)
    }

    /// `(n, m)`: widths of the primal and dual variables.
    pub fn dims(&self) -> (usize, usize) {
        let (m, n) = self.k.shape();
        (n, m)
    }

    /// `[ln τ, ln σ]`; `Err` unless both are positive and finite.
    pub fn params_for(tau: T, sigma: T) -> Result<[T; 2]> {
        for (name, v) in [("tau", tau), ("sigma", sigma)] {
            if !(v > T::zero() && v.is_finite()) {
                return Err(Error::param(name, v, "a PDHG step must be positive"));
            }
        }
        Ok([tau.ln(), sigma.ln()])
    }

    /// `(τ, σ)` of the parameters `[ln τ, ln σ]`.
    pub fn steps(p: &[T]) -> (T, T) {
        (p[0].exp(), p[1].exp())
    }

    /// The core PDHG's default steps as parameters: `τ = 1/‖K‖`, `σ = 0.99/(τ‖K‖²)`, with
    /// `‖K‖` from the operator's estimate (default power iteration) times `1 + 10⁻⁶`.
    pub fn classical_params(&self) -> Result<[T; 2]> {
        let knorm = self.k.opnorm_estimate(PowerIteration::default())? * T::c(1.0 + 1e-6);
        let tau = T::one() / knorm;
        Self::params_for(tau, T::c(0.99) / (tau * knorm * knorm))
    }

    fn row(&self, p: &[T], state: ArrayView1<'_, T>, z: ArrayView1<'_, T>) -> Result<Row<T>> {
        let (n, m) = self.dims();
        let (tau, sigma) = Self::steps(p);
        let (x, xb, y) = (
            state.slice(s![..n]),
            state.slice(s![n..2 * n]),
            state.slice(s![2 * n..]),
        );
        let mut t = Array1::zeros(m);
        self.k.apply_into(t.view_mut(), xb)?;
        t.slice_mut(s![..self.ctx])
            .zip_mut_with(&z, |a, &b| *a -= b);
        let w = &y + &(&t * sigma);
        let mut yn = Array1::zeros(m);
        self.g.conj_prox_into(yn.view_mut(), w.view(), sigma)?;
        let mut u = Array1::zeros(n);
        self.k.adjoint_into(u.view_mut(), yn.view())?;
        let v = &x - &(&u * tau);
        let mut xn = Array1::zeros(n);
        self.f.prox_into(xn.view_mut(), v.view(), tau)?;
        Ok(Row {
            t,
            w,
            y: yn,
            u,
            v,
            x: xn,
        })
    }

    /// `out ← D*ᵀ a = a − J_g(w/σ; 1/σ) a`.
    fn conj_prox_vjp(
        &self,
        out: ArrayViewMut1<'_, T>,
        w: &Array1<T>,
        sigma: T,
        a: &Array1<T>,
    ) -> Result<()> {
        let ws = w.mapv(|e| e / sigma);
        let mut out = out;
        self.g
            .prox_vjp_into(out.view_mut(), ws.view(), T::one() / sigma, a.view())?;
        Zip::from(&mut out).and(a).for_each(|o, &a| *o = a - *o);
        Ok(())
    }

    fn check(&self, p: &[T], x: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Result<()> {
        check_len("PdhgStep", "parameters", 2, p.len())?;
        check_len("PdhgStep", "state width", self.in_dim(), x.ncols())?;
        check_len("PdhgStep", "context width", self.ctx, c.ncols())?;
        check_len("PdhgStep", "context rows", x.nrows(), c.nrows())
    }
}

impl<T: Real> Differentiable<T> for PdhgStep<T> {
    fn name(&self) -> String {
        format!("PDHG step on {}", self.k.name())
    }
    fn in_dim(&self) -> usize {
        let (n, m) = self.dims();
        2 * n + m
    }
    fn out_dim(&self) -> usize {
        self.in_dim()
    }
    fn ctx_dim(&self) -> usize {
        self.ctx
    }
    fn num_params(&self) -> usize {
        2
    }
    fn forward(&self, p: &[T], x: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        self.check(p, x, c)?;
        let (n, _) = self.dims();
        let mut out = Array2::zeros(x.raw_dim());
        for ((mut o, xr), cr) in out.rows_mut().into_iter().zip(x.rows()).zip(c.rows()) {
            let r = self.row(p, xr, cr)?;
            let xb = &r.x + &((&r.x - &xr.slice(s![..n])) * self.theta);
            o.slice_mut(s![..n]).assign(&r.x);
            o.slice_mut(s![n..2 * n]).assign(&xb);
            o.slice_mut(s![2 * n..]).assign(&r.y);
        }
        Ok(out)
    }
    fn vjp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        self.grads(p, x, c, g, Some(gp)).map(|(gx, _)| gx)
    }
    fn vjp_ctx(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        self.grads(p, x, c, g, None).map(|(_, gc)| gc)
    }
    fn jvp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        self.check(p, x, c)?;
        check_len("PdhgStep", "tangent width", self.in_dim(), v.ncols())?;
        let (n, m) = self.dims();
        let (tau, sigma) = Self::steps(p);
        let mut out = Array2::zeros(x.raw_dim());
        for (((mut o, xr), cr), vr) in out
            .rows_mut()
            .into_iter()
            .zip(x.rows())
            .zip(c.rows())
            .zip(v.rows())
        {
            let r = self.row(p, xr, cr)?;
            let (vx, vxb, vy) = (
                vr.slice(s![..n]),
                vr.slice(s![n..2 * n]),
                vr.slice(s![2 * n..]),
            );
            let mut dt = Array1::zeros(m);
            self.k.apply_into(dt.view_mut(), vxb)?;
            let dw = &vy + &(&dt * sigma);
            // D* ẇ: D* is symmetric, so its JVP is its VJP.
            let mut dy = Array1::zeros(m);
            self.conj_prox_vjp(dy.view_mut(), &r.w, sigma, &dw)?;
            let mut du = Array1::zeros(n);
            self.k.adjoint_into(du.view_mut(), dy.view())?;
            let dv = &vx - &(&du * tau);
            let mut dx = Array1::zeros(n);
            self.f
                .prox_jvp_into(dx.view_mut(), r.v.view(), tau, dv.view())?;
            let dxb = &dx * (T::one() + self.theta) - &(&vx * self.theta);
            o.slice_mut(s![..n]).assign(&dx);
            o.slice_mut(s![n..2 * n]).assign(&dxb);
            o.slice_mut(s![2 * n..]).assign(&dy);
        }
        Ok(out)
    }
}

impl<T: Real> PdhgStep<T> {
    /// The state VJP, the context VJP, and (when `gp` is given) the step gradients added to
    /// `gp`.
    fn grads(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        mut gp: Option<&mut [T]>,
    ) -> Result<(Array2<T>, Array2<T>)> {
        self.check(p, x, c)?;
        check_len("PdhgStep", "gradient width", self.out_dim(), g.ncols())?;
        if let Some(gp) = gp.as_deref() {
            check_len("PdhgStep", "parameter gradient", 2, gp.len())?;
        }
        let (n, m) = self.dims();
        let (tau, sigma) = Self::steps(p);
        let mut gx_all = Array2::zeros(x.raw_dim());
        let mut gc_all = Array2::zeros(c.raw_dim());
        for ((((mut gx, mut gc), xr), cr), gr) in gx_all
            .rows_mut()
            .into_iter()
            .zip(gc_all.rows_mut())
            .zip(x.rows())
            .zip(c.rows())
            .zip(g.rows())
        {
            let r = self.row(p, xr, cr)?;
            let (g_x, g_xb, g_y) = (
                gr.slice(s![..n]),
                gr.slice(s![n..2 * n]),
                gr.slice(s![2 * n..]),
            );
            let a = &g_x + &(&g_xb * (T::one() + self.theta));
            let mut vbar = Array1::zeros(n);
            self.f
                .prox_vjp_into(vbar.view_mut(), r.v.view(), tau, a.view())?;
            let mut kv = Array1::zeros(m);
            self.k.apply_into(kv.view_mut(), vbar.view())?;
            let ybar = &g_y - &(&kv * tau);
            let mut wbar = Array1::zeros(m);
            self.conj_prox_vjp(wbar.view_mut(), &r.w, sigma, &ybar)?;
            let mut xbbar = Array1::zeros(n);
            self.k.adjoint_into(xbbar.view_mut(), wbar.view())?;
            gx.slice_mut(s![..n])
                .assign(&(&vbar - &(&g_xb * self.theta)));
            gx.slice_mut(s![n..2 * n]).assign(&(&xbbar * sigma));
            gx.slice_mut(s![2 * n..]).assign(&wbar);
            gc.assign(&(&wbar.slice(s![..self.ctx]) * (-sigma)));
            if let Some(gp) = gp.as_deref_mut() {
                let mut dtau = T::zero();
                for i in 0..n {
                    dtau += vbar[i] * (-r.u[i] - (r.v[i] - r.x[i]) / tau);
                }
                let mut dsig = T::zero();
                for i in 0..m {
                    dsig += wbar[i] * (r.t[i] - (r.w[i] - r.y[i]) / sigma);
                }
                gp[0] += tau * dtau;
                gp[1] += sigma * dsig;
            }
        }
        Ok((gx_all, gc_all))
    }
}

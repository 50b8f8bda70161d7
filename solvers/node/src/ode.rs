//! ODE solves as differentiable operators, on diffsol.
//!
//! [`OdeSolve`] integrates `u' = f(u, θ, t)`, `u(t₀) = u₀` with one of diffsol's solvers (BDF,
//! ESDIRK3(4), TR-BDF2 for stiff problems; Tsitouras 5(4) for non-stiff ones), returns the
//! states at requested times, and the gradient of a loss `L(Y)` of those states with respect
//! to `θ` and `u₀` by
//!
//! * **forward sensitivities** `S = ∂u/∂(θ, u₀)`, `S' = f_u S + f_θ`, integrated beside `u`
//!   (cost grows with the number of parameters);
//! * the **continuous adjoint**: `λ' = −f_uᵀ λ` backwards from `t_N` with jumps `∂L/∂y_i` at the
//!   output times, `∂L/∂θ = ∫ f_θᵀ λ dt`, `∂L/∂u₀ = λ(t₀)` (cost independent of the number of
//!   parameters; the forward pass is checkpointed);
//! * the **discrete adjoint**: reverse mode through the steps the solver took, step sizes and
//!   orders held fixed (diffsol's `StepVjp::solve_dense_vjp`): the exact gradient of the computed
//!   solution, where the continuous adjoint is the gradient of the exact one, up to tolerance.
//!
//! `u₀` enters as extra parameters (`p = [θ; u₀]`, `u(t₀) = p[nθ..]`), so every mode gives its
//! gradient the same way as `θ`'s.
//!
//! A right-hand side is a [`Rhs`]: the function and its four products (`f_u v`, `f_uᵀ w`,
//! `f_θ v`, `f_θᵀ w`). [`LotkaVolterra`] and [`Robertson`] are built in; [`ClosureRhs`] takes
//! closures; [`DifferentiableRhs`] wraps any core [`Differentiable`] block (state JVP/VJP; `f_θ v`
//! from `n` VJPs).
//!
//! Every result carries [`OdeStats`]: steps, error-test failures, right-hand-side evaluations,
//! Jacobian products, linear-solver setups (Jacobian factorizations) and Newton iterations.
//!
//! diffsol's adjoint callbacks take `−f_uᵀ w` and `−f_θᵀ w` (the sign is visible in its
//! Robertson test model, not in the builder's documentation) and `−(∂u₀/∂p)ᵀ w`; the wrappers
//! here negate, so a [`Rhs`] implements the plain products.

use diffsol::{
    AdjointOdeSolverMethod, DenseMatrix, FaerLU, FaerMat, FaerVec, Matrix, OdeBuilder,
    OdeSolverMethod, OdeSolverState, SensitivitiesOdeSolverMethod, StepVjp, Vector,
};
use hyperprox_core::diff::Differentiable;
use hyperprox_core::{Error, Result};
use ndarray::{Array1, Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

type M = FaerMat<f64>;
type V = FaerVec<f64>;
type LS = FaerLU<f64>;

/// A right-hand side `f(u, θ, t)` with its Jacobian products.
pub trait Rhs: Send + Sync {
    /// Name for errors and reports.
    fn name(&self) -> String;
    /// Number of states.
    fn nstates(&self) -> usize;
    /// Number of parameters θ.
    fn nparams(&self) -> usize;
    /// `out = f(u, θ, t)`.
    fn f(&self, u: &[f64], p: &[f64], t: f64, out: &mut [f64]);
    /// `out = (∂f/∂u) v`.
    fn jvp(&self, u: &[f64], p: &[f64], t: f64, v: &[f64], out: &mut [f64]);
    /// `out = (∂f/∂u)ᵀ w`.
    fn vjp(&self, u: &[f64], p: &[f64], t: f64, w: &[f64], out: &mut [f64]);
    /// `out = (∂f/∂θ) v` (`v` of length `nparams`).
    fn jvp_p(&self, u: &[f64], p: &[f64], t: f64, v: &[f64], out: &mut [f64]);
    /// `out = (∂f/∂θ)ᵀ w` (`out` of length `nparams`).
    fn vjp_p(&self, u: &[f64], p: &[f64], t: f64, w: &[f64], out: &mut [f64]);
}

/// Lotka–Volterra: `x' = a·x − b·x·y`, `y' = −c·y + d·x·y`, θ = (a, b, c, d).
#[derive(Clone, Copy, Debug, Default)]
pub struct LotkaVolterra;

impl Rhs for LotkaVolterra {
    fn name(&self) -> String {
        "lotka-volterra".into()
    }
    fn nstates(&self) -> usize {
        2
    }
    fn nparams(&self) -> usize {
        4
    }
    fn f(&self, u: &[f64], p: &[f64], _t: f64, o: &mut [f64]) {
        o[0] = p[0] * u[0] - p[1] * u[0] * u[1];
        o[1] = -p[2] * u[1] + p[3] * u[0] * u[1];
    }
    fn jvp(&self, u: &[f64], p: &[f64], _t: f64, v: &[f64], o: &mut [f64]) {
        o[0] = (p[0] - p[1] * u[1]) * v[0] - p[1] * u[0] * v[1];
        o[1] = p[3] * u[1] * v[0] + (-p[2] + p[3] * u[0]) * v[1];
    }
    fn vjp(&self, u: &[f64], p: &[f64], _t: f64, w: &[f64], o: &mut [f64]) {
        o[0] = (p[0] - p[1] * u[1]) * w[0] + p[3] * u[1] * w[1];
        o[1] = -p[1] * u[0] * w[0] + (-p[2] + p[3] * u[0]) * w[1];
    }
    fn jvp_p(&self, u: &[f64], _p: &[f64], _t: f64, v: &[f64], o: &mut [f64]) {
        let xy = u[0] * u[1];
        o[0] = u[0] * v[0] - xy * v[1];
        o[1] = -u[1] * v[2] + xy * v[3];
    }
    fn vjp_p(&self, u: &[f64], _p: &[f64], _t: f64, w: &[f64], o: &mut [f64]) {
        let xy = u[0] * u[1];
        o[0] = u[0] * w[0];
        o[1] = -xy * w[0];
        o[2] = -u[1] * w[1];
        o[3] = xy * w[1];
    }
}

/// Robertson's stiff chemical kinetics: `y₁' = −k₁y₁ + k₂y₂y₃`,
/// `y₂' = k₁y₁ − k₂y₂y₃ − k₃y₂²`, `y₃' = k₃y₂²`, θ = (k₁, k₂, k₃) = (0.04, 1e4, 3e7).
#[derive(Clone, Copy, Debug, Default)]
pub struct Robertson;

impl Robertson {
    /// The classical rate constants.
    pub const RATES: [f64; 3] = [0.04, 1e4, 3e7];
}

impl Rhs for Robertson {
    fn name(&self) -> String {
        "robertson".into()
    }
    fn nstates(&self) -> usize {
        3
    }
    fn nparams(&self) -> usize {
        3
    }
    fn f(&self, u: &[f64], p: &[f64], _t: f64, o: &mut [f64]) {
        let (a, b, c) = (p[0] * u[0], p[1] * u[1] * u[2], p[2] * u[1] * u[1]);
        o[0] = -a + b;
        o[1] = a - b - c;
        o[2] = c;
    }
    fn jvp(&self, u: &[f64], p: &[f64], _t: f64, v: &[f64], o: &mut [f64]) {
        let da = p[0] * v[0];
        let db = p[1] * (v[1] * u[2] + u[1] * v[2]);
        let dc = 2.0 * p[2] * u[1] * v[1];
        o[0] = -da + db;
        o[1] = da - db - dc;
        o[2] = dc;
    }
    fn vjp(&self, u: &[f64], p: &[f64], _t: f64, w: &[f64], o: &mut [f64]) {
        // a = k₁y₁ enters with (−1, 1, 0), b = k₂y₂y₃ with (1, −1, 0), c = k₃y₂² with (0, −1, 1).
        let (ga, gb, gc) = (w[1] - w[0], w[0] - w[1], w[2] - w[1]);
        o[0] = p[0] * ga;
        o[1] = p[1] * u[2] * gb + 2.0 * p[2] * u[1] * gc;
        o[2] = p[1] * u[1] * gb;
    }
    fn jvp_p(&self, u: &[f64], _p: &[f64], _t: f64, v: &[f64], o: &mut [f64]) {
        let (a, b, c) = (u[0] * v[0], u[1] * u[2] * v[1], u[1] * u[1] * v[2]);
        o[0] = -a + b;
        o[1] = a - b - c;
        o[2] = c;
    }
    fn vjp_p(&self, u: &[f64], _p: &[f64], _t: f64, w: &[f64], o: &mut [f64]) {
        o[0] = u[0] * (w[1] - w[0]);
        o[1] = u[1] * u[2] * (w[0] - w[1]);
        o[2] = u[1] * u[1] * (w[2] - w[1]);
    }
}

type F4 = dyn Fn(&[f64], &[f64], f64, &mut [f64]) + Send + Sync;
type F5 = dyn Fn(&[f64], &[f64], f64, &[f64], &mut [f64]) + Send + Sync;

/// A right-hand side from closures: `f(u, θ, t, out)` and the four products
/// `(u, θ, t, v, out)`: `f_u v`, `f_uᵀ w`, `f_θ v`, `f_θᵀ w`.
pub struct ClosureRhs {
    /// Name for reports.
    pub name: String,
    /// Number of states.
    pub nstates: usize,
    /// Number of parameters.
    pub nparams: usize,
    /// `f`.
    pub f: Box<F4>,
    /// `f_u v`.
    pub jvp: Box<F5>,
    /// `f_uᵀ w`.
    pub vjp: Box<F5>,
    /// `f_θ v`.
    pub jvp_p: Box<F5>,
    /// `f_θᵀ w`.
    pub vjp_p: Box<F5>,
}

impl Rhs for ClosureRhs {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn nstates(&self) -> usize {
        self.nstates
    }
    fn nparams(&self) -> usize {
        self.nparams
    }
    fn f(&self, u: &[f64], p: &[f64], t: f64, o: &mut [f64]) {
        (self.f)(u, p, t, o)
    }
    fn jvp(&self, u: &[f64], p: &[f64], t: f64, v: &[f64], o: &mut [f64]) {
        (self.jvp)(u, p, t, v, o)
    }
    fn vjp(&self, u: &[f64], p: &[f64], t: f64, w: &[f64], o: &mut [f64]) {
        (self.vjp)(u, p, t, w, o)
    }
    fn jvp_p(&self, u: &[f64], p: &[f64], t: f64, v: &[f64], o: &mut [f64]) {
        (self.jvp_p)(u, p, t, v, o)
    }
    fn vjp_p(&self, u: &[f64], p: &[f64], t: f64, w: &[f64], o: &mut [f64]) {
        (self.vjp_p)(u, p, t, w, o)
    }
}

/// A core [`Differentiable`] block (`in_dim == out_dim`, context empty or the time) as a
/// right-hand side. Its state JVP/VJP and parameter VJP are used as they are; `f_θ v` is
/// assembled from `n` parameter VJPs (one per state), so forward sensitivities cost `n` VJPs
/// per product; prefer an adjoint mode for large blocks.
pub struct DifferentiableRhs<D: Differentiable> {
    block: D,
    with_time: bool,
}

impl<D: Differentiable> DifferentiableRhs<D> {
    /// Wraps `block`; errors unless it maps `n` states to `n` and reads no context or the time.
    pub fn new(block: D) -> Result<Self> {
        if block.in_dim() != block.out_dim() {
            return Err(Error::shape(
                block.name(),
                "a right-hand side (in_dim = out_dim)",
                block.in_dim(),
                block.out_dim(),
            ));
        }
        if block.ctx_dim() > 1 {
            return Err(Error::param(
                "ctx_dim",
                block.ctx_dim(),
                "a right-hand side's context must be the time alone (width 0 or 1)",
            ));
        }
        let with_time = block.ctx_dim() == 1;
        Ok(Self { block, with_time })
    }

    fn views(&self, u: &[f64], t: f64) -> (Array2<f64>, Array2<f64>) {
        let x = Array2::from_shape_vec((1, u.len()), u.to_vec()).expect("one row");
        let c = if self.with_time {
            Array2::from_elem((1, 1), t)
        } else {
            Array2::zeros((1, 0))
        };
        (x, c)
    }

    fn row(&self, x: &[f64]) -> Array2<f64> {
        Array2::from_shape_vec((1, x.len()), x.to_vec()).expect("one row")
    }
}

// The `Rhs` callbacks cannot return errors (diffsol's closures return nothing): a block that
// fails is a bug in the block, reported by a panic with its message.
impl<D: Differentiable> Rhs for DifferentiableRhs<D> {
    fn name(&self) -> String {
        self.block.name()
    }
    fn nstates(&self) -> usize {
        self.block.in_dim()
    }
    fn nparams(&self) -> usize {
        self.block.num_params()
    }
    fn f(&self, u: &[f64], p: &[f64], t: f64, o: &mut [f64]) {
        let (x, c) = self.views(u, t);
        let y = self.block.forward(p, x.view(), c.view()).expect("forward");
        o.copy_from_slice(y.as_slice().expect("contiguous"));
    }
    fn jvp(&self, u: &[f64], p: &[f64], t: f64, v: &[f64], o: &mut [f64]) {
        let (x, c) = self.views(u, t);
        let y = self
            .block
            .jvp(p, x.view(), c.view(), self.row(v).view())
            .expect("jvp");
        o.copy_from_slice(y.as_slice().expect("contiguous"));
    }
    fn vjp(&self, u: &[f64], p: &[f64], t: f64, w: &[f64], o: &mut [f64]) {
        let (x, c) = self.views(u, t);
        let mut gp = vec![0.0; p.len()];
        let y = self
            .block
            .vjp(p, x.view(), c.view(), self.row(w).view(), &mut gp)
            .expect("vjp");
        o.copy_from_slice(y.as_slice().expect("contiguous"));
    }
    fn jvp_p(&self, u: &[f64], p: &[f64], t: f64, v: &[f64], o: &mut [f64]) {
        let (x, c) = self.views(u, t);
        let n = u.len();
        let mut e = Array2::zeros((1, n));
        for (i, oi) in o.iter_mut().enumerate() {
            e.fill(0.0);
            e[[0, i]] = 1.0;
            let mut row = vec![0.0; p.len()];
            self.block
                .vjp(p, x.view(), c.view(), e.view(), &mut row)
                .expect("vjp");
            *oi = row.iter().zip(v).map(|(a, b)| a * b).sum();
        }
    }
    fn vjp_p(&self, u: &[f64], p: &[f64], t: f64, w: &[f64], o: &mut [f64]) {
        let (x, c) = self.views(u, t);
        o.fill(0.0);
        self.block
            .vjp(p, x.view(), c.view(), self.row(w).view(), o)
            .expect("vjp");
    }
}

/// The integrator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Variable-order BDF (stiff).
    Bdf,
    /// ESDIRK3(4) (stiff, one-step).
    Esdirk34,
    /// TR-BDF2 (stiff, one-step).
    TrBdf2,
    /// Tsitouras 5(4) (explicit, non-stiff).
    Tsit45,
}

impl Method {
    /// Parses `bdf`, `esdirk34`, `tr-bdf2` or `tsit45`.
    pub fn by_name(s: &str) -> Result<Self> {
        Ok(match s {
            "bdf" => Self::Bdf,
            "esdirk34" => Self::Esdirk34,
            "tr-bdf2" | "tr_bdf2" => Self::TrBdf2,
            "tsit45" => Self::Tsit45,
            other => {
                return Err(Error::param(
                    "method",
                    other,
                    "expected bdf, esdirk34, tr-bdf2 or tsit45",
                ))
            }
        })
    }
}

/// How [`OdeSolve::gradient`] differentiates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sensitivity {
    /// Forward sensitivities.
    Forward,
    /// The continuous adjoint (checkpointed forward pass, backward adjoint solve).
    Adjoint,
    /// Reverse mode through the solver's steps.
    DiscreteAdjoint,
}

/// Solver settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OdeOptions {
    /// The integrator.
    pub method: Method,
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Most steps per pass (forward or backward) before the solve fails.
    pub max_steps: usize,
}

impl Default for OdeOptions {
    fn default() -> Self {
        Self {
            method: Method::Bdf,
            rtol: 1e-6,
            atol: 1e-6,
            max_steps: 100_000,
        }
    }
}

/// What a solve cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OdeStats {
    /// Accepted steps (forward pass; for the continuous adjoint, forward + backward).
    pub steps: usize,
    /// Steps rejected by the error test.
    pub error_test_failures: usize,
    /// Right-hand-side evaluations `f(u, θ, t)`.
    pub rhs_evals: usize,
    /// Jacobian-vector products `f_u v` (Jacobian assembly and Newton iterations).
    pub jac_products: usize,
    /// Transposed products `f_uᵀ w` and `f_θᵀ w` (adjoint modes).
    pub adjoint_products: usize,
    /// Parameter products `f_θ v` (forward sensitivities).
    pub sens_products: usize,
    /// Linear-solver setups (Jacobian evaluations and factorizations).
    pub linear_solver_setups: usize,
    /// Newton iterations.
    pub newton_iterations: usize,
}

impl OdeStats {
    fn add_solver(&mut self, s: &diffsol::ode_solver::OdeSolverStatistics) {
        self.steps += s.number_of_steps;
        self.error_test_failures += s.number_of_error_test_failures;
        self.linear_solver_setups += s.number_of_linear_solver_setups;
        self.newton_iterations += s.number_of_nonlinear_solver_iterations;
    }
}

/// States at the requested times.
#[derive(Clone, Debug)]
pub struct OdeSolution {
    /// `T × n`: row `i` is `u(tᵢ)`.
    pub states: Array2<f64>,
    /// What it cost.
    pub stats: OdeStats,
}

/// A loss of the states `Y` (`T × n`): its value and `∂L/∂Y`.
pub type Loss<'a> = dyn FnMut(ArrayView2<'_, f64>) -> Result<(f64, Array2<f64>)> + 'a;

/// A loss value and its gradient.
#[derive(Clone, Debug)]
pub struct OdeGradient {
    /// `L(Y)`.
    pub loss: f64,
    /// The states `Y` (`T × n`) the loss was evaluated at.
    pub states: Array2<f64>,
    /// `∂L/∂θ`.
    pub grad_params: Array1<f64>,
    /// `∂L/∂u₀`.
    pub grad_u0: Array1<f64>,
    /// What it cost (forward and backward).
    pub stats: OdeStats,
}

#[derive(Default)]
struct Counters {
    rhs: AtomicUsize,
    jac: AtomicUsize,
    adj: AtomicUsize,
    sens: AtomicUsize,
}

impl Counters {
    fn bump(c: &AtomicUsize) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    fn take(&self, s: &mut OdeStats) {
        s.rhs_evals += self.rhs.swap(0, Ordering::Relaxed);
        s.jac_products += self.jac.swap(0, Ordering::Relaxed);
        s.adjoint_products += self.adj.swap(0, Ordering::Relaxed);
        s.sens_products += self.sens.swap(0, Ordering::Relaxed);
    }
}

fn ds(method: Method, what: &str) -> impl Fn(diffsol::DiffsolError) -> Error + '_ {
    move |e| {
        let msg = e.to_string();
        let hint = if msg.contains("maximum number of timesteps") {
            if method == Method::Tsit45 {
                " (an explicit method on a stiff problem takes tiny steps: use bdf, esdirk34 or tr-bdf2; or raise max_steps)"
            } else {
                " (raise max_steps, or loosen the tolerances)"
            }
        } else {
            ""
        };
        Error::Diverged {
            method: format!("diffsol {method:?}"),
            iteration: 0,
            detail: format!("{what}: {msg}{hint}"),
        }
    }
}

/// `u' = f(u, θ, t)` on diffsol, as a differentiable map `(θ, u₀) ↦ (u(t₀), …, u(t_N))`.
pub struct OdeSolve {
    rhs: Arc<dyn Rhs>,
    /// Settings.
    pub options: OdeOptions,
    counters: Arc<Counters>,
}

// One problem type per derivative mode; the closures hold the right-hand side and the
// counters, and read θ from p[..nθ] and u₀ from p[nθ..].
macro_rules! adjoint_problem {
    ($self:ident, $p:expr, $t0:expr) => {{
        let (r1, r2, r3, r4) = (
            $self.rhs.clone(),
            $self.rhs.clone(),
            $self.rhs.clone(),
            $self.rhs.clone(),
        );
        let (c1, c2, c3, c4) = (
            $self.counters.clone(),
            $self.counters.clone(),
            $self.counters.clone(),
            $self.counters.clone(),
        );
        let nth = $self.rhs.nparams();
        let n = $self.rhs.nstates();
        let np = nth + n;
        OdeBuilder::<M>::new()
            .t0($t0)
            .rtol($self.options.rtol)
            .atol(vec![$self.options.atol; n])
            .p($p)
            .rhs_adjoint_implicit(
                move |x: &[f64], p: &[f64], t: f64, y: &mut [f64]| {
                    Counters::bump(&c1.rhs);
                    r1.f(x, &p[..nth], t, y)
                },
                move |x: &[f64], p: &[f64], t: f64, v: &[f64], y: &mut [f64]| {
                    Counters::bump(&c2.jac);
                    r2.jvp(x, &p[..nth], t, v, y)
                },
                move |x: &[f64], p: &[f64], t: f64, v: &[f64], y: &mut [f64]| {
                    Counters::bump(&c3.adj);
                    r3.vjp(x, &p[..nth], t, v, y);
                    y.iter_mut().for_each(|v| *v = -*v);
                },
                move |x: &[f64], p: &[f64], t: f64, v: &[f64], y: &mut [f64]| {
                    Counters::bump(&c4.adj);
                    r4.vjp_p(x, &p[..nth], t, v, &mut y[..nth]);
                    y[..nth].iter_mut().for_each(|v| *v = -*v);
                    y[nth..].fill(0.0);
                },
            )
            .init_adjoint(
                move |p: &[f64], _t: f64, y: &mut [f64]| y.copy_from_slice(&p[nth..]),
                move |_p: &[f64], _t: f64, v: &[f64], y: &mut [f64]| {
                    debug_assert_eq!(y.len(), np);
                    y[..nth].fill(0.0);
                    for (yi, vi) in y[nth..].iter_mut().zip(v) {
                        *yi = -*vi;
                    }
                },
                n,
            )
            .build()
            .map_err(ds($self.options.method, "building the problem"))
            .map(|mut pr| {
                pr.ode_options.max_number_timesteps = $self.options.max_steps;
                pr
            })
    }};
}

macro_rules! sens_problem {
    ($self:ident, $p:expr, $t0:expr) => {{
        let (r1, r2, r3) = ($self.rhs.clone(), $self.rhs.clone(), $self.rhs.clone());
        let (c1, c2, c3) = (
            $self.counters.clone(),
            $self.counters.clone(),
            $self.counters.clone(),
        );
        let nth = $self.rhs.nparams();
        let n = $self.rhs.nstates();
        OdeBuilder::<M>::new()
            .t0($t0)
            .rtol($self.options.rtol)
            .atol(vec![$self.options.atol; n])
            .p($p)
            .rhs_sens_implicit(
                move |x: &[f64], p: &[f64], t: f64, y: &mut [f64]| {
                    Counters::bump(&c1.rhs);
                    r1.f(x, &p[..nth], t, y)
                },
                move |x: &[f64], p: &[f64], t: f64, v: &[f64], y: &mut [f64]| {
                    Counters::bump(&c2.jac);
                    r2.jvp(x, &p[..nth], t, v, y)
                },
                move |x: &[f64], p: &[f64], t: f64, v: &[f64], y: &mut [f64]| {
                    Counters::bump(&c3.sens);
                    r3.jvp_p(x, &p[..nth], t, &v[..nth], y)
                },
            )
            .init_sens(
                move |p: &[f64], _t: f64, y: &mut [f64]| y.copy_from_slice(&p[nth..]),
                move |_p: &[f64], _t: f64, v: &[f64], y: &mut [f64]| y.copy_from_slice(&v[nth..]),
                n,
            )
            .build()
            .map_err(ds($self.options.method, "building the problem"))
            .map(|mut pr| {
                pr.ode_options.max_number_timesteps = $self.options.max_steps;
                pr
            })
    }};
}

/// Runs `$body` with `$s` bound to a fresh solver of `$problem` for `$method`.
macro_rules! with_solver {
    ($method:expr, $problem:expr, $suffix:ident, |$s:ident| $body:expr) => {
        match $method {
            Method::Bdf => {
                let mut $s = paste_solver!($problem, bdf, $suffix)?;
                $body
            }
            Method::Esdirk34 => {
                let mut $s = paste_solver!($problem, esdirk34, $suffix)?;
                $body
            }
            Method::TrBdf2 => {
                let mut $s = paste_solver!($problem, tr_bdf2, $suffix)?;
                $body
            }
            Method::Tsit45 => {
                let mut $s = paste_solver!($problem, tsit45, $suffix)?;
                $body
            }
        }
    };
}

macro_rules! paste_solver {
    ($problem:expr, tsit45, plain) => {
        $problem
            .tsit45()
            .map_err(ds(Method::Tsit45, "starting the solver"))
    };
    ($problem:expr, tsit45, sens) => {
        $problem
            .tsit45_sens()
            .map_err(ds(Method::Tsit45, "starting the solver"))
    };
    ($problem:expr, bdf, plain) => {
        $problem
            .bdf::<LS>()
            .map_err(ds(Method::Bdf, "starting the solver"))
    };
    ($problem:expr, bdf, sens) => {
        $problem
            .bdf_sens::<LS>()
            .map_err(ds(Method::Bdf, "starting the solver"))
    };
    ($problem:expr, esdirk34, plain) => {
        $problem
            .esdirk34::<LS>()
            .map_err(ds(Method::Esdirk34, "starting the solver"))
    };
    ($problem:expr, esdirk34, sens) => {
        $problem
            .esdirk34_sens::<LS>()
            .map_err(ds(Method::Esdirk34, "starting the solver"))
    };
    ($problem:expr, tr_bdf2, plain) => {
        $problem
            .tr_bdf2::<LS>()
            .map_err(ds(Method::TrBdf2, "starting the solver"))
    };
    ($problem:expr, tr_bdf2, sens) => {
        $problem
            .tr_bdf2_sens::<LS>()
            .map_err(ds(Method::TrBdf2, "starting the solver"))
    };
}

fn to_states(m: &M, nt: usize, n: usize) -> Array2<f64> {
    Array2::from_shape_fn((nt, n), |(i, j)| m.get_index(j, i))
}

impl OdeSolve {
    /// An ODE solve of `rhs` with `options`.
    pub fn new(rhs: Arc<dyn Rhs>, options: OdeOptions) -> Result<Self> {
        for (n, v) in [("rtol", options.rtol), ("atol", options.atol)] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(Error::param(n, v, "tolerances must be positive and finite"));
            }
        }
        if options.max_steps == 0 {
            return Err(Error::param("max_steps", 0, "must be at least 1"));
        }
        if rhs.nstates() == 0 {
            return Err(Error::param(
                "nstates",
                0,
                "the ODE needs at least one state",
            ));
        }
        Ok(Self {
            rhs,
            options,
            counters: Arc::new(Counters::default()),
        })
    }

    /// The right-hand side.
    pub fn rhs(&self) -> &Arc<dyn Rhs> {
        &self.rhs
    }

    fn check(&self, theta: &[f64], u0: &[f64], times: &[f64]) -> Result<Vec<f64>> {
        let name = self.rhs.name();
        if theta.len() != self.rhs.nparams() {
            return Err(Error::shape(
                &name,
                "parameters θ",
                self.rhs.nparams(),
                theta.len(),
            ));
        }
        if u0.len() != self.rhs.nstates() {
            return Err(Error::shape(
                &name,
                "an initial state u₀",
                self.rhs.nstates(),
                u0.len(),
            ));
        }
        for (what, v) in [("θ", theta), ("u₀", u0), ("times", times)] {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(Error::NonFinite {
                    what: what.into(),
                    index: i,
                    value: v[i].to_string(),
                });
            }
        }
        if times.len() < 2 {
            return Err(Error::param(
                "times",
                times.len(),
                "give at least two times: t₀ (of u₀) and one output time",
            ));
        }
        if times.windows(2).any(|w| w[1] <= w[0]) {
            return Err(Error::param(
                "times",
                "not increasing",
                "output times must be strictly increasing, the first being t₀",
            ));
        }
        Ok(theta.iter().chain(u0).copied().collect())
    }

    /// `Y` (`T × n`) at `times` (the first is `t₀`, where `u = u₀`).
    pub fn solve(&self, theta: &[f64], u0: &[f64], times: &[f64]) -> Result<OdeSolution> {
        let p = self.check(theta, u0, times)?;
        let n = self.rhs.nstates();
        self.counters.take(&mut OdeStats::default());
        let problem = adjoint_problem!(self, p, times[0])?;
        let mut stats = OdeStats::default();
        let m = self.options.method;
        let y = with_solver!(m, problem, plain, |s| {
            let (y, _) = s.solve_dense(times).map_err(ds(m, "solving"))?;
            stats.add_solver(s.get_statistics());
            y
        });
        self.counters.take(&mut stats);
        let states = to_states(&y, times.len(), n);
        finite(&states, m)?;
        Ok(OdeSolution { states, stats })
    }

    /// `L(Y)` and its gradient with respect to θ and `u₀`, where `loss(Y)` returns the value and
    /// `∂L/∂Y` (`T × n`).
    pub fn gradient(
        &self,
        theta: &[f64],
        u0: &[f64],
        times: &[f64],
        how: Sensitivity,
        loss: &mut Loss<'_>,
    ) -> Result<OdeGradient> {
        let p = self.check(theta, u0, times)?;
        let (n, nth, nt) = (self.rhs.nstates(), self.rhs.nparams(), times.len());
        let m = self.options.method;
        self.counters.take(&mut OdeStats::default());
        let mut stats = OdeStats::default();
        let mut eval = |y: &Array2<f64>| -> Result<(f64, Array2<f64>)> {
            finite(y, m)?;
            let (l, g) = loss(y.view())?;
            if g.dim() != (nt, n) {
                return Err(Error::shape(
                    "the loss",
                    "∂L/∂Y",
                    format!("{nt}×{n}"),
                    format!("{:?}", g.dim()),
                ));
            }
            Ok((l, g))
        };
        let (loss_value, states, grad) = match how {
            Sensitivity::Forward => {
                let problem = sens_problem!(self, p, times[0])?;
                with_solver!(m, problem, sens, |s| {
                    let (y, sens, _) = s
                        .solve_dense_sensitivities(times)
                        .map_err(ds(m, "solving with sensitivities"))?;
                    stats.add_solver(s.get_statistics());
                    let y = to_states(&y, nt, n);
                    let (l, g) = eval(&y)?;
                    let grad: Vec<f64> = sens
                        .iter()
                        .map(|sk| {
                            (0..nt)
                                .map(|i| {
                                    (0..n).map(|j| g[[i, j]] * sk.get_index(j, i)).sum::<f64>()
                                })
                                .sum()
                        })
                        .collect();
                    (l, y, grad)
                })
            }
            Sensitivity::Adjoint => {
                let problem = adjoint_problem!(self, p, times[0])?;
                macro_rules! pass {
                    ($kind:ident, |$s:ident, $ck:ident| $make:expr) => {{
                        let mut $s = paste_solver!(problem, $kind, plain)?;
                        let ($ck, y, _) = $s
                            .solve_dense_with_checkpointing(times, None)
                            .map_err(ds(m, "the checkpointed forward pass"))?;
                        stats.add_solver($s.get_statistics());
                        let y = to_states(&y, nt, n);
                        let (l, g) = eval(&y)?;
                        let gm = cotangent_matrix(&g, problem.context());
                        let adj = $make.map_err(ds(m, "starting the adjoint solver"))?;
                        let (st, _) = adj
                            .solve_adjoint_backwards_pass(times, &[&gm])
                            .map_err(ds(m, "the adjoint backward pass"))?;
                        (l, y, st.as_ref().sg.clone_as_vec())
                    }};
                }
                match m {
                    Method::Bdf => pass!(bdf, |s, ck| problem.bdf_solver_adjoint::<LS, _>(
                        ck,
                        Some(s.clone()),
                        Some(1)
                    )),
                    Method::Esdirk34 => pass!(esdirk34, |s, ck| problem
                        .esdirk34_solver_adjoint::<LS, _>(ck, Some(s.clone()), Some(1))),
                    Method::TrBdf2 => pass!(tr_bdf2, |s, ck| problem
                        .tr_bdf2_solver_adjoint::<LS, _>(ck, Some(s.clone()), Some(1))),
                    Method::Tsit45 => pass!(tsit45, |s, ck| problem.tsit45_solver_adjoint(
                        ck,
                        Some(s.clone()),
                        Some(1)
                    )),
                }
            }
            Sensitivity::DiscreteAdjoint => {
                let problem = adjoint_problem!(self, p, times[0])?;
                let y = with_solver!(m, problem, plain, |s| {
                    let (y, _) = s.solve_dense(times).map_err(ds(m, "solving"))?;
                    stats.add_solver(s.get_statistics());
                    y
                });
                let y = to_states(&y, nt, n);
                let (l, g) = eval(&y)?;
                let grad = with_solver!(m, problem, plain, |s| {
                    let (_, grad) = s
                        .solve_dense_vjp(
                            times,
                            1,
                            |_, _, _, _| {},
                            |i, _, _, out: &mut V| {
                                for j in 0..n {
                                    out.set_index(j, g[[i, j]]);
                                }
                            },
                        )
                        .map_err(ds(m, "the discrete adjoint"))?;
                    stats.add_solver(s.get_statistics());
                    grad.clone_as_vec()
                });
                (l, y, grad)
            }
        };
        self.counters.take(&mut stats);
        if grad.iter().any(|v| !v.is_finite()) {
            return Err(Error::Diverged {
                method: format!("diffsol {m:?}"),
                iteration: stats.steps,
                detail: "the gradient is not finite".into(),
            });
        }
        Ok(OdeGradient {
            loss: loss_value,
            states,
            grad_params: Array1::from(grad[..nth].to_vec()),
            grad_u0: Array1::from(grad[nth..].to_vec()),
            stats,
        })
    }
}

fn finite(y: &Array2<f64>, m: Method) -> Result<()> {
    if y.iter().any(|v| !v.is_finite()) {
        return Err(Error::Diverged {
            method: format!("diffsol {m:?}"),
            iteration: 0,
            detail:
                "the solution is not finite (blow-up, or a stiff problem given to tsit45: try bdf)"
                    .into(),
        });
    }
    Ok(())
}

/// `∂L/∂Y` as diffsol's `n × T` cotangent matrix.
fn cotangent_matrix(g: &Array2<f64>, ctx: &diffsol::FaerContext) -> M {
    let (nt, n) = g.dim();
    let mut m = M::zeros(n, nt, *ctx);
    for i in 0..nt {
        for j in 0..n {
            m.set_index(j, i, g[[i, j]]);
        }
    }
    m
}

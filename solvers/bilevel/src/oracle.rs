//! Hypergradient oracles: inexact (implicit, with an a-posteriori error bound), exact, unrolled,
//! and a finite-difference check.
//!
//! # Inexact implicit hypergradient
//!
//! 1. Lower level to accuracy `ε` by a [`LowerSolver`] (warm-started), stopped when
//!    `‖∇ₓh(x̃)‖/μ ≤ ε`, which certifies `‖x̃ − x̂(θ)‖ ≤ ε` by strong convexity. The default,
//!    [`FistaLower`], is the core [`Fista`] with the strongly
//!    convex momentum and gradient restart; [`LbfgsLower`] uses argmin's L-BFGS; users pass
//!    their own (a closed form, say) with [`Oracle::with_lower_solver`].
//! 2. The core [`conjugate_gradient`] on `H(x̃) q = ∇g(x̃)` from `q = 0`, stopped at the
//!    absolute residual `‖H q − ∇g‖ ≤ δ`.
//! 3. `z = −J(x̃)ᵀ q`, with the bound (Ehrhardt & Roberts 2024, used by MAID)
//!
//! ```text
//! ‖z − ∇f(θ)‖ ≤ ω = c·ε + (‖J‖/μ)·δ + (L_J L_g/μ)·ε²,
//! c = L_g‖J‖/μ + L_{H⁻¹}‖∇g(x̃)‖‖J‖ + L_J‖∇g(x̃)‖/μ.
//! ```
//!
//! The bound is evaluated with the *achieved* accuracies (`‖∇ₓh(x̃)‖/μ ≤ ε` and the final CG
//! residual `≤ δ`), which keeps it valid and makes it tighter. It is **certified** when every
//! constant is [`Constant::Known`]; unknown constants are estimated online ([`Estimates`]: `‖J‖`
//! from `‖Jᵀq‖/‖q‖`, `L_J` and `L_{H⁻¹}` from random-perturbation differences, running maxima,
//! as in the MAID reference code) and the bound is then marked as estimated.
//!
//! # References
//! - M. S. Salehi, S. Mukherjee, L. Roberts, M. J. Ehrhardt, "An adaptively inexact first-order
//!   method for bilevel optimization with application to hyperparameter learning",
//!   SIAM J. Math. Data Sci. 2025 (arXiv:2308.10098).
//! - M. J. Ehrhardt, L. Roberts, "Analyzing inexact hypergradients for bilevel learning",
//!   IMA J. Appl. Math. 89(1), 2024.
//! - F. Pedregosa, "Hyperparameter optimization with approximate gradient", ICML 2016.

use crate::problem::{check_accuracy, check_theta, check_x, BilevelProblem, Constant, Constants};
use crate::sharded::{ShardInfo, ShardedVector};
use hyperprox_core::backend::{FunctionOn, ProxOn, SmoothOn};
use hyperprox_core::error::{Error, Result};
use hyperprox_core::func::{Function, Properties, Smooth, SqrNormL2};
use hyperprox_core::linalg::{conjugate_gradient, conjugate_gradient_on, norm2, CgParams, Vector};
use hyperprox_core::solve::{
    drive, Fista, FistaParams, Lbfgs, LbfgsParams, NoObserver, Restart, StepRule, TerminationReason,
};
use ndarray::{Array1, Array2, ArrayView1, ArrayViewMut1};
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// Result of a lower-level solve.
#[derive(Clone, Debug)]
pub struct LowerSolve {
    /// The approximate solution `x̃`.
    pub x: Array1<f64>,
    /// Certified distance to `x̂(θ)`: `‖∇ₓh(x̃)‖/μ`.
    pub accuracy: f64,
    /// Gradient evaluations (iterations) used.
    pub iterations: usize,
    /// The constants at `(x̃, θ)`.
    pub constants: Constants,
}

/// An inexact hypergradient with its error bound.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Hypergradient {
    /// `z ≈ ∇f(θ)`.
    #[serde(with = "hyperprox_core::figure::serde_array")]
    pub z: Array1<f64>,
    /// The lower-level point `x̃` it was computed at.
    #[serde(with = "hyperprox_core::figure::serde_array")]
    pub x: Array1<f64>,
    /// The CG solution `q ≈ H(x̃)⁻¹∇g(x̃)`.
    #[serde(with = "hyperprox_core::figure::serde_array")]
    pub q: Array1<f64>,
    /// Upper-level value `g(x̃)`.
    #[serde(with = "hyperprox_core::figure::serde_num")]
    pub upper: f64,
    /// `‖∇g(x̃)‖`.
    pub grad_g_norm: f64,
    /// Achieved lower-level accuracy `‖∇ₓh(x̃)‖/μ`.
    pub eps: f64,
    /// Achieved CG residual `‖H q − ∇g‖`.
    pub delta: f64,
    /// The error bound `ω ≥ ‖z − ∇f(θ)‖` (certified if `certified`).
    #[serde(with = "hyperprox_core::figure::serde_num")]
    pub omega: f64,
    /// Whether every constant in `ω` is known (not estimated).
    pub certified: bool,
    /// Lower-level iterations used.
    pub ll_iters: usize,
    /// CG iterations used.
    pub cg_iters: usize,
    /// The constants used.
    pub constants: Constants,
}

/// Running estimates of the constants a problem does not know (part of a solver's state, so a
/// checkpointed run resumes with them).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Estimates {
    /// Estimate of `‖J‖`.
    pub j_norm: f64,
    /// Estimate of `L_J`.
    pub l_j: f64,
    /// Estimate of `L_H` (then `L_{H⁻¹} ≈ L_H/μ²`).
    pub l_h: f64,
    /// Number of updates (seeds the perturbation directions).
    pub updates: u64,
}

/// Settings of the inner solvers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OracleParams {
    /// Cap on lower-level iterations per solve.
    pub ll_max_iters: usize,
    /// Cap on CG iterations per solve.
    pub cg_max_iters: usize,
    /// Estimate `‖J‖`, `L_J` and `L_{H⁻¹}` online even where the problem knows them (as the
    /// MAID reference code does): a tighter but uncertified bound.
    pub estimate_constants: bool,
}

impl Default for OracleParams {
    fn default() -> Self {
        Self {
            ll_max_iters: 100_000,
            cg_max_iters: 2_000,
            estimate_constants: false,
        }
    }
}

/// `h(·, θ)` at a fixed `θ` as a core smooth function (value, gradient, Hessian-vector
/// product and the Lipschitz constant `L` the problem reports), so that any core solver can
/// solve the lower level.
pub struct LowerObjective<'a, P: BilevelProblem + ?Sized> {
    problem: &'a P,
    theta: ArrayView1<'a, f64>,
    lipschitz: f64,
}

impl<'a, P: BilevelProblem + ?Sized> LowerObjective<'a, P> {
    /// `h(·, θ)` with gradient Lipschitz constant `lipschitz`.
    pub fn new(problem: &'a P, theta: ArrayView1<'a, f64>, lipschitz: f64) -> Self {
        Self {
            problem,
            theta,
            lipschitz,
        }
    }
}

impl<P: BilevelProblem + ?Sized> Function<f64> for LowerObjective<'_, P> {
    fn name(&self) -> String {
        format!("lower level of {}", self.problem.name())
    }
    fn dim(&self) -> Option<usize> {
        Some(self.problem.dim_x())
    }
    fn value(&self, x: ArrayView1<'_, f64>) -> Result<f64> {
        self.problem.lower_value(x, self.theta)
    }
    fn properties(&self) -> Properties {
        Properties {
            convex: true,
            smooth: true,
            ..Default::default()
        }
    }
}

impl<P: BilevelProblem + ?Sized> Smooth<f64> for LowerObjective<'_, P> {
    fn gradient_into(&self, out: ArrayViewMut1<'_, f64>, x: ArrayView1<'_, f64>) -> Result<()> {
        self.problem.lower_grad_into(out, x, self.theta)
    }
    fn hvp_into(
        &self,
        out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        v: ArrayView1<'_, f64>,
    ) -> Result<()> {
        self.problem.lower_hvp_into(out, x, self.theta, v)
    }
    fn lipschitz(&self) -> Option<f64> {
        Some(self.lipschitz)
    }
}

/// What a [`LowerSolver`] returns.
#[derive(Clone, Debug)]
pub struct LowerResult {
    /// The approximate solution `x̃`.
    pub x: Array1<f64>,
    /// Iterations (gradient evaluations) used.
    pub iterations: usize,
    /// `‖∇ₓh(x̃)‖/μ` if the solver measured it at `x̃` itself; `None` lets the oracle measure
    /// it (one gradient evaluation).
    pub accuracy: Option<f64>,
}

/// How the lower level `min_x h(x, θ)` is solved for the oracle. An implementation returns a
/// point `x̃` with its *achieved* accuracy `‖∇ₓh(x̃, θ)‖/μ` (stopping at `≤ eps`, or at
/// `max_iters` with the accuracy reached: never a false claim).
pub trait LowerSolver<P: BilevelProblem + ?Sized>: Send + Sync {
    /// Name for reports.
    fn name(&self) -> &str;
    /// Solves at `θ` from `x_warm` to `‖∇ₓh(x̃)‖/μ ≤ eps`, `mu` and `lipschitz` being the
    /// problem's constants at `(x_warm, θ)`.
    #[allow(clippy::too_many_arguments)]
    fn solve(
        &self,
        problem: &P,
        theta: ArrayView1<'_, f64>,
        x_warm: ArrayView1<'_, f64>,
        eps: f64,
        mu: f64,
        lipschitz: f64,
        max_iters: usize,
    ) -> Result<LowerResult>;

    /// [`LowerSolver::solve`] on one rank's shard of a data-parallel problem (see
    /// [`crate::sharded`]): `x_warm` is this rank's block, every reduction is taken over the
    /// ranks. The default refuses (with the same error on every rank): a solver that
    /// reduces only through [`ShardedVector`] can run sharded; [`FistaLower`] does.
    #[allow(clippy::too_many_arguments)]
    fn solve_sharded(
        &self,
        problem: &P,
        _shard: ShardInfo<'_>,
        _theta: ArrayView1<'_, f64>,
        _x_warm: ArrayView1<'_, f64>,
        _eps: f64,
        _mu: f64,
        _lipschitz: f64,
        _max_iters: usize,
    ) -> Result<LowerResult> {
        Err(Error::Unsupported {
            what: "a data-parallel (sharded) lower-level solve".into(),
            by: format!(
                "the lower-level solver {} of {}",
                self.name(),
                problem.name()
            ),
            hint: "; use FistaLower (the default) under MPI".into(),
        })
    }
}

/// `h(·, θ)` of a sharded problem on this rank's block, as a function of [`ShardedVector`]s
/// (its value is summed over the ranks by the problem).
struct ShardedLower<'a, P: ?Sized> {
    problem: &'a P,
    theta: ArrayView1<'a, f64>,
    lipschitz: f64,
}

impl<P: BilevelProblem + ?Sized> FunctionOn<f64, ShardedVector> for ShardedLower<'_, P> {
    fn name_on(&self) -> String {
        format!("lower level of {} (sharded)", self.problem.name())
    }
    fn dim_on(&self) -> Option<usize> {
        Some(self.problem.dim_x())
    }
    fn value_on(&self, x: &ShardedVector) -> Result<f64> {
        self.problem.lower_value(x.local.view(), self.theta)
    }
}

impl<P: BilevelProblem + ?Sized> SmoothOn<f64, ShardedVector> for ShardedLower<'_, P> {
    fn gradient_on(&self, out: &mut ShardedVector, x: &ShardedVector) -> Result<()> {
        self.problem
            .lower_grad_into(out.local.view_mut(), x.local.view(), self.theta)
    }
    fn lipschitz_on(&self) -> Option<f64> {
        Some(self.lipschitz)
    }
}

/// The zero function on sharded vectors (its prox is the identity).
struct NoPenalty;

impl FunctionOn<f64, ShardedVector> for NoPenalty {
    fn name_on(&self) -> String {
        "0".into()
    }
    fn dim_on(&self) -> Option<usize> {
        None
    }
    fn value_on(&self, _x: &ShardedVector) -> Result<f64> {
        Ok(0.0)
    }
}

impl ProxOn<f64, ShardedVector> for NoPenalty {
    fn prox_on(&self, out: &mut ShardedVector, x: &ShardedVector, _gamma: f64) -> Result<()> {
        out.copy_from(x);
        Ok(())
    }
}

/// The default lower-level solver: the core FISTA with step `1/L`, the strongly convex
/// momentum `(1 − √(μ/L))/(1 + √(μ/L))`, gradient restart (O'Donoghue & Candès 2015), no
/// objective evaluations, and the certificate `‖∇ₓh(y_k)‖/μ ≤ ε` tested at each extrapolated
/// point, which is returned as soon as it passes.
#[derive(Clone, Copy, Debug, Default)]
pub struct FistaLower;

impl<P: BilevelProblem + ?Sized> LowerSolver<P> for FistaLower {
    fn name(&self) -> &str {
        "FISTA (strongly convex, gradient restart)"
    }
    fn solve(
        &self,
        problem: &P,
        theta: ArrayView1<'_, f64>,
        x_warm: ArrayView1<'_, f64>,
        eps: f64,
        mu: f64,
        lipschitz: f64,
        max_iters: usize,
    ) -> Result<LowerResult> {
        let f = LowerObjective::new(problem, theta, lipschitz);
        let zero = SqrNormL2::new(0.0)?;
        let fista = Fista::new(&f, &zero, fista_lower_params(eps, mu, lipschitz, max_iters));
        let mut s = fista.init(x_warm)?;
        let (reason, iterations) = drive(&fista, &mut s, NoObserver)?;
        // Converged: the certificate was measured at the returned point itself.
        let accuracy = (reason == TerminationReason::Converged).then_some(s.certificate);
        Ok(LowerResult {
            x: s.x,
            iterations,
            accuracy,
        })
    }
    /// The same FISTA on [`ShardedVector`]s: its inner products, norms and stopping test are
    /// taken over every rank's block.
    fn solve_sharded(
        &self,
        problem: &P,
        shard: ShardInfo<'_>,
        theta: ArrayView1<'_, f64>,
        x_warm: ArrayView1<'_, f64>,
        eps: f64,
        mu: f64,
        lipschitz: f64,
        max_iters: usize,
    ) -> Result<LowerResult> {
        let f = ShardedLower {
            problem,
            theta,
            lipschitz,
        };
        let fista: Fista<'_, f64, _, _, ShardedVector> = Fista::new(
            &f,
            &NoPenalty,
            fista_lower_params(eps, mu, lipschitz, max_iters),
        );
        let x0 = ShardedVector::new(x_warm.to_owned(), Arc::clone(shard.comm));
        let mut s = fista.init_on(&x0)?;
        let (reason, iterations) = drive(&fista, &mut s, NoObserver)?;
        let accuracy = (reason == TerminationReason::Converged).then_some(s.certificate);
        Ok(LowerResult {
            x: s.x.local,
            iterations,
            accuracy,
        })
    }
}

/// [`FistaLower`]'s settings.
fn fista_lower_params(eps: f64, mu: f64, lipschitz: f64, max_iters: usize) -> FistaParams<f64> {
    FistaParams::default()
        .with_step(StepRule::Constant(1.0 / lipschitz))
        .with_strong_convexity(mu)
        .with_restart(Restart::Gradient)
        .with_tol(eps)
        .with_max_iters(max_iters)
        .with_track_objective(false)
        .with_certify_extrapolation(true)
}

/// argmin's L-BFGS (More–Thuente line search) as the lower-level solver, stopped on
/// `‖∇ₓh‖/μ ≤ ε`.
#[derive(Clone, Copy, Debug)]
pub struct LbfgsLower {
    /// History length.
    pub memory: usize,
}

impl Default for LbfgsLower {
    fn default() -> Self {
        Self { memory: 10 }
    }
}

impl<P: BilevelProblem + ?Sized> LowerSolver<P> for LbfgsLower {
    fn name(&self) -> &str {
        "L-BFGS (argmin)"
    }
    fn solve(
        &self,
        problem: &P,
        theta: ArrayView1<'_, f64>,
        x_warm: ArrayView1<'_, f64>,
        eps: f64,
        mu: f64,
        lipschitz: f64,
        max_iters: usize,
    ) -> Result<LowerResult> {
        let f = LowerObjective::new(problem, theta, lipschitz);
        let params = LbfgsParams {
            memory: self.memory,
            tol: eps,
            strong_convexity: Some(mu),
            max_iters: max_iters as u64,
        };
        let sol = Lbfgs::new(&f, params).run(x_warm)?;
        Ok(LowerResult {
            accuracy: (sol.reason == TerminationReason::Converged).then_some(sol.certificate),
            x: sol.x,
            iterations: sol.iterations,
        })
    }
}

/// The hypergradient oracle of a [`BilevelProblem`].
pub struct Oracle<'p, P: BilevelProblem + ?Sized> {
    problem: &'p P,
    params: OracleParams,
    lower: Arc<dyn LowerSolver<P> + 'p>,
}

impl<'p, P: BilevelProblem + ?Sized> Clone for Oracle<'p, P> {
    fn clone(&self) -> Self {
        Self {
            problem: self.problem,
            params: self.params,
            lower: Arc::clone(&self.lower),
        }
    }
}

impl<'p, P: BilevelProblem + ?Sized> Oracle<'p, P> {
    /// An oracle with default settings (lower level by [`FistaLower`]).
    pub fn new(problem: &'p P) -> Self {
        Self {
            problem,
            params: OracleParams::default(),
            lower: Arc::new(FistaLower),
        }
    }

    /// With another lower-level solver.
    pub fn with_lower_solver(mut self, lower: impl LowerSolver<P> + 'p) -> Self {
        self.lower = Arc::new(lower);
        self
    }

    /// The lower-level solver's name.
    pub fn lower_solver_name(&self) -> &str {
        self.lower.name()
    }

    /// With other settings.
    pub fn with_params(mut self, params: OracleParams) -> Self {
        self.params = params;
        self
    }

    /// The problem.
    pub fn problem(&self) -> &'p P {
        self.problem
    }

    /// `‖v‖` of an `x`-space vector: over every rank's block for a sharded problem
    /// ([`crate::sharded`]), else of `v`.
    pub fn x_norm(&self, v: ArrayView1<'_, f64>) -> f64 {
        match self.problem.sharding() {
            Some(s) => s.comm.sum_scalar(v.dot(&v)).sqrt(),
            None => norm2(v),
        }
    }

    /// A rank-local result agreed over the ranks of a sharded problem (the same `Err` on every
    /// rank if any failed); the result itself otherwise.
    fn agreed<T>(&self, r: Result<T>) -> Result<T> {
        match self.problem.sharding() {
            Some(s) => hyperprox_core::comm::agree_dyn(s.comm.as_ref(), r),
            None => r,
        }
    }

    /// Solves the lower level at `θ` to `‖∇ₓh(x̃)‖/μ ≤ eps`, starting from `x_warm`, with the
    /// oracle's [`LowerSolver`]. The returned accuracy is measured at the returned point
    /// (one gradient evaluation), so it is the accuracy achieved, whatever the solver claims.
    pub fn solve_lower(
        &self,
        theta: ArrayView1<'_, f64>,
        x_warm: ArrayView1<'_, f64>,
        eps: f64,
    ) -> Result<LowerSolve> {
        let p = self.problem;
        check_theta(p, theta)?;
        self.agreed(check_x(p, x_warm))?;
        check_accuracy("eps", eps)?;
        let c0 = p.constants(x_warm, theta)?;
        let (mu, l) = (c0.mu, c0.lipschitz);
        if !(mu > 0.0 && l >= mu && l.is_finite()) {
            return Err(Error::param(
                "constants (mu, L)",
                format!("({mu}, {l})"),
                "the problem must report 0 < μ ≤ L < ∞ for the lower level",
            ));
        }
        let max_iters = self.params.ll_max_iters;
        let solved = match p.sharding() {
            Some(shard) => self
                .lower
                .solve_sharded(p, shard, theta, x_warm, eps, mu, l, max_iters),
            None => self.lower.solve(p, theta, x_warm, eps, mu, l, max_iters),
        };
        let LowerResult {
            x,
            iterations,
            accuracy,
        } = solved.map_err(|e| match e {
            Error::Diverged {
                iteration, detail, ..
            } => Error::Diverged {
                method: format!("lower-level solver ({})", p.name()),
                iteration,
                detail: format!("{detail}; check the data and the hyperparameters (θ too large?)"),
            },
            e => e,
        })?;
        self.agreed(check_x(p, x.view()))?;
        let accuracy = match accuracy {
            Some(a) => a,
            None => {
                let mut grad = Array1::zeros(x.len());
                p.lower_grad_into(grad.view_mut(), x.view(), theta)?;
                self.x_norm(grad.view()) / mu
            }
        };
        let constants = p.constants(x.view(), theta)?;
        Ok(LowerSolve {
            x,
            accuracy,
            iterations,
            constants,
        })
    }

    /// Conjugate gradients (the core [`conjugate_gradient`]) on `H(x) q = b` from `q = 0` to
    /// the absolute residual `≤ delta` or the oracle's CG cap. Returns
    /// `(q, residual, iterations)`.
    pub fn solve_linear(
        &self,
        theta: ArrayView1<'_, f64>,
        x: ArrayView1<'_, f64>,
        b: ArrayView1<'_, f64>,
        delta: f64,
    ) -> Result<(Array1<f64>, f64, usize)> {
        let p = self.problem;
        let mut q = Array1::zeros(b.len());
        let failure = std::cell::Cell::new(None);
        let apply = |out: ArrayViewMut1<'_, f64>, v: ArrayView1<'_, f64>| {
            if let Err(e) = p.lower_hvp_into(out, x, theta, v) {
                failure.set(Some(e));
            }
        };
        let params = CgParams::absolute(delta, self.params.cg_max_iters);
        let outcome = match p.sharding() {
            // The same CG on this rank's blocks, its inner products over all ranks.
            Some(shard) => {
                let comm = Arc::clone(shard.comm);
                let bv = ShardedVector::new(b.to_owned(), Arc::clone(&comm));
                let mut qv = ShardedVector::new(q.clone(), comm);
                let apply_v = |out: &mut ShardedVector, v: &ShardedVector| {
                    apply(out.local.view_mut(), v.local.view())
                };
                let o = conjugate_gradient_on(apply_v, None, &bv, &mut qv, &params);
                q = qv.local;
                o
            }
            None => conjugate_gradient(apply, None, b, q.view_mut(), &params),
        };
        if let Some(e) = failure.take() {
            return Err(e);
        }
        let outcome = outcome.map_err(|e| match e {
            Error::NotConverged {
                iterations,
                residual,
                tol,
                ..
            } => Error::NotConverged {
                method: format!(
                    "conjugate gradient on the lower-level Hessian of {} (not positive definite)",
                    p.name()
                ),
                iterations,
                residual,
                tol,
            },
            e => e,
        })?;
        Ok((q, outcome.residual, outcome.iterations))
    }

    /// The inexact hypergradient at `θ`: lower level to `eps` (warm-started at `x_warm`), CG to
    /// `delta`, `z = −J(x̃)ᵀq`, and its bound `ω`. Unknown constants are estimated and
    /// `estimates` updated.
    pub fn hypergradient(
        &self,
        theta: ArrayView1<'_, f64>,
        x_warm: ArrayView1<'_, f64>,
        eps: f64,
        delta: f64,
        estimates: &mut Estimates,
    ) -> Result<Hypergradient> {
        check_accuracy("delta", delta)?;
        let ll = self.solve_lower(theta, x_warm, eps)?;
        let mut hg = self.hypergradient_at_solution(theta, ll.x, delta, estimates)?;
        hg.ll_iters = ll.iterations;
        Ok(hg)
    }

    /// The hypergradient at a given lower-level point `x` (CG to `delta`).
    fn hypergradient_at_solution(
        &self,
        theta: ArrayView1<'_, f64>,
        x: Array1<f64>,
        delta: f64,
        estimates: &mut Estimates,
    ) -> Result<Hypergradient> {
        let p = self.problem;
        let mut gg = Array1::zeros(x.len());
        p.upper_grad_into(gg.view_mut(), x.view())?;
        let (q, _, cg_iters) = self.solve_linear(theta, x.view(), gg.view(), delta)?;
        let mut hg = self.hypergradient_at(theta, x.view(), q.view(), estimates)?;
        hg.cg_iters = cg_iters;
        Ok(hg)
    }

    /// `z = −J(x)ᵀq` and the bound `ω` for a *given* lower-level point `x` and linear-system
    /// solution `q` (the achieved accuracies are measured: `ε = ‖∇ₓh(x)‖/μ`,
    /// `δ = ‖H(x) q − ∇g(x)‖`). Useful to study the bound.
    pub fn hypergradient_at(
        &self,
        theta: ArrayView1<'_, f64>,
        x: ArrayView1<'_, f64>,
        q: ArrayView1<'_, f64>,
        estimates: &mut Estimates,
    ) -> Result<Hypergradient> {
        let p = self.problem;
        check_theta(p, theta)?;
        self.agreed(check_x(p, x).and_then(|_| check_x(p, q)))?;
        let n = x.len();
        let mut c = p.constants(x, theta)?;
        if self.params.estimate_constants {
            c.j_norm = Constant::Unknown;
            c.l_j = Constant::Unknown;
            c.l_hinv = Constant::Unknown;
        }
        let mut gh = Array1::zeros(n);
        p.lower_grad_into(gh.view_mut(), x, theta)?;
        let eps = self.x_norm(gh.view()) / c.mu;
        let mut gg = Array1::zeros(n);
        p.upper_grad_into(gg.view_mut(), x)?;
        let mut hq = Array1::zeros(n);
        p.lower_hvp_into(hq.view_mut(), x, theta, q)?;
        let delta = self.x_norm((&hq - &gg).view());
        let mut z = Array1::zeros(p.dim_theta());
        p.cross_jt_into(z.view_mut(), x, theta, q)?;
        z.mapv_inplace(|v| -v);
        let upper = p.upper_value(x)?;
        let grad_g_norm = self.x_norm(gg.view());
        let certified =
            c.j_norm.known().is_some() && c.l_j.known().is_some() && c.l_hinv.known().is_some();
        if !certified {
            self.update_estimates(theta, x, q, &z, &hq, c, estimates)?;
        }
        let j_norm = c.j_norm.known().unwrap_or(estimates.j_norm);
        let l_j = c.l_j.known().unwrap_or(estimates.l_j);
        let l_hinv = c.l_hinv.known().unwrap_or(estimates.l_h / (c.mu * c.mu));
        let omega = error_bound(c.mu, c.l_g, j_norm, l_j, l_hinv, grad_g_norm, eps, delta);
        for (what, v) in [("hypergradient", norm2(z.view())), ("upper level", upper)] {
            if !v.is_finite() {
                return Err(Error::Diverged {
                    method: format!("hypergradient oracle ({}: {what})", p.name()),
                    iteration: 0,
                    detail: format!("{what} = {v}"),
                });
            }
        }
        Ok(Hypergradient {
            z,
            x: x.to_owned(),
            q: q.to_owned(),
            upper,
            grad_g_norm,
            eps,
            delta,
            omega,
            certified,
            ll_iters: 0,
            cg_iters: 0,
            constants: c,
        })
    }

    /// Online estimates of the unknown constants (running maxima): `‖J‖ ≥ ‖Jᵀq‖/‖q‖`, and
    /// `L_J`, `L_H` from one random perturbation `s` of `x` (`‖s‖ = 1e-4·max(1, ‖x‖)/√n`·√n).
    #[allow(clippy::too_many_arguments)]
    fn update_estimates(
        &self,
        theta: ArrayView1<'_, f64>,
        x: ArrayView1<'_, f64>,
        q: ArrayView1<'_, f64>,
        z: &Array1<f64>,
        hq: &Array1<f64>,
        c: Constants,
        est: &mut Estimates,
    ) -> Result<()> {
        let p = self.problem;
        let qn = self.x_norm(q);
        if qn == 0.0 {
            return Ok(());
        }
        if c.j_norm == Constant::Unknown {
            est.j_norm = est.j_norm.max(norm2(z.view()) / qn);
        }
        if c.l_j == Constant::Unknown || c.l_hinv == Constant::Unknown {
            let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed ^ est.updates);
            let n = x.len();
            // The direction of the whole problem; a shard takes its block of it.
            let (offset, whole) = p.sharding().map_or((0, n), |s| (s.offset, s.global_len));
            let draws: Vec<f64> = (0..whole).map(|_| rng.random::<f64>() - 0.5).collect();
            let mut s = Array1::from(draws[offset..offset + n].to_vec());
            let r = 1e-4 * self.x_norm(x).max(1.0);
            let sn = self.x_norm(s.view());
            s.mapv_inplace(|v| v * r / sn);
            let xs = &x + &s;
            if c.l_j == Constant::Unknown {
                let mut z2 = Array1::zeros(z.len());
                p.cross_jt_into(z2.view_mut(), xs.view(), theta, q)?;
                // z = −Jᵀq, so (J(x+s) − J(x))ᵀq = z2 + z.
                est.l_j = est.l_j.max(norm2((&z2 + z).view()) / (r * qn));
            }
            if c.l_hinv == Constant::Unknown {
                let mut hq2 = Array1::zeros(n);
                p.lower_hvp_into(hq2.view_mut(), xs.view(), theta, q)?;
                est.l_h = est.l_h.max(self.x_norm((&hq2 - hq).view()) / (r * qn));
            }
        }
        est.updates += 1;
        Ok(())
    }

    /// A hypergradient solved to tight accuracies `eps = delta = tol` (the "exact" oracle).
    pub fn exact(
        &self,
        theta: ArrayView1<'_, f64>,
        x_warm: ArrayView1<'_, f64>,
        tol: f64,
    ) -> Result<Hypergradient> {
        self.hypergradient(theta, x_warm, tol, tol, &mut Estimates::default())
    }

    /// The upper-level value `f(θ) ≈ g(x̃)` with `x̃` solved to `eps` (returns `(g(x̃), x̃)`).
    pub fn value(
        &self,
        theta: ArrayView1<'_, f64>,
        x_warm: ArrayView1<'_, f64>,
        eps: f64,
    ) -> Result<(f64, LowerSolve)> {
        let ll = self.solve_lower(theta, x_warm, eps)?;
        Ok((self.problem.upper_value(ll.x.view())?, ll))
    }

    /// The **unrolled** hypergradient: `K` steps of gradient descent
    /// `x_{k+1} = x_k − τ∇ₓh(x_k, θ)` from `x0` (`τ = 1/L(θ)`, held fixed, i.e. not
    /// differentiated), then reverse mode:
    /// `a_K = ∇g(x_K)`, `∇θ −= τ J(x_k)ᵀ a_{k+1}`, `a_k = a_{k+1} − τ H(x_k) a_{k+1}`.
    /// Returns `(g(x_K), ∇_θ g(x_K(θ)))`; memory `K·dim_x`.
    pub fn unrolled(
        &self,
        theta: ArrayView1<'_, f64>,
        x0: ArrayView1<'_, f64>,
        k: usize,
    ) -> Result<(f64, Array1<f64>)> {
        let p = self.problem;
        check_theta(p, theta)?;
        check_x(p, x0)?;
        let tau = 1.0 / p.constants(x0, theta)?.lipschitz;
        let n = x0.len();
        let mut xs = Array2::zeros((k + 1, n));
        xs.row_mut(0).assign(&x0);
        let mut g = Array1::zeros(n);
        for i in 0..k {
            p.lower_grad_into(g.view_mut(), xs.row(i), theta)?;
            let next = &xs.row(i) - &(&g * tau);
            xs.row_mut(i + 1).assign(&next);
        }
        let xk = xs.row(k);
        let val = p.upper_value(xk)?;
        let mut a = Array1::zeros(n);
        p.upper_grad_into(a.view_mut(), xk)?;
        let mut grad = Array1::zeros(p.dim_theta());
        let mut jt = Array1::zeros(p.dim_theta());
        let mut ha = Array1::zeros(n);
        for i in (0..k).rev() {
            p.cross_jt_into(jt.view_mut(), xs.row(i), theta, a.view())?;
            grad.scaled_add(-tau, &jt);
            p.lower_hvp_into(ha.view_mut(), xs.row(i), theta, a.view())?;
            a.scaled_add(-tau, &ha);
        }
        Ok((val, grad))
    }
}

/// `ω(ε, δ) = c·ε + (‖J‖/μ)·δ + (L_J·L_g/μ)·ε²` with
/// `c = L_g‖J‖/μ + L_{H⁻¹}‖∇g‖‖J‖ + L_J‖∇g‖/μ`.
#[allow(clippy::too_many_arguments)]
pub fn error_bound(
    mu: f64,
    l_g: f64,
    j_norm: f64,
    l_j: f64,
    l_hinv: f64,
    grad_g_norm: f64,
    eps: f64,
    delta: f64,
) -> f64 {
    let c = l_g * j_norm / mu + l_hinv * grad_g_norm * j_norm + l_j * grad_g_norm / mu;
    c * eps + j_norm / mu * delta + l_j * l_g / mu * eps * eps
}

/// Central finite differences of `f(θ) = g(x̂(θ))` (lower level solved to `tol`), step `h`
/// per coordinate. Returns the FD gradient.
pub fn finite_difference_hypergradient<P: BilevelProblem + ?Sized>(
    oracle: &Oracle<'_, P>,
    theta: ArrayView1<'_, f64>,
    x_warm: ArrayView1<'_, f64>,
    h: f64,
    tol: f64,
) -> Result<Array1<f64>> {
    let mut out = Array1::zeros(theta.len());
    let mut t = theta.to_owned();
    for i in 0..theta.len() {
        let t0 = t[i];
        t[i] = t0 + h;
        let (fp, _) = oracle.value(t.view(), x_warm, tol)?;
        t[i] = t0 - h;
        let (fm, _) = oracle.value(t.view(), x_warm, tol)?;
        t[i] = t0;
        out[i] = (fp - fm) / (2.0 * h);
    }
    Ok(out)
}

/// Compares the oracle's tight hypergradient with finite differences at `θ`; returns the
/// relative error `‖z − z_fd‖/‖z_fd‖`.
pub fn check_hypergradient<P: BilevelProblem + ?Sized>(
    oracle: &Oracle<'_, P>,
    theta: ArrayView1<'_, f64>,
    h: f64,
    tol: f64,
) -> Result<f64> {
    let x0 = oracle.problem().x_start();
    let hg = oracle.exact(theta, x0.view(), tol)?;
    let fd = finite_difference_hypergradient(oracle, theta, hg.x.view(), h, tol)?;
    Ok(norm2((&hg.z - &fd).view()) / norm2(fd.view()).max(f64::MIN_POSITIVE))
}

/// Relative errors of a problem's derivatives against central finite differences along a
/// random direction `v` (seeded), at `(x, θ)`:
/// `[∇ₓh·v, H v, Jᵀq (via ∇_θ⟨∇ₓh, q⟩ along a random θ-direction), ∇g·v]`.
/// Each entry is `|analytic − fd| / max(|fd|, |analytic|, 1e-12)` (vectors: norms).
pub fn check_problem_derivatives<P: BilevelProblem + ?Sized>(
    p: &P,
    x: ArrayView1<'_, f64>,
    theta: ArrayView1<'_, f64>,
    seed: u64,
) -> Result<[f64; 4]> {
    check_theta(p, theta)?;
    check_x(p, x)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = x.len();
    let m = theta.len();
    let unit = |k: usize, rng: &mut rand::rngs::StdRng| {
        let v: Array1<f64> = Array1::from_shape_fn(k, |_| rng.random::<f64>() - 0.5);
        let nv = norm2(v.view());
        v / nv
    };
    let v = unit(n, &mut rng);
    let q = unit(n, &mut rng);
    let w = unit(m, &mut rng);
    let h = 1e-5 * norm2(x).max(1.0);
    let rel = |a: f64, b: f64| (a - b).abs() / a.abs().max(b.abs()).max(1e-12);
    let relv = |a: &Array1<f64>, b: &Array1<f64>| {
        norm2((a - b).view()) / norm2(a.view()).max(norm2(b.view())).max(1e-12)
    };
    let xp = &x + &(&v * h);
    let xm = &x - &(&v * h);
    // ∇ₓh · v
    let mut g = Array1::zeros(n);
    p.lower_grad_into(g.view_mut(), x, theta)?;
    let fd = (p.lower_value(xp.view(), theta)? - p.lower_value(xm.view(), theta)?) / (2.0 * h);
    let e_grad = rel(g.dot(&v), fd);
    // H v
    let mut hv = Array1::zeros(n);
    p.lower_hvp_into(hv.view_mut(), x, theta, v.view())?;
    let (mut gp, mut gm) = (Array1::zeros(n), Array1::zeros(n));
    p.lower_grad_into(gp.view_mut(), xp.view(), theta)?;
    p.lower_grad_into(gm.view_mut(), xm.view(), theta)?;
    let e_hvp = relv(&hv, &((&gp - &gm) / (2.0 * h)));
    // Jᵀq · w = d/dt ⟨∇ₓh(x, θ + t w), q⟩
    let mut jt = Array1::zeros(m);
    p.cross_jt_into(jt.view_mut(), x, theta, q.view())?;
    let ht = 1e-5;
    let tp = &theta + &(&w * ht);
    let tm = &theta - &(&w * ht);
    p.lower_grad_into(gp.view_mut(), x, tp.view())?;
    p.lower_grad_into(gm.view_mut(), x, tm.view())?;
    let e_jt = rel(jt.dot(&w), (gp.dot(&q) - gm.dot(&q)) / (2.0 * ht));
    // ∇g · v
    p.upper_grad_into(g.view_mut(), x)?;
    let fd = (p.upper_value(xp.view())? - p.upper_value(xm.view())?) / (2.0 * h);
    let e_g = rel(g.dot(&v), fd);
    Ok([e_grad, e_hvp, e_jt, e_g])
}

/// Directional finite-difference check of the tight hypergradient at `θ` along `dirs` random
/// unit directions (seeded): returns the largest `|zᵀd − (f(θ+hd) − f(θ−hd))/2h| / ‖z‖`.
pub fn check_hypergradient_directions<P: BilevelProblem + ?Sized>(
    oracle: &Oracle<'_, P>,
    theta: ArrayView1<'_, f64>,
    dirs: usize,
    h: f64,
    tol: f64,
    seed: u64,
) -> Result<f64> {
    let x0 = oracle.problem().x_start();
    let hg = oracle.exact(theta, x0.view(), tol)?;
    let zn = norm2(hg.z.view()).max(f64::MIN_POSITIVE);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut worst = 0.0f64;
    for _ in 0..dirs {
        let d: Array1<f64> = Array1::from_shape_fn(theta.len(), |_| rng.random::<f64>() - 0.5);
        let d = &d / norm2(d.view());
        let (fp, _) = oracle.value((&theta + &(&d * h)).view(), hg.x.view(), tol)?;
        let (fm, _) = oracle.value((&theta - &(&d * h)).view(), hg.x.view(), tol)?;
        worst = worst.max((hg.z.dot(&d) - (fp - fm) / (2.0 * h)).abs() / zn);
    }
    Ok(worst)
}

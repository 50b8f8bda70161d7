//! MAID, the method of adaptive inexact descent (Salehi, Mukherjee, Roberts & Ehrhardt 2025).
//!
//! Each outer iteration `k` (Algorithm 3.1 of the paper):
//!
//! 1. **Inexact gradient** (Algorithm 3.2): compute `z` with the lower level solved to `ε_k`
//!    and CG to `δ_k`; while the error bound fails the descent test `ω ≤ (1 − η)‖z‖`, shrink
//!    `ε_k, δ_k ← ν·(ε_k, δ_k)` and recompute (then `−z` is a certified descent direction).
//! 2. **Inexact backtracking** along `−z`: trial steps `α = ρ^i α_k`, `i < j`; the candidate
//!    `θ' = θ_k − α z` is solved to `ε_k` and accepted when
//!    `U⁺(x̃', ε) − U⁻(x̃, ε) + λ α ‖z‖² ≤ 0`, with the sandwich bounds
//!    `U±(x̃, ε) = g(x̃) ± ‖∇g(x̃)‖ε ± (L_g/2)ε²` (the `ε²` term of `U⁻` is dropped for convex
//!    `g`, Remark 3.6). This implies the exact decrease `f(θ') ≤ f(θ_k) − λα‖z‖²`.
//! 3. If no trial is accepted, tighten `ε_k, δ_k ← ν·(ε_k, δ_k)`, allow one more trial
//!    (`j ← j + 1`) and go back to 1. After acceptance: `α_{k+1} = ρ̄ α`,
//!    `ε_{k+1}, δ_{k+1} = ν̄·(ε_k, δ_k)`.
//!
//! Accuracy is therefore tightened only when a line search fails and relaxed after every
//! success, so early iterations are cheap. The `fixed_accuracy` mode keeps `ε, δ` constant
//! (the paper's ablation "fixed accuracy + backtracking").
//!
//! Defaults: `ε₀ = δ₀ = 0.1`, `ρ = 0.5`, `ν = 0.5` (the paper's experiments), `ρ̄ = 10/9`,
//! `ν̄ = 1.05`, `η = 10⁻⁴`, `λ = η² = 10⁻⁸`, 10 backtracking trials, as in the reference code
//! (MAID.py, commit 6986372); `α₀ = 0.1`. Every constant can be set
//! ([`MaidParams::with_constants`], [`MaidConstants`], or one builder per pair).
//!
//! **Stopping.** Besides the iteration and work budgets and the stall, two tests: `‖z‖ ≤ tol`
//! (uncertified, `z` is inexact) and, with [`MaidParams::with_stationarity_tol`], the certified
//! stationarity test `‖z‖ + ω ≤ tol`: because `ω ≥ ‖z − ∇f(θ)‖` (when all constants are
//! known), it proves `‖∇f(θ)‖ ≤ tol` at the returned `θ`. It is checked on every hypergradient,
//! also on those the descent test rejects (near a stationary point the descent test keeps
//! tightening `ε`; the stationarity test is how such a run ends with a certificate instead of a
//! stall).
//!
//! # References
//! M. S. Salehi, S. Mukherjee, L. Roberts, M. J. Ehrhardt, "An adaptively inexact first-order
//! method for bilevel optimization with application to hyperparameter learning",
//! SIAM J. Math. Data Sci. 7(3), 2025, arXiv:2308.10098.
//!
//! # Example
//! ```
//! use hyperprox_bilevel::{Maid, MaidParams, OuterSolver, QuadraticProblem};
//! let p = QuadraticProblem::well_conditioned(200, 5, 29).unwrap();
//! let maid = Maid::new(&p, MaidParams::default().with_alpha0(1.0 / p.lipschitz_f()).with_max_iters(60)).unwrap();
//! let res = maid.run(p.theta_start_view(), |_| true).unwrap();
//! let gap = (p.f_exact(res.theta.view()) - p.f_star()) / p.f_star().abs().max(1.0);
//! assert!(gap < 1e-3);
//! ```

use crate::oracle::{Estimates, Oracle, OracleParams};
use crate::outer::{certified_stationarity, info, outer_stop, OuterRecord, OuterSolver};
use crate::problem::{check_accuracy, check_tolerance, BilevelProblem};
use hyperprox_core::error::{Error, Result};
use hyperprox_core::linalg::norm2;
use hyperprox_core::solve::{IterInfo, Iterative, TerminationReason};
use ndarray::Array1;

/// MAID's settings (see the module docs for the defaults and their source).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaidParams {
    /// Initial lower-level accuracy `ε₀`.
    pub eps0: f64,
    /// Initial CG accuracy `δ₀`.
    pub delta0: f64,
    /// Initial step `α₀`.
    pub alpha0: f64,
    /// Step shrink factor `ρ ∈ (0, 1)` in backtracking.
    pub rho: f64,
    /// Step growth `ρ̄ ≥ 1` after an accepted step.
    pub rho_bar: f64,
    /// Accuracy shrink `ν ∈ (0, 1)`.
    pub nu: f64,
    /// Accuracy growth `ν̄ ≥ 1` after an accepted step.
    pub nu_bar: f64,
    /// Descent margin `η ∈ (0, 1)` of the test `ω ≤ (1 − η)‖z‖`.
    pub eta: f64,
    /// Armijo fraction `λ > 0` of the sufficient decrease.
    pub armijo: f64,
    /// Backtracking trials in the first line search of an iteration (one more per retry).
    pub max_backtracks: usize,
    /// Line-search failures (accuracy tightenings) allowed per outer iteration.
    pub max_retries: usize,
    /// Smallest accuracy; below it the run stops as stalled.
    pub eps_min: f64,
    /// Enforce the descent test of Algorithm 3.2.
    pub descent_test: bool,
    /// Keep `ε, δ` fixed (ablation); the descent test is then not enforced.
    pub fixed_accuracy: bool,
    /// Outer-iteration limit.
    pub max_iters: usize,
    /// Work budget: total lower-level + CG iterations.
    pub budget: usize,
    /// Stop when `‖z‖ ≤ tol` (uncertified: `z` is inexact).
    pub tol: f64,
    /// Stop when `‖z‖ + ω ≤ stationarity_tol` with a certified `ω`, which proves
    /// `‖∇f(θ)‖ ≤ stationarity_tol` at the returned `θ` (0 = off; see
    /// [`certified_stationarity`](crate::outer::certified_stationarity)).
    pub stationarity_tol: f64,
    /// Inner-solver caps.
    pub oracle: OracleParams,
}

/// MAID's line-search and accuracy constants, the part of [`MaidParams`] a user tunes (the
/// CLI's `--rho`, `--rho-bar`, `--nu`, `--nu-bar`, `--eta`, `--armijo`, `--max-backtracks`,
/// `--max-retries`). Defaults as in [`MaidParams::default`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct MaidConstants {
    /// Step shrink ρ ∈ (0, 1) of the backtracking.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = MaidParams::default().rho))]
    pub rho: f64,
    /// Step growth ρ̄ ≥ 1 after an accepted step.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = MaidParams::default().rho_bar))]
    pub rho_bar: f64,
    /// Accuracy shrink ν ∈ (0, 1) after a failed test.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = MaidParams::default().nu))]
    pub nu: f64,
    /// Accuracy growth ν̄ ≥ 1 after an accepted step.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = MaidParams::default().nu_bar))]
    pub nu_bar: f64,
    /// Descent margin η ∈ (0, 1) of the test ω ≤ (1 − η)‖z‖.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = MaidParams::default().eta))]
    pub eta: f64,
    /// Armijo fraction λ > 0 of the sufficient decrease.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = MaidParams::default().armijo))]
    pub armijo: f64,
    /// Backtracking trials of an iteration's first line search.
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value_t = MaidParams::default().max_backtracks)
    )]
    pub max_backtracks: usize,
    /// Line-search failures (accuracy tightenings) allowed per outer iteration.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = MaidParams::default().max_retries))]
    pub max_retries: usize,
}

impl Default for MaidConstants {
    fn default() -> Self {
        MaidParams::default().constants()
    }
}

impl Default for MaidParams {
    fn default() -> Self {
        Self {
            eps0: 0.1,
            delta0: 0.1,
            alpha0: 0.1,
            rho: 0.5,
            rho_bar: 10.0 / 9.0,
            nu: 0.5,
            nu_bar: 1.05,
            eta: 1e-4,
            armijo: 1e-8,
            max_backtracks: 10,
            max_retries: 40,
            eps_min: 1e-12,
            descent_test: true,
            fixed_accuracy: false,
            max_iters: 100,
            budget: 1_000_000,
            tol: 0.0,
            stationarity_tol: 0.0,
            oracle: OracleParams::default(),
        }
    }
}

impl MaidParams {
    /// Initial accuracies `ε₀` and `δ₀`.
    pub fn with_accuracies(mut self, eps0: f64, delta0: f64) -> Self {
        self.eps0 = eps0;
        self.delta0 = delta0;
        self
    }
    /// Initial step.
    pub fn with_alpha0(mut self, a: f64) -> Self {
        self.alpha0 = a;
        self
    }
    /// Outer-iteration limit.
    pub fn with_max_iters(mut self, n: usize) -> Self {
        self.max_iters = n;
        self
    }
    /// Work budget (lower-level + CG iterations).
    pub fn with_budget(mut self, n: usize) -> Self {
        self.budget = n;
        self
    }
    /// Fixed-accuracy ablation.
    pub fn with_fixed_accuracy(mut self, on: bool) -> Self {
        self.fixed_accuracy = on;
        self
    }
    /// Turn the descent test on or off.
    pub fn with_descent_test(mut self, on: bool) -> Self {
        self.descent_test = on;
        self
    }
    /// Estimate the bound's constants online instead of using the problem's proven ones.
    pub fn with_estimated_constants(mut self, on: bool) -> Self {
        self.oracle.estimate_constants = on;
        self
    }
    /// Stopping tolerance on `‖z‖`.
    pub fn with_tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }
    /// Stop on certified stationarity `‖z‖ + ω ≤ tol` (0 = off).
    pub fn with_stationarity_tol(mut self, tol: f64) -> Self {
        self.stationarity_tol = tol;
        self
    }
    /// The line-search and accuracy constants.
    pub fn constants(&self) -> MaidConstants {
        MaidConstants {
            rho: self.rho,
            rho_bar: self.rho_bar,
            nu: self.nu,
            nu_bar: self.nu_bar,
            eta: self.eta,
            armijo: self.armijo,
            max_backtracks: self.max_backtracks,
            max_retries: self.max_retries,
        }
    }
    /// Sets all line-search and accuracy constants.
    pub fn with_constants(mut self, c: MaidConstants) -> Self {
        self.rho = c.rho;
        self.rho_bar = c.rho_bar;
        self.nu = c.nu;
        self.nu_bar = c.nu_bar;
        self.eta = c.eta;
        self.armijo = c.armijo;
        self.max_backtracks = c.max_backtracks;
        self.max_retries = c.max_retries;
        self
    }
    /// Step shrink `ρ` and growth `ρ̄`.
    pub fn with_step_factors(mut self, rho: f64, rho_bar: f64) -> Self {
        self.rho = rho;
        self.rho_bar = rho_bar;
        self
    }
    /// Accuracy shrink `ν` and growth `ν̄`.
    pub fn with_accuracy_factors(mut self, nu: f64, nu_bar: f64) -> Self {
        self.nu = nu;
        self.nu_bar = nu_bar;
        self
    }
    /// Descent margin `η` and Armijo fraction `λ`.
    pub fn with_margins(mut self, eta: f64, armijo: f64) -> Self {
        self.eta = eta;
        self.armijo = armijo;
        self
    }
    /// Backtracking trials of the first line search and line-search failures allowed per
    /// outer iteration.
    pub fn with_line_search_limits(mut self, max_backtracks: usize, max_retries: usize) -> Self {
        self.max_backtracks = max_backtracks;
        self.max_retries = max_retries;
        self
    }

    fn validate(&self) -> Result<()> {
        check_accuracy("eps0", self.eps0)?;
        check_accuracy("delta0", self.delta0)?;
        check_accuracy("alpha0", self.alpha0)?;
        check_accuracy("eps_min", self.eps_min)?;
        check_tolerance("tol", self.tol)?;
        check_tolerance("stationarity_tol", self.stationarity_tol)?;
        let open01 = |name: &str, v: f64| {
            if v > 0.0 && v < 1.0 {
                Ok(())
            } else {
                Err(Error::param(name, v, "must lie in (0, 1)"))
            }
        };
        open01("rho", self.rho)?;
        open01("nu", self.nu)?;
        open01("eta", self.eta)?;
        for (name, v) in [("rho_bar", self.rho_bar), ("nu_bar", self.nu_bar)] {
            if !(v >= 1.0 && v.is_finite()) {
                return Err(Error::param(
                    name,
                    v,
                    "growth factors must be ≥ 1 (e.g. 1.1)",
                ));
            }
        }
        if !(self.armijo > 0.0 && self.armijo.is_finite()) {
            return Err(Error::param("armijo", self.armijo, "must be positive"));
        }
        if self.max_backtracks == 0 {
            return Err(Error::param(
                "max_backtracks",
                0,
                "allow at least one trial step",
            ));
        }
        Ok(())
    }
}

/// MAID's state (all a resumed run needs).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct MaidState {
    /// Current hyperparameters.
    #[serde(with = "hyperprox_core::figure::serde_array")]
    pub theta: Array1<f64>,
    /// Current lower-level point (warm start).
    #[serde(with = "hyperprox_core::figure::serde_array")]
    pub x: Array1<f64>,
    /// Current accuracy `ε`.
    pub eps: f64,
    /// Current CG accuracy `δ`.
    pub delta: f64,
    /// Current initial step.
    pub alpha: f64,
    /// Estimates of the unknown constants.
    pub estimates: Estimates,
    /// Outer iterations done.
    pub iter: usize,
    /// Lower-level iterations so far.
    pub ll_total: usize,
    /// CG iterations so far.
    pub cg_total: usize,
    /// Per-iteration records.
    pub history: Vec<OuterRecord>,
    /// Set when no acceptable step exists at the finest accuracy allowed.
    pub stalled: Option<String>,
    /// `Some(‖z‖ + ω)` once stationarity is certified.
    pub stationary: Option<f64>,
}

/// The MAID solver over `θ` (see the module docs).
pub struct Maid<'p, P: BilevelProblem + ?Sized> {
    oracle: Oracle<'p, P>,
    params: MaidParams,
}

impl<'p, P: BilevelProblem + ?Sized> Maid<'p, P> {
    /// MAID on `problem`; `Err` for invalid settings.
    pub fn new(problem: &'p P, params: MaidParams) -> Result<Self> {
        params.validate()?;
        Ok(Self {
            oracle: Oracle::new(problem).with_params(params.oracle),
            params,
        })
    }

    /// The settings.
    pub fn params(&self) -> &MaidParams {
        &self.params
    }

    fn stall(
        &self,
        s: &mut MaidState,
        why: String,
        zn: f64,
        omega: f64,
        certified: bool,
    ) -> IterInfo<f64> {
        s.stalled = Some(why);
        let upper = s.history.last().map(|r| r.upper).unwrap_or(f64::NAN);
        Self::finish(s, upper, zn, omega, certified)
    }

    /// Records a last iteration without a step.
    fn finish(
        s: &mut MaidState,
        upper: f64,
        zn: f64,
        omega: f64,
        certified: bool,
    ) -> IterInfo<f64> {
        s.iter += 1;
        let rec = OuterRecord {
            iter: s.iter,
            upper,
            hypergrad_norm: zn,
            omega,
            certified,
            eps: s.eps,
            delta: s.delta,
            step: 0.0,
            accepted: false,
            ll_iters_total: s.ll_total,
            cg_iters_total: s.cg_total,
            theta: s.theta.clone(),
        };
        let i = info(&rec);
        s.history.push(rec);
        i
    }
}

impl<'p, P: BilevelProblem + ?Sized> Iterative<f64> for Maid<'p, P> {
    type State = MaidState;

    fn name(&self) -> &'static str {
        "MAID"
    }

    fn start(&self, theta0: &Array1<f64>) -> Result<MaidState> {
        crate::problem::check_theta(self.oracle.problem(), theta0.view())?;
        Ok(MaidState {
            theta: theta0.clone(),
            x: self.oracle.problem().x_start(),
            eps: self.params.eps0,
            delta: self.params.delta0,
            alpha: self.params.alpha0,
            estimates: Estimates::default(),
            iter: 0,
            ll_total: 0,
            cg_total: 0,
            history: Vec::new(),
            stalled: None,
            stationary: None,
        })
    }

    fn advance(&self, s: &mut MaidState) -> Result<IterInfo<f64>> {
        let pr = &self.params;
        let p = self.oracle.problem();
        let adaptive = !pr.fixed_accuracy;
        let mut retries = 0usize;
        loop {
            // Algorithm 3.2: inexact gradient with the descent test.
            let hg = loop {
                let hg = self.oracle.hypergradient(
                    s.theta.view(),
                    s.x.view(),
                    s.eps,
                    s.delta,
                    &mut s.estimates,
                )?;
                s.ll_total += hg.ll_iters;
                s.cg_total += hg.cg_iters;
                s.x.assign(&hg.x);
                let zn = norm2(hg.z.view());
                if let Some(b) =
                    certified_stationarity(pr.stationarity_tol, zn, hg.omega, hg.certified)
                {
                    s.stationary = Some(b);
                    return Ok(Self::finish(s, hg.upper, zn, hg.omega, hg.certified));
                }
                if !pr.descent_test || !adaptive || hg.omega <= (1.0 - pr.eta) * zn {
                    break hg;
                }
                if s.eps * pr.nu < pr.eps_min {
                    let why = format!(
                        "descent test ω ≤ (1−η)‖z‖ fails at ε = {:.3e} (ω = {:.3e}, ‖z‖ = {:.3e}): θ is (numerically) stationary",
                        s.eps, hg.omega, zn
                    );
                    return Ok(self.stall(s, why, zn, hg.omega, hg.certified));
                }
                s.eps *= pr.nu;
                s.delta *= pr.nu;
            };
            let zn = norm2(hg.z.view());
            if zn == 0.0 {
                return Ok(self.stall(s, "zero hypergradient".into(), 0.0, hg.omega, hg.certified));
            }
            let c = hg.constants;
            let eps_cur = hg.eps;
            let u_minus = hg.upper
                - hg.grad_g_norm * eps_cur
                - if p.upper_convex() {
                    0.0
                } else {
                    0.5 * c.l_g * eps_cur * eps_cur
                };
            let trials = pr.max_backtracks + retries;
            let mut gg = Array1::zeros(p.dim_x());
            let mut alpha = s.alpha;
            for _ in 0..trials {
                let cand = &s.theta - &(&hg.z * alpha);
                let ll = self.oracle.solve_lower(cand.view(), hg.x.view(), s.eps)?;
                s.ll_total += ll.iterations;
                let g_new = p.upper_value(ll.x.view())?;
                p.upper_grad_into(gg.view_mut(), ll.x.view())?;
                let e = ll.accuracy;
                let u_plus =
                    g_new + self.oracle.x_norm(gg.view()) * e + 0.5 * ll.constants.l_g * e * e;
                if u_plus - u_minus + pr.armijo * alpha * zn * zn <= 0.0 {
                    s.theta = cand;
                    s.x = ll.x;
                    s.iter += 1;
                    let rec = OuterRecord {
                        iter: s.iter,
                        upper: g_new,
                        hypergrad_norm: zn,
                        omega: hg.omega,
                        certified: hg.certified,
                        eps: s.eps,
                        delta: s.delta,
                        step: alpha,
                        accepted: true,
                        ll_iters_total: s.ll_total,
                        cg_iters_total: s.cg_total,
                        theta: s.theta.clone(),
                    };
                    s.alpha = alpha * pr.rho_bar;
                    if adaptive {
                        s.eps *= pr.nu_bar;
                        s.delta *= pr.nu_bar;
                    }
                    let i = info(&rec);
                    s.history.push(rec);
                    return Ok(i);
                }
                alpha *= pr.rho;
            }
            // Line search failed: tighten the accuracies (lines 9–10) and retry.
            retries += 1;
            if adaptive {
                s.eps *= pr.nu;
                s.delta *= pr.nu;
            }
            if retries > pr.max_retries || s.eps < pr.eps_min {
                let why = format!(
                    "no step accepted after {retries} line searches (ε = {:.3e}); θ is (numerically) stationary at this accuracy",
                    s.eps
                );
                return Ok(self.stall(s, why, zn, hg.omega, hg.certified));
            }
        }
    }

    fn estimate<'s>(&self, s: &'s MaidState) -> &'s Array1<f64> {
        &s.theta
    }

    fn max_iters(&self) -> usize {
        self.params.max_iters
    }

    fn stop(&self, s: &MaidState, info: &IterInfo<f64>) -> Option<TerminationReason> {
        outer_stop(self, s, info)
    }

    fn tolerance(&self) -> f64 {
        self.params.tol
    }
}

impl<'p, P: BilevelProblem + ?Sized> OuterSolver for Maid<'p, P> {
    fn history<'s>(&self, s: &'s MaidState) -> &'s [OuterRecord] {
        &s.history
    }
    fn stalled<'s>(&self, s: &'s MaidState) -> Option<&'s str> {
        s.stalled.as_deref()
    }
    fn budget(&self) -> usize {
        self.params.budget
    }
    fn stationary(&self, s: &MaidState) -> Option<f64> {
        s.stationary
    }
}

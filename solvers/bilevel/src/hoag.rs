//! HOAG (Pedregosa 2016): inexact hypergradient descent with an a-priori accuracy sequence.
//!
//! Outer iteration `k`: solve the lower level and the linear system to the same tolerance
//! `ε_k` (from a prescribed sequence), step `θ ← θ − z/L` and adapt `L` by the heuristic of
//! the paper's code (as used as the baseline in the MAID paper): with `Δ` the step and
//! `C = 0.25`, the step is accepted and `L ← 0.95 L` if
//! `g_new ≤ g_old + Cε_k + ε_k(C + 1)‖Δ‖ − L‖Δ‖²`; rejected with `L ← 2L` and the tolerances
//! halved if `g_new ≥ 1.2 g_old`; accepted otherwise. `L₀ = ‖z₀‖/√dim θ` (or 1 if
//! `‖z₀‖ ≤ 10⁻³`); `θ` is clipped to `[−1000, 1000]`.
//!
//! Accuracy sequences (`ε₀ = 0.1`, floor `10⁻¹²`): geometric `ε₀·0.9ᵏ`, quadratic
//! `ε₀/(k+1)²`, cubic `ε₀/(k+1)³`, fixed `ε₀`.
//!
//! # References
//! F. Pedregosa, "Hyperparameter optimization with approximate gradient", ICML 2016.

use crate::oracle::{Estimates, Hypergradient, Oracle, OracleParams};
use crate::outer::{certified_stationarity, info, outer_stop, OuterRecord, OuterSolver};
use crate::problem::{check_accuracy, check_tolerance, BilevelProblem};
use hyperprox_core::error::{Error, Result};
use hyperprox_core::linalg::norm2;
use hyperprox_core::solve::{IterInfo, Iterative, TerminationReason};
use ndarray::Array1;

/// HOAG's a-priori accuracy sequence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AccuracySequence {
    /// `ε₀·qᵏ`.
    Geometric(f64),
    /// `ε₀/(k+1)²`.
    Quadratic,
    /// `ε₀/(k+1)³`.
    Cubic,
    /// `ε₀`.
    Fixed,
}

impl AccuracySequence {
    /// `ε_k`.
    pub fn at(&self, eps0: f64, k: usize) -> f64 {
        let k1 = (k + 1) as f64;
        match *self {
            AccuracySequence::Geometric(q) => eps0 * q.powi(k as i32),
            AccuracySequence::Quadratic => eps0 / (k1 * k1),
            AccuracySequence::Cubic => eps0 / (k1 * k1 * k1),
            AccuracySequence::Fixed => eps0,
        }
    }
    /// Name used in reports and the CLI.
    pub fn name(&self) -> &'static str {
        match self {
            AccuracySequence::Geometric(_) => "geometric",
            AccuracySequence::Quadratic => "quadratic",
            AccuracySequence::Cubic => "cubic",
            AccuracySequence::Fixed => "fixed",
        }
    }
}

/// HOAG's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HoagParams {
    /// `ε₀`.
    pub eps0: f64,
    /// The sequence.
    pub sequence: AccuracySequence,
    /// Floor on `ε_k`.
    pub eps_floor: f64,
    /// The constant `C` of the acceptance heuristic.
    pub c: f64,
    /// Outer-iteration limit.
    pub max_iters: usize,
    /// Work budget (lower-level + CG iterations).
    pub budget: usize,
    /// Stop when `‖z‖ ≤ tol` (uncertified: `z` is inexact).
    pub tol: f64,
    /// Stop when `‖z‖ + ω ≤ stationarity_tol` with a certified `ω` at the current `θ`, which
    /// proves `‖∇f(θ)‖ ≤ stationarity_tol` there (0 = off).
    pub stationarity_tol: f64,
    /// Inner-solver caps.
    pub oracle: OracleParams,
}

impl Default for HoagParams {
    fn default() -> Self {
        Self {
            eps0: 0.1,
            sequence: AccuracySequence::Geometric(0.9),
            eps_floor: 1e-12,
            c: 0.25,
            max_iters: 100,
            budget: 1_000_000,
            tol: 0.0,
            stationarity_tol: 0.0,
            oracle: OracleParams::default(),
        }
    }
}

impl HoagParams {
    /// The accuracy sequence.
    pub fn with_sequence(mut self, s: AccuracySequence) -> Self {
        self.sequence = s;
        self
    }
    /// Outer-iteration limit.
    pub fn with_max_iters(mut self, n: usize) -> Self {
        self.max_iters = n;
        self
    }
    /// Work budget.
    pub fn with_budget(mut self, n: usize) -> Self {
        self.budget = n;
        self
    }
    /// Stop on certified stationarity `‖z‖ + ω ≤ tol` (0 = off).
    pub fn with_stationarity_tol(mut self, tol: f64) -> Self {
        self.stationarity_tol = tol;
        self
    }
}

/// HOAG's state.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct HoagState {
    /// Current hyperparameters.
    #[serde(with = "hyperprox_core::figure::serde_array")]
    pub theta: Array1<f64>,
    /// Current lower-level point.
    #[serde(with = "hyperprox_core::figure::serde_array")]
    pub x: Array1<f64>,
    /// Multiplier of the sequence (halved on rejections).
    pub scale: f64,
    /// Inverse step `L` (set at the first iteration).
    pub l: Option<f64>,
    /// The hypergradient at the current `θ`.
    pub current: Option<Hypergradient>,
    /// Estimates of unknown constants (for the reported `ω`).
    pub estimates: Estimates,
    /// Outer iterations done.
    pub iter: usize,
    /// Lower-level iterations so far.
    pub ll_total: usize,
    /// CG iterations so far.
    pub cg_total: usize,
    /// Per-iteration records.
    pub history: Vec<OuterRecord>,
    /// `Some(‖z‖ + ω)` once stationarity is certified at `theta`.
    pub stationary: Option<f64>,
}

/// The HOAG solver (see the module docs).
pub struct Hoag<'p, P: BilevelProblem + ?Sized> {
    oracle: Oracle<'p, P>,
    params: HoagParams,
}

impl<'p, P: BilevelProblem + ?Sized> Hoag<'p, P> {
    /// HOAG on `problem`.
    pub fn new(problem: &'p P, params: HoagParams) -> Result<Self> {
        check_accuracy("eps0", params.eps0)?;
        check_accuracy("eps_floor", params.eps_floor)?;
        check_tolerance("tol", params.tol)?;
        check_tolerance("stationarity_tol", params.stationarity_tol)?;
        if let AccuracySequence::Geometric(q) = params.sequence {
            if !(q > 0.0 && q < 1.0) {
                return Err(Error::param(
                    "geometric ratio",
                    q,
                    "must lie in (0, 1), e.g. 0.9",
                ));
            }
        }
        Ok(Self {
            oracle: Oracle::new(problem).with_params(params.oracle),
            params,
        })
    }

    fn eps(&self, s: &HoagState, k: usize) -> f64 {
        (s.scale * self.params.sequence.at(self.params.eps0, k)).max(self.params.eps_floor)
    }
}

impl<'p, P: BilevelProblem + ?Sized> Iterative<f64> for Hoag<'p, P> {
    type State = HoagState;

    fn name(&self) -> &'static str {
        "HOAG"
    }

    fn start(&self, theta0: &Array1<f64>) -> Result<HoagState> {
        crate::problem::check_theta(self.oracle.problem(), theta0.view())?;
        Ok(HoagState {
            theta: theta0.clone(),
            x: self.oracle.problem().x_start(),
            scale: 1.0,
            l: None,
            current: None,
            estimates: Estimates::default(),
            iter: 0,
            ll_total: 0,
            cg_total: 0,
            history: Vec::new(),
            stationary: None,
        })
    }

    fn advance(&self, s: &mut HoagState) -> Result<IterInfo<f64>> {
        let p = self.oracle.problem();
        let k = s.iter;
        let eps_k = self.eps(s, k);
        let hg = match s.current.take() {
            Some(h) => h,
            None => {
                let h = self.oracle.hypergradient(
                    s.theta.view(),
                    s.x.view(),
                    eps_k,
                    eps_k,
                    &mut s.estimates,
                )?;
                s.ll_total += h.ll_iters;
                s.cg_total += h.cg_iters;
                h
            }
        };
        let zn = norm2(hg.z.view());
        if let Some(b) =
            certified_stationarity(self.params.stationarity_tol, zn, hg.omega, hg.certified)
        {
            // Certified at the current θ: record it without a step and stop there.
            s.stationary = Some(b);
            s.iter += 1;
            let rec = OuterRecord {
                iter: s.iter,
                upper: hg.upper,
                hypergrad_norm: zn,
                omega: hg.omega,
                certified: true,
                eps: eps_k,
                delta: eps_k,
                step: 0.0,
                accepted: false,
                ll_iters_total: s.ll_total,
                cg_iters_total: s.cg_total,
                theta: s.theta.clone(),
            };
            s.current = Some(hg);
            let i = info(&rec);
            s.history.push(rec);
            return Ok(i);
        }
        let l = *s.l.get_or_insert_with(|| {
            if zn > 1e-3 {
                zn / (p.dim_theta() as f64).sqrt()
            } else {
                1.0
            }
        });
        let cand = (&s.theta - &(&hg.z / l)).mapv(|v| v.clamp(-1000.0, 1000.0));
        let step = norm2((&cand - &s.theta).view());
        let eps_next = self.eps(s, k + 1);
        let ll = self
            .oracle
            .solve_lower(cand.view(), hg.x.view(), eps_next)?;
        s.ll_total += ll.iterations;
        let g_new = p.upper_value(ll.x.view())?;
        let c = self.params.c;
        let g_old = hg.upper;
        let accepted;
        if g_new <= g_old + c * eps_k + eps_k * (c + 1.0) * step - l * step * step {
            accepted = true;
            s.l = Some(0.95 * l);
        } else if g_new >= 1.2 * g_old {
            accepted = false;
            s.l = Some(2.0 * l);
            s.scale *= 0.5;
        } else {
            accepted = true;
        }
        s.iter += 1;
        let (upper, theta) = if accepted {
            s.theta = cand;
            // The hypergradient at the new θ (the lower level is already solved to ε_next).
            let h = self.oracle.hypergradient(
                s.theta.view(),
                ll.x.view(),
                self.eps(s, k + 1),
                self.eps(s, k + 1),
                &mut s.estimates,
            )?;
            s.ll_total += h.ll_iters;
            s.cg_total += h.cg_iters;
            s.x.assign(&h.x);
            s.current = Some(h);
            (g_new, s.theta.clone())
        } else {
            s.current = Some(hg.clone());
            (g_old, s.theta.clone())
        };
        let rec = OuterRecord {
            iter: s.iter,
            upper,
            hypergrad_norm: zn,
            omega: hg.omega,
            certified: hg.certified,
            eps: eps_k,
            delta: eps_k,
            step: if accepted { 1.0 / l } else { 0.0 },
            accepted,
            ll_iters_total: s.ll_total,
            cg_iters_total: s.cg_total,
            theta,
        };
        let i = info(&rec);
        s.history.push(rec);
        Ok(i)
    }

    fn estimate<'s>(&self, s: &'s HoagState) -> &'s Array1<f64> {
        &s.theta
    }

    fn max_iters(&self) -> usize {
        self.params.max_iters
    }

    fn stop(&self, s: &HoagState, info: &IterInfo<f64>) -> Option<TerminationReason> {
        outer_stop(self, s, info)
    }

    fn tolerance(&self) -> f64 {
        self.params.tol
    }
}

impl<'p, P: BilevelProblem + ?Sized> OuterSolver for Hoag<'p, P> {
    fn history<'s>(&self, s: &'s HoagState) -> &'s [OuterRecord] {
        &s.history
    }
    fn stalled<'s>(&self, _s: &'s HoagState) -> Option<&'s str> {
        None
    }
    fn budget(&self) -> usize {
        self.params.budget
    }
    fn stationary(&self, s: &HoagState) -> Option<f64> {
        s.stationary
    }
}

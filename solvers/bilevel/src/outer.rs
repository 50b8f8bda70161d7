//! What the outer (hyperparameter) solvers share: the per-iteration record, the run result and
//! the run loop with its iteration and work budgets.

use hyperprox_core::error::Result;
use hyperprox_core::solve::{CertificateKind, IterInfo, Iterative};
use ndarray::{Array1, ArrayView1};

/// One outer iteration of MAID or HOAG.
#[derive(Clone, Debug, PartialEq)]
pub struct OuterRecord {
    /// Outer iteration (1 after the first).
    pub iter: usize,
    /// Upper-level value `g(x̃)` at the current `θ` (after the step, if accepted).
    pub upper: f64,
    /// `‖z‖` of the hypergradient used in this iteration.
    pub hypergrad_norm: f64,
    /// Its error bound `ω`.
    pub omega: f64,
    /// Whether `ω` is certified (all constants known).
    pub certified: bool,
    /// Lower-level accuracy `ε` requested in this iteration.
    pub eps: f64,
    /// CG accuracy `δ` requested in this iteration.
    pub delta: f64,
    /// Step size taken (0 if rejected).
    pub step: f64,
    /// Whether a step was accepted.
    pub accepted: bool,
    /// Cumulative lower-level iterations.
    pub ll_iters_total: usize,
    /// Cumulative CG iterations.
    pub cg_iters_total: usize,
    /// `θ` after the iteration.
    pub theta: Array1<f64>,
}

impl OuterRecord {
    /// Lower-level plus CG iterations so far (the work measure of the paper's figures).
    pub fn work(&self) -> usize {
        self.ll_iters_total + self.cg_iters_total
    }
}

/// Why an outer run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum OuterStop {
    /// `‖z‖ ≤ tol`.
    Converged,
    /// The outer-iteration limit.
    MaxIters,
    /// The work budget (lower-level + CG iterations).
    Budget,
    /// The observer asked to stop.
    Observer,
    /// No acceptable step at the finest accuracy allowed (the reason is given).
    Stalled(String),
}

/// Result of an outer run.
#[derive(Clone, Debug)]
pub struct OuterResult<S> {
    /// Final hyperparameters.
    pub theta: Array1<f64>,
    /// Per-iteration records.
    pub history: Vec<OuterRecord>,
    /// Why the run ended.
    pub stop: OuterStop,
    /// Final solver state (for warm restarts).
    pub state: S,
}

/// An outer solver (MAID, HOAG): an [`Iterative`] over `θ` that keeps a history and counts work.
pub trait OuterSolver: Iterative<f64> {
    /// The records so far.
    fn history<'s>(&self, s: &'s Self::State) -> &'s [OuterRecord];
    /// Why the solver cannot continue, if it cannot.
    fn stalled<'s>(&self, s: &'s Self::State) -> Option<&'s str>;
    /// Outer-iteration limit.
    fn max_iters(&self) -> usize;
    /// Work budget (lower-level + CG iterations).
    fn budget(&self) -> usize;

    /// Runs from `θ0` until `‖z‖ ≤ tol`, the iteration limit, the work budget, a stall, or the
    /// observer returning `false`.
    fn run(
        &self,
        theta0: ArrayView1<'_, f64>,
        mut observer: impl FnMut(&OuterRecord) -> bool,
    ) -> Result<OuterResult<Self::State>> {
        let mut s = self.start(theta0)?;
        let stop = loop {
            let info = self.advance(&mut s)?;
            let rec = self.history(&s).last().cloned();
            if let Some(r) = &rec {
                if !observer(r) {
                    break OuterStop::Observer;
                }
            }
            if let Some(why) = self.stalled(&s) {
                break OuterStop::Stalled(why.to_string());
            }
            if info.certificate <= self.tolerance() {
                break OuterStop::Converged;
            }
            if info.iter >= self.max_iters() {
                break OuterStop::MaxIters;
            }
            if rec.map(|r| r.work()).unwrap_or(0) >= self.budget() {
                break OuterStop::Budget;
            }
        };
        Ok(OuterResult {
            theta: self.estimate(&s).clone(),
            history: self.history(&s).to_vec(),
            stop,
            state: s,
        })
    }
}

pub(crate) fn info(rec: &OuterRecord) -> IterInfo<f64> {
    IterInfo {
        iter: rec.iter,
        objective: rec.upper,
        certificate: rec.hypergrad_norm,
        kind: CertificateKind::HypergradientNorm,
    }
}

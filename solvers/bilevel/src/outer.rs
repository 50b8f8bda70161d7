//! What the outer (hyperparameter) solvers share: the per-iteration record, the run result and
//! the run loop with its iteration and work budgets.

use hyperprox_core::error::Result;
use hyperprox_core::solve::{drive_with, CertificateKind, IterInfo, Iterative, TerminationReason};
use ndarray::{Array1, ArrayView1};

/// One outer iteration of MAID or HOAG (in reports and checkpoints; a number that is not finite
/// is written as `null` and read back as NaN).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OuterRecord {
    /// Outer iteration (1 after the first).
    pub iter: usize,
    /// Upper-level value `g(x̃)` at the current `θ` (after the step, if accepted).
    #[serde(rename = "upper_loss", with = "hyperprox_core::figure::serde_num")]
    pub upper: f64,
    /// `‖z‖` of the hypergradient used in this iteration.
    #[serde(
        rename = "hypergradient_norm",
        with = "hyperprox_core::figure::serde_num"
    )]
    pub hypergrad_norm: f64,
    /// Its error bound `ω`.
    #[serde(with = "hyperprox_core::figure::serde_num")]
    pub omega: f64,
    /// Whether `ω` is certified (all constants known).
    pub certified: bool,
    /// Lower-level accuracy `ε` requested in this iteration.
    #[serde(with = "hyperprox_core::figure::serde_num")]
    pub eps: f64,
    /// CG accuracy `δ` requested in this iteration.
    #[serde(with = "hyperprox_core::figure::serde_num")]
    pub delta: f64,
    /// Step size taken (0 if rejected).
    #[serde(with = "hyperprox_core::figure::serde_num")]
    pub step: f64,
    /// Whether a step was accepted.
    pub accepted: bool,
    /// Cumulative lower-level iterations.
    pub ll_iters_total: usize,
    /// Cumulative CG iterations.
    pub cg_iters_total: usize,
    /// `θ` after the iteration.
    #[serde(with = "hyperprox_core::figure::serde_array")]
    pub theta: Array1<f64>,
}

impl OuterRecord {
    /// Lower-level plus CG iterations so far (the work measure of the paper's figures).
    pub fn work(&self) -> usize {
        self.ll_iters_total + self.cg_iters_total
    }
}

/// Why an outer run ended (serialized as its [`Display`](std::fmt::Display) text, e.g.
/// `max_iters` or `stalled: …`).
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
    /// Certified stationarity: `‖∇f(θ)‖ ≤ ‖z‖ + ω ≤ tol` with a certified `ω` (the value is
    /// `‖z‖ + ω`, an upper bound on the true `‖∇f(θ)‖` at the returned `θ`).
    Stationary(f64),
}

impl std::fmt::Display for OuterStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OuterStop::Converged => f.write_str("converged"),
            OuterStop::MaxIters => f.write_str("max_iters"),
            OuterStop::Budget => f.write_str("budget"),
            OuterStop::Observer => f.write_str("observer"),
            OuterStop::Stalled(w) => write!(f, "stalled: {w}"),
            OuterStop::Stationary(b) => {
                write!(f, "certified stationary: ‖∇f(θ)‖ ≤ ‖z‖ + ω = {b:.3e}")
            }
        }
    }
}

impl serde::Serialize for OuterStop {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
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
/// Its [`Iterative::stop`] is [`outer_stop`], so the work budget and the stall stop hold in
/// [`OuterSolver::run`] and under argmin's `Executor` alike.
pub trait OuterSolver: Iterative<f64> {
    /// The records so far.
    fn history<'s>(&self, s: &'s Self::State) -> &'s [OuterRecord];
    /// Why the solver cannot continue, if it cannot.
    fn stalled<'s>(&self, s: &'s Self::State) -> Option<&'s str>;
    /// Work budget (lower-level + CG iterations).
    fn budget(&self) -> usize;
    /// `Some(‖z‖ + ω)` once the stationarity test `‖z‖ + ω ≤ tol` has passed with a certified
    /// `ω` (see [`certified_stationarity`]).
    fn stationary(&self, _s: &Self::State) -> Option<f64> {
        None
    }

    /// Runs from `θ0` (the core run loop, [`drive_with`]) until `‖z‖ ≤ tol`, the iteration
    /// limit, the work budget, a stall, or the observer returning `false`.
    fn run(
        &self,
        theta0: ArrayView1<'_, f64>,
        mut observer: impl FnMut(&OuterRecord) -> bool,
    ) -> Result<OuterResult<Self::State>> {
        let s = self.start(&theta0.to_owned())?;
        run_from(self, s, |_, r| observer(r))
    }
}

/// Continues an outer run from a state (a fresh one from [`Iterative::start`], or one saved by a
/// checkpoint: the states serialize), with an observer that also sees the state after each
/// iteration (to write a checkpoint). A state that already met a stop (the iteration limit,
/// the work budget, a stall, stationarity) ends at once with that reason; otherwise the
/// iterations continue exactly as in an uninterrupted run.
pub fn run_from<S, St, F>(solver: &S, mut s: St, mut observer: F) -> Result<OuterResult<St>>
where
    S: OuterSolver + Iterative<f64, State = St> + ?Sized,
    St: Clone,
    F: FnMut(&St, &OuterRecord) -> bool,
{
    let done = solver.history(&s).last().and_then(|r| {
        if r.iter >= solver.max_iters() {
            Some(TerminationReason::MaxIters)
        } else {
            solver.stop(&s, &info(r))
        }
    });
    let reason = match done {
        Some(reason) => reason,
        None => {
            drive_with(solver, &mut s, |s, _| {
                solver.history(s).last().is_none_or(|r| observer(s, r))
            })?
            .0
        }
    };
    let stop = match reason {
        TerminationReason::Converged => match solver.stationary(&s) {
            Some(b) => OuterStop::Stationary(b),
            None => OuterStop::Converged,
        },
        TerminationReason::MaxIters => OuterStop::MaxIters,
        TerminationReason::Budget => OuterStop::Budget,
        TerminationReason::Observer => OuterStop::Observer,
        TerminationReason::Stalled => {
            OuterStop::Stalled(solver.stalled(&s).unwrap_or("stalled").to_string())
        }
    };
    Ok(OuterResult {
        theta: solver.estimate(&s).clone(),
        history: solver.history(&s).to_vec(),
        stop,
        state: s,
    })
}

/// The outer solvers' stopping rule: a stall, certified stationarity, `‖z‖ ≤ tol`, or the work
/// budget spent.
pub fn outer_stop<S: OuterSolver + ?Sized>(
    solver: &S,
    s: &S::State,
    info: &IterInfo<f64>,
) -> Option<TerminationReason> {
    if solver.stalled(s).is_some() {
        return Some(TerminationReason::Stalled);
    }
    if solver.stationary(s).is_some() {
        return Some(TerminationReason::Converged);
    }
    if info.certificate <= solver.tolerance() {
        return Some(TerminationReason::Converged);
    }
    let work = solver.history(s).last().map_or(0, OuterRecord::work);
    (work >= solver.budget()).then_some(TerminationReason::Budget)
}

/// The certified stationarity test: with `ω ≥ ‖z − ∇f(θ)‖` certified (all constants known),
/// `‖∇f(θ)‖ ≤ ‖z‖ + ω`; returns `Some(‖z‖ + ω)` when that bound is at most `tol`. Off
/// (`None`) for `tol ≤ 0` and for an estimated `ω`, which bounds nothing.
pub fn certified_stationarity(tol: f64, z_norm: f64, omega: f64, certified: bool) -> Option<f64> {
    let bound = z_norm + omega;
    (tol > 0.0 && certified && bound <= tol).then_some(bound)
}

pub(crate) fn info(rec: &OuterRecord) -> IterInfo<f64> {
    IterInfo {
        iter: rec.iter,
        objective: rec.upper,
        certificate: rec.hypergrad_norm,
        kind: CertificateKind::HypergradientNorm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_serialize_with_the_report_names() {
        let r = OuterRecord {
            iter: 3,
            upper: f64::NAN,
            hypergrad_norm: 0.5,
            omega: 0.1,
            certified: true,
            eps: 1e-3,
            delta: 1e-3,
            step: 0.2,
            accepted: true,
            ll_iters_total: 10,
            cg_iters_total: 4,
            theta: ndarray::array![-1.0, 2.0],
        };
        let v = serde_json::to_value(&r).unwrap();
        assert!(v["upper_loss"].is_null(), "NaN is written as null");
        assert_eq!(v["hypergradient_norm"], 0.5);
        assert_eq!(v["theta"], serde_json::json!([-1.0, 2.0]));
        let stop = OuterStop::Stalled("no descent".into());
        assert_eq!(serde_json::to_value(&stop).unwrap(), "stalled: no descent");
        assert_eq!(
            serde_json::to_value(OuterStop::MaxIters).unwrap(),
            "max_iters"
        );
        assert_eq!(
            OuterStop::Stationary(1.5e-7).to_string(),
            "certified stationary: ‖∇f(θ)‖ ≤ ‖z‖ + ω = 1.500e-7"
        );
    }

    /// A solver that halves `θ` each iteration and states no stationarity test of its own.
    struct Halving;

    impl Iterative<f64> for Halving {
        type State = (Array1<f64>, Vec<OuterRecord>);
        fn name(&self) -> &'static str {
            "halving"
        }
        fn start(&self, x0: &Array1<f64>) -> Result<Self::State> {
            Ok((x0.clone(), Vec::new()))
        }
        fn advance(&self, s: &mut Self::State) -> Result<IterInfo<f64>> {
            s.0.mapv_inplace(|v| 0.5 * v);
            let rec = OuterRecord {
                iter: s.1.len() + 1,
                upper: s.0.dot(&s.0),
                hypergrad_norm: 1.0,
                omega: 0.0,
                certified: true,
                eps: 0.1,
                delta: 0.1,
                step: 0.5,
                accepted: true,
                ll_iters_total: s.1.len() + 1,
                cg_iters_total: 0,
                theta: s.0.clone(),
            };
            let i = info(&rec);
            s.1.push(rec);
            Ok(i)
        }
        fn estimate<'s>(&self, s: &'s Self::State) -> &'s Array1<f64> {
            &s.0
        }
        fn tolerance(&self) -> f64 {
            0.0
        }
        fn max_iters(&self) -> usize {
            4
        }
        fn stop(&self, s: &Self::State, info: &IterInfo<f64>) -> Option<TerminationReason> {
            outer_stop(self, s, info)
        }
    }

    impl OuterSolver for Halving {
        fn history<'s>(&self, s: &'s Self::State) -> &'s [OuterRecord] {
            &s.1
        }
        fn stalled<'s>(&self, _s: &'s Self::State) -> Option<&'s str> {
            None
        }
        fn budget(&self) -> usize {
            100
        }
    }

    #[test]
    fn a_solver_without_a_stationarity_test_runs_to_its_caps() {
        // The trait's default: never stationary, so the run ends by the iteration limit.
        let r = Halving.run(ndarray::array![8.0].view(), |_| true).unwrap();
        assert_eq!(r.stop, OuterStop::MaxIters);
        assert_eq!(r.history.len(), 4);
        assert_eq!(r.theta, ndarray::array![0.5]);
    }

    #[test]
    fn stationarity_is_certified_only_by_a_certified_bound_below_tol() {
        assert_eq!(certified_stationarity(1.0, 0.25, 0.5, true), Some(0.75));
        assert_eq!(certified_stationarity(1.0, 0.5, 0.5, true), Some(1.0));
        // ‖z‖ alone below tol is not enough: ω counts.
        assert_eq!(certified_stationarity(1.0, 0.25, 0.875, true), None);
        assert_eq!(certified_stationarity(1.0, 0.25, 0.5, false), None);
        assert_eq!(certified_stationarity(0.0, 0.0, 0.0, true), None);
    }
}

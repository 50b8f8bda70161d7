//! Classical proximal algorithms as state machines with certified stopping.
//!
//! Every solver has `XxxParams` (with `Default` and builder methods), an `XxxState`, `init`,
//! `step` and `run(.., observer) -> Solution`. Each iteration reports an [`IterInfo`] with a
//! **stopping certificate**: a duality gap where the problem has a computable dual (Lasso,
//! elastic net, group lasso, ROF), a distance bound under strong convexity, and otherwise the
//! fixed-point residual of the iteration. A run stops when the certificate is at most `tol`,
//! after `max_iters` iterations (`Ok` with [`TerminationReason::MaxIters`]), or when the
//! observer asks to. A non-finite iterate or objective is [`Error::Diverged`] naming the
//! iteration.

mod admm;
mod argmin_adapter;
mod batch;
mod cd;
mod cd_group;
pub mod cd_ws;
mod design;
mod dr;
mod fista;
mod lasso;
mod lbfgs;
mod logreg;
pub mod logreg_ws;
mod path;
mod pdhg;

pub use admm::{Admm, AdmmParams, AdmmState};
pub use argmin_adapter::ArgminSolver;
pub use batch::{lasso_gaps, BatchFista, BatchFistaParams, BatchFistaState};
pub use cd::{
    run_epochs, CoordinateDescent, CoordinateDescentParams, CoordinateDescentState, EpochMethod,
    Epochs,
};
pub use cd_ws::{
    anderson_extrapolate, AndersonRecord, DualSource, OuterRecord, WorkingSetTrace, EXTRAPOLATION_K,
};
pub use design::{Design, DesignRef};
pub use dr::{DouglasRachford, DouglasRachfordState};
pub use fista::{Fista, FistaParams, FistaState, Restart, StepRule};
pub use lasso::{gap_from_residual, LassoPenalty, LassoProblem};
pub use lbfgs::{Lbfgs, LbfgsParams, LbfgsState};
pub use logreg::{LogisticCd, LogisticCdState, LogisticL1Problem};
pub use path::{lambda_grid, lasso_path, PathPoint};
pub use pdhg::{Pdhg, PdhgParams, PdhgState};

use crate::error::{Error, Result};
use crate::linalg::Real;
use ndarray::Array1;

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminationReason {
    /// The certificate reached the tolerance.
    Converged,
    /// `max_iters` iterations were done without reaching the tolerance.
    MaxIters,
    /// The observer asked to stop.
    Observer,
    /// The method stopped making progress before reaching the tolerance (e.g. a line search
    /// that can no longer decrease the cost in floating point); the certificate says how far
    /// it got.
    Stalled,
    /// A work budget (counted by the method, e.g. inner iterations) was spent.
    Budget,
}

/// What the stopping quantity certifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateKind {
    /// Duality gap `P(x) − D(θ) ≥ P(x) − P*` (certifies the objective error).
    DualityGap,
    /// Bound on `‖x − x*‖` (from a gap or gradient norm under strong convexity).
    DistanceBound,
    /// Fixed-point residual of the iteration (zero exactly at solutions; not a bound).
    FixedPointResidual,
    /// Norm of an (inexact) hypergradient of a bilevel problem (stationarity measure).
    HypergradientNorm,
}

impl CertificateKind {
    /// Name used in reports.
    pub fn name(&self) -> &'static str {
        match self {
            CertificateKind::DualityGap => "duality_gap",
            CertificateKind::DistanceBound => "distance_bound",
            CertificateKind::FixedPointResidual => "fixed_point_residual",
            CertificateKind::HypergradientNorm => "hypergradient_norm",
        }
    }
}

/// What a solver reports after each iteration.
#[derive(Clone, Copy, Debug)]
pub struct IterInfo<T> {
    /// Iterations done so far (1 after the first step).
    pub iter: usize,
    /// Objective value at the current iterate.
    pub objective: T,
    /// Stopping certificate at the current iterate.
    pub certificate: T,
    /// What the certificate is.
    pub kind: CertificateKind,
}

/// Receives every iteration's [`IterInfo`]; returning `false` stops the run.
pub trait Observer<T> {
    /// Called after each iteration.
    fn observe(&mut self, info: &IterInfo<T>) -> bool;
}

impl<T, F: FnMut(&IterInfo<T>) -> bool> Observer<T> for F {
    fn observe(&mut self, info: &IterInfo<T>) -> bool {
        self(info)
    }
}

/// An observer that never stops the run.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoObserver;

impl<T> Observer<T> for NoObserver {
    fn observe(&mut self, _: &IterInfo<T>) -> bool {
        true
    }
}

/// Result of a run (`V`: the backend's vector type, [`Array1`] on the CPU).
#[derive(Clone, Debug)]
pub struct Solution<T, S, V = Array1<T>> {
    /// The final iterate.
    pub x: V,
    /// The solver state at the end (for warm starts and inspection).
    pub state: S,
    /// Why the run ended.
    pub reason: TerminationReason,
    /// Iterations done.
    pub iterations: usize,
    /// Objective at `x`.
    pub objective: T,
    /// Final certificate.
    pub certificate: T,
    /// What the certificate is.
    pub kind: CertificateKind,
}

/// A user-supplied stopping certificate evaluated at an iterate (e.g. a duality gap).
pub(crate) type CertFn<'a, T> =
    Box<dyn Fn(ndarray::ArrayView1<'_, T>) -> Result<T> + Send + Sync + 'a>;

/// `Err(Diverged)` if `v` is not finite.
pub(crate) fn check_divergence<T: Real>(
    method: &str,
    iteration: usize,
    what: &str,
    v: T,
) -> Result<()> {
    if !v.is_finite() {
        return Err(Error::Diverged {
            method: method.into(),
            iteration,
            detail: format!("{what} = {v}"),
        });
    }
    Ok(())
}

/// The solver protocol: a method as a resumable iteration over an explicit state. Every solver
/// of this module implements it, the outer (bilevel) solvers too; [`drive`] is the one run
/// loop, and [`ArgminSolver`] runs any `Iterative` under argmin's `Executor` with the same
/// stopping rules (tolerance, budgets, stalls). `V` is the vector type of the iterates
/// ([`Array1`] on the CPU; FISTA and PDHG implement it for every [`Vector`](crate::Vector)
/// type of a backend, see [`crate::backend`]).
pub trait Iterative<T: Real, V = Array1<T>> {
    /// The solver's state (everything a resumed run needs).
    type State: Clone;
    /// Name for reports and argmin.
    fn name(&self) -> &'static str;
    /// State at `x0`.
    fn start(&self, x0: &V) -> Result<Self::State>;
    /// One iteration.
    fn advance(&self, s: &mut Self::State) -> Result<IterInfo<T>>;
    /// The current solution estimate.
    fn estimate<'s>(&self, s: &'s Self::State) -> &'s V;
    /// The stopping tolerance of the certificate.
    fn tolerance(&self) -> T;
    /// The iteration cap.
    fn max_iters(&self) -> usize;
    /// Whether to stop after an iteration that reported `info`, and why. The default stops
    /// when the certificate is at most [`Iterative::tolerance`]; methods with relative
    /// tolerances, work budgets or stall detection override it.
    fn stop(&self, _s: &Self::State, info: &IterInfo<T>) -> Option<TerminationReason> {
        (info.certificate <= self.tolerance()).then_some(TerminationReason::Converged)
    }
}

/// The shared run loop: advances `s` until [`Iterative::stop`] says so, the iteration cap, or
/// the observer returns `false` (checked after the stopping rule, so a converged last
/// iteration is reported as converged). Returns why it ended and the iterations done.
pub fn drive<T: Real, V, S: Iterative<T, V> + ?Sized>(
    solver: &S,
    s: &mut S::State,
    mut observer: impl Observer<T>,
) -> Result<(TerminationReason, usize)> {
    drive_with(solver, s, |_, info| observer.observe(info))
}

/// [`drive`] with an observer that also sees the solver state (e.g. an outer solver's
/// history).
pub fn drive_with<T: Real, V, S: Iterative<T, V> + ?Sized>(
    solver: &S,
    s: &mut S::State,
    mut observe: impl FnMut(&S::State, &IterInfo<T>) -> bool,
) -> Result<(TerminationReason, usize)> {
    let max_iters = solver.max_iters();
    let mut iters = 0;
    while iters < max_iters {
        let info = solver.advance(s)?;
        iters = info.iter;
        let go_on = observe(s, &info);
        if let Some(reason) = solver.stop(s, &info) {
            return Ok((reason, iters));
        }
        if !go_on {
            return Ok((TerminationReason::Observer, iters));
        }
    }
    Ok((TerminationReason::MaxIters, iters))
}

//! Coordinate descent with gap-safe screening for the Lasso, weighted Lasso, elastic net and
//! group lasso ([`LassoProblem`]).

use super::cd_ws::WorkingSetTrace;
use super::design::{ColumnSubset, Columns};
use super::{
    check_divergence, CertificateKind, IterInfo, Iterative, LassoPenalty, LassoProblem, Observer,
    Solution, TerminationReason,
};
use crate::error::{Error, Result};
use crate::func::soft_threshold;
use crate::linalg::{check_finite, check_len, Real};
use crate::ops::{LinearOperator, PowerIteration};
use ndarray::{Array1, ArrayView1};

/// Parameters of [`CoordinateDescent`].
#[derive(Clone, Copy, Debug)]
pub struct CoordinateDescentParams<T> {
    /// Stop when the duality gap is `≤ tol` (absolute).
    pub tol: T,
    /// Cap on epochs (passes over the remaining features).
    pub max_epochs: usize,
    /// The gap (and screening) is evaluated every `check_every` epochs.
    pub check_every: usize,
    /// Gap-safe screening on/off.
    pub screening: bool,
    /// Working sets: solve subproblems on the support and the features (groups) closest to
    /// their dual constraint, with Anderson and dual extrapolation ([`cd_ws`](super::cd_ws)
    /// for ℓ1 and the elastic net, block steps for the group lasso); for
    /// [`LogisticCd`](super::LogisticCd), prox-Newton on working sets
    /// ([`logreg_ws`](super::logreg_ws)).
    pub working_sets: bool,
    /// Anderson extrapolation of the working-set iterates (every 5 epochs, taken only when it
    /// lowers the objective).
    pub anderson: bool,
    /// Dual extrapolation of the residuals for the gap of the working-set solver.
    pub dual_extrapolation: bool,
    /// Smallest working set (100 as celer's `p0`; skglm starts at 10: on the bench Lasso,
    /// 500×2000 with a support of 115, 100 took 25 epochs and 10 took 35).
    pub ws_start: usize,
    /// Working-set inner solves on the Gram matrix `A_wsᵀA_ws` of the working set
    /// ([`cd_ws`](super::cd_ws), ℓ1 and elastic net): `Some(true)` always, `Some(false)`
    /// never, `None` (the default) when the working set is small against the samples
    /// (`|ws| ≤ n/8` and `|ws| ≤ 2048`) and the previous inner solve took more than 10 epochs:
    /// an epoch then costs `|ws|²` instead of `n·|ws|`, and the Gram matrix of the previous
    /// working set is reused (only products with new columns are computed).
    pub gram: Option<bool>,
}

impl<T: Real> Default for CoordinateDescentParams<T> {
    fn default() -> Self {
        Self {
            tol: T::c(1e-8),
            max_epochs: 100_000,
            check_every: 5,
            screening: true,
            working_sets: true,
            anderson: true,
            dual_extrapolation: true,
            ws_start: 100,
            gram: None,
        }
    }
}

impl<T: Real> CoordinateDescentParams<T> {
    /// Sets the gap tolerance.
    pub fn with_tol(mut self, tol: T) -> Self {
        self.tol = tol;
        self
    }
    /// Sets the epoch cap.
    pub fn with_max_epochs(mut self, n: usize) -> Self {
        self.max_epochs = n;
        self
    }
    /// Turns working sets on or off.
    pub fn with_working_sets(mut self, on: bool) -> Self {
        self.working_sets = on;
        self
    }
    /// Turns Anderson extrapolation (working sets) on or off.
    pub fn with_anderson(mut self, on: bool) -> Self {
        self.anderson = on;
        self
    }
    /// Turns dual extrapolation (working sets) on or off.
    pub fn with_dual_extrapolation(mut self, on: bool) -> Self {
        self.dual_extrapolation = on;
        self
    }
    /// Chooses the Gram inner solver of the working sets (`None`: automatic).
    pub fn with_gram(mut self, gram: Option<bool>) -> Self {
        self.gram = gram;
        self
    }
    /// Turns screening on or off.
    pub fn with_screening(mut self, on: bool) -> Self {
        self.screening = on;
        self
    }
}

/// State of [`CoordinateDescent`].
#[derive(Clone, Debug)]
pub struct CoordinateDescentState<T> {
    /// Current iterate.
    pub x: Array1<T>,
    /// Residual `b − Ax`.
    pub r: Array1<T>,
    /// Features (L1/EN) or groups still in the problem after screening.
    pub active: Vec<usize>,
    /// Epochs done.
    pub epoch: usize,
    /// Last duality gap.
    pub gap: T,
    /// Objective at the last gap evaluation.
    pub objective: T,
    /// What the working-set solver did (empty for plain epochs).
    pub trace: WorkingSetTrace<T>,
}

/// Cyclic coordinate descent (block coordinate descent for groups) on
/// `‖Ax − b‖²/(2n) + Ω(x)`, with exact coordinate minimization
/// `xⱼ ← S(xⱼ + aⱼᵀr/‖aⱼ‖², nλαwⱼ/‖aⱼ‖²)/(1 + nλ(1−α)/‖aⱼ‖²)` (S: soft threshold) and, for
/// groups, the block step `x_g ← BS(x_g + A_gᵀr/(nL_g), λw_g/L_g)`, `L_g = ‖A_g‖²/n`.
///
/// Every `check_every` epochs it computes the duality gap `G` of [`LassoProblem`] and, with
/// `screening`, removes the features (groups) proven zero at the optimum by the gap-safe
/// sphere test `|aⱼᵀθ| + ‖aⱼ‖√(2G/n) < λwⱼ` (`‖A_gᵀθ‖ + ‖A_g‖√(2G/n) < λw_g`), which is exact:
/// a screened variable is zero in every solution. Later epochs sweep only the remaining ones.
/// For the ℓ1 and elastic-net penalties it runs by default on **working sets** with Anderson
/// and dual extrapolation (celer, skglm; [`cd_ws`](super::cd_ws) documents the method):
/// subproblems on the support and the features closest to their dual constraint, solved to a
/// fraction of the current gap ([`CoordinateDescentParams::working_sets`] turns it off). It
/// stops when `G ≤ tol`.
///
/// # References
/// J. Friedman, T. Hastie, R. Tibshirani, "Regularization paths for generalized linear models
/// via coordinate descent", J. Stat. Softw. 33 (2010); E. Ndiaye et al., "Gap safe screening
/// rules for sparsity enforcing penalties", JMLR 18 (2017).
pub struct CoordinateDescent<'a, T: Real> {
    problem: &'a LassoProblem<T>,
    params: CoordinateDescentParams<T>,
    /// Columns of A, their squared norms and group Lipschitz constants. Dense: `Aᵀ` in
    /// standard layout, a view of `A` when `A` is column-major (Fortran order), no copy;
    /// otherwise a transposed copy. Sparse: compressed columns.
    cols: Columns<'a, T>,
    col_sq: Array1<T>,
    group_l: Vec<T>,
}

impl<'a, T: Real> CoordinateDescent<'a, T> {
    /// The solver for `problem`.
    pub fn new(problem: &'a LassoProblem<T>, params: CoordinateDescentParams<T>) -> Result<Self> {
        if params.check_every == 0 {
            return Err(Error::param("check_every", 0, "must be >= 1"));
        }
        if !(problem.lambda() > T::zero()) {
            return Err(Error::param(
                "lambda",
                problem.lambda(),
                "coordinate descent needs lambda > 0",
            ));
        }
        let cols = Columns::of(problem.design());
        let col_sq = problem.design().col_sq_norms().clone();
        let n = T::c(problem.n_samples() as f64);
        let group_l = match problem.penalty() {
            LassoPenalty::Group { groups, .. } => groups
                .iter()
                .map(|g| {
                    if let [j] = g {
                        // One column: ‖aⱼ‖² exactly.
                        return col_sq[*j] / n;
                    }
                    let op = ColumnSubset {
                        cols: &cols,
                        idx: g,
                    };
                    let s = op
                        .opnorm_estimate(PowerIteration {
                            max_iters: 500,
                            tol: 1e-12,
                            seed: 0,
                        })
                        .unwrap_or(T::zero());
                    // Power iteration approaches from below: pad the bound slightly.
                    s * s / n * T::c(1.0 + 1e-6)
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(Self {
            problem,
            params,
            cols,
            col_sq,
            group_l,
        })
    }

    /// The parameters.
    pub fn params(&self) -> &CoordinateDescentParams<T> {
        &self.params
    }
    /// The problem.
    pub fn problem(&self) -> &LassoProblem<T> {
        self.problem
    }
    /// Squared column norms `‖aⱼ‖²`.
    pub(super) fn col_sq(&self) -> &Array1<T> {
        &self.col_sq
    }
    /// `Aᵀr/n` over all features, from the columns.
    pub(crate) fn correlations_all(&self, r: &Array1<T>) -> Array1<T> {
        let n = T::c(self.problem.n_samples() as f64);
        let rs = r.as_slice().expect("contiguous");
        (0..self.problem.n_features())
            .map(|j| self.cols.dot(j, rs) / n)
            .collect()
    }

    /// The block Lipschitz constant `L_g = ‖A_g‖²/n` of group `g` (group lasso only).
    pub(super) fn group_lipschitz(&self, g: usize) -> T {
        self.group_l[g]
    }

    /// The columns of `A`.
    pub(super) fn columns(&self) -> &Columns<'a, T> {
        &self.cols
    }

    /// Initial state at `x0`.
    pub fn init(&self, x0: ArrayView1<'_, T>) -> Result<CoordinateDescentState<T>> {
        check_len(
            "CoordinateDescent::init",
            "x0",
            self.problem.n_features(),
            x0.len(),
        )?;
        check_finite("CoordinateDescent::init x0", x0)?;
        // From x = 0 (the usual start) the residual is b: no pass over A.
        let r = if x0.iter().all(|v| *v == T::zero()) {
            self.problem.b().to_owned()
        } else {
            self.problem.residual(x0)?
        };
        let active = match self.problem.penalty() {
            LassoPenalty::Group { groups, .. } => (0..groups.len()).collect(),
            _ => (0..self.problem.n_features()).collect(),
        };
        Ok(CoordinateDescentState {
            x: x0.to_owned(),
            r,
            active,
            epoch: 0,
            gap: T::infinity(),
            objective: T::infinity(),
            trace: WorkingSetTrace::default(),
        })
    }

    /// One epoch over the active features (or groups).
    pub fn epoch(&self, s: &mut CoordinateDescentState<T>) {
        let p = self.problem;
        let n = T::c(p.n_samples() as f64);
        let lam = p.lambda();
        let w = p.weights();
        match p.penalty() {
            LassoPenalty::Group { groups, .. } => {
                let idx: Vec<&[usize]> = groups.iter().collect();
                for &g in &s.active {
                    let l = self.group_l[g];
                    if l == T::zero() {
                        continue;
                    }
                    let gi = idx[g];
                    let old: Vec<T> = gi.iter().map(|&j| s.x[j]).collect();
                    let rs = s.r.as_slice().expect("contiguous");
                    let mut z: Vec<T> = gi
                        .iter()
                        .map(|&j| s.x[j] + self.cols.dot(j, rs) / (n * l))
                        .collect();
                    let nz = z.iter().map(|v| *v * *v).sum::<T>().sqrt();
                    let t = lam * w[g] / l;
                    let sc = if nz > t { T::one() - t / nz } else { T::zero() };
                    z.iter_mut().for_each(|v| *v *= sc);
                    for (k, &j) in gi.iter().enumerate() {
                        let d = z[k] - old[k];
                        if d != T::zero() {
                            s.x[j] = z[k];
                            self.cols.axpy_into(j, -d, &mut s.r);
                        }
                    }
                }
            }
            _ => {
                self.sweep(&mut s.x, &mut s.r, &s.active);
            }
        }
        s.epoch += 1;
    }

    /// One cyclic pass of exact coordinate minimization (ℓ1 / elastic net) over the features
    /// `idx`, updating `x` and the residual `r = b − Ax` in place:
    /// `xⱼ ← S(xⱼ + aⱼᵀr/‖aⱼ‖², nλαwⱼ/‖aⱼ‖²)/(1 + nλ(1−α)/‖aⱼ‖²)`. Returns the largest KKT
    /// violation of the coordinates just before their updates (zero-norm columns skipped).
    pub(super) fn sweep(&self, x: &mut Array1<T>, r: &mut Array1<T>, idx: &[usize]) -> T {
        let p = self.problem;
        let n = T::c(p.n_samples() as f64);
        let lam = p.lambda();
        let w = p.weights();
        let (alpha, l2) = match p.penalty() {
            LassoPenalty::ElasticNet { alpha } => (*alpha, lam * (T::one() - *alpha)),
            _ => (T::one(), T::zero()),
        };
        let rs = r.as_slice_mut().expect("contiguous");
        let mut worst = T::zero();
        for &j in idx {
            let c = self.col_sq[j];
            if c == T::zero() {
                continue;
            }
            let old = x[j];
            let dot = self.cols.dot(j, rs);
            worst = worst.max(self.violation(j, old, dot / n));
            let z = old + dot / c;
            let new = soft_threshold(z, n * lam * alpha * w[j] / c) / (T::one() + n * l2 / c);
            let d = new - old;
            if d != T::zero() {
                x[j] = new;
                self.cols.axpy(j, -d, rs);
            }
        }
        worst
    }

    /// Computes the gap at the current iterate and screens.
    pub fn check(&self, s: &mut CoordinateDescentState<T>) -> Result<()> {
        let p = self.problem;
        let atr = self.correlations_all(&s.r);
        let (gap, _, at_theta, _) = p.gap_from_correlations(s.x.view(), s.r.view(), atr)?;
        s.gap = gap;
        s.objective = p.objective_with_residual(s.x.view(), s.r.view())?;
        check_divergence("coordinate descent", s.epoch, "objective", s.objective)?;
        if !self.params.screening {
            return Ok(());
        }
        let n = T::c(p.n_samples() as f64);
        let radius = (T::c(2.0) * gap / n).sqrt();
        // A relative margin keeps features whose dual constraint is active up to rounding
        // (at the optimum |aⱼᵀθ| = λwⱼ exactly for every nonzero xⱼ).
        let lam = p.lambda() * (T::one() - T::c(1e3) * T::epsilon());
        let w = p.weights();
        let mut zeroed: Vec<usize> = Vec::new();
        match p.penalty() {
            LassoPenalty::ElasticNet { alpha } if *alpha < T::one() => {}
            LassoPenalty::Group { groups, .. } => {
                let idx: Vec<&[usize]> = groups.iter().collect();
                s.active.retain(|&g| {
                    let gi = idx[g];
                    let nr = gi
                        .iter()
                        .map(|&j| at_theta[j] * at_theta[j])
                        .sum::<T>()
                        .sqrt();
                    let ag = (self.group_l[g] * n).sqrt();
                    let keep = nr + ag * radius >= lam * w[g];
                    if !keep {
                        zeroed.extend_from_slice(gi);
                    }
                    keep
                });
            }
            pen => {
                let alpha = match pen {
                    LassoPenalty::ElasticNet { alpha } => *alpha,
                    _ => T::one(),
                };
                s.active.retain(|&j| {
                    let keep =
                        at_theta[j].abs() + self.col_sq[j].sqrt() * radius >= lam * alpha * w[j];
                    if !keep {
                        zeroed.push(j);
                    }
                    keep
                });
            }
        }
        // Screened variables are zero at the optimum: set them to zero now, and certify the
        // modified iterate again if that changed it.
        let mut changed = false;
        for j in zeroed {
            let d = s.x[j];
            if d != T::zero() {
                s.x[j] = T::zero();
                self.cols.axpy_into(j, d, &mut s.r);
                changed = true;
            }
        }
        if changed {
            let atr = self.correlations_all(&s.r);
            s.gap = p.gap_from_correlations(s.x.view(), s.r.view(), atr)?.0;
            s.objective = p.objective_with_residual(s.x.view(), s.r.view())?;
        }
        Ok(())
    }

    /// Runs from `x0` until the gap is `≤ tol`, `max_epochs`, or the observer stops (called at
    /// each gap evaluation; `iter` counts epochs, including those of working-set subproblems).
    pub fn run(
        &self,
        x0: ArrayView1<'_, T>,
        observer: impl Observer<T>,
    ) -> Result<Solution<T, CoordinateDescentState<T>>> {
        let group = matches!(self.problem.penalty(), LassoPenalty::Group { .. });
        match (self.params.working_sets, group) {
            (true, true) => self.run_group_ws(x0, observer),
            (true, false) => self.run_ws(x0, None, observer),
            (false, _) => self.run_plain(x0, observer),
        }
    }

    /// [`Self::run`] from a warm start `x0`, with the first working set (working-set solver
    /// only) made of `first_ws` and the support of `x0` (a path passes the features its
    /// strong rule keeps). The stopping test is unchanged: the certified gap over all features.
    pub fn run_from(
        &self,
        x0: ArrayView1<'_, T>,
        first_ws: Option<&[usize]>,
        observer: impl Observer<T>,
    ) -> Result<Solution<T, CoordinateDescentState<T>>> {
        let group = matches!(self.problem.penalty(), LassoPenalty::Group { .. });
        match (self.params.working_sets, group) {
            // The group solver picks its own first working set (support and violations).
            (true, true) => self.run_group_ws(x0, observer),
            (true, false) => self.run_ws(x0, first_ws, observer),
            (false, _) => self.run_plain(x0, observer),
        }
    }

    /// Plain cyclic epochs over the (screened) active set (the shared loop, [`run_epochs`]).
    fn run_plain(
        &self,
        x0: ArrayView1<'_, T>,
        observer: impl Observer<T>,
    ) -> Result<Solution<T, CoordinateDescentState<T>>> {
        run_epochs(self, x0, observer)
    }
}

/// A coordinate-descent method seen as epochs plus a duality-gap check: the Lasso-type
/// [`CoordinateDescent`] and the sparse logistic [`LogisticCd`](super::LogisticCd) share one
/// run loop ([`run_epochs`]) and one [`Iterative`] form ([`Epochs`]) through it.
pub trait EpochMethod<T: Real> {
    /// The state.
    type State: Clone;
    /// The settings (tolerance, epoch cap, check period).
    fn cd_params(&self) -> &CoordinateDescentParams<T>;
    /// State at `x0`.
    fn cd_init(&self, x0: ArrayView1<'_, T>) -> Result<Self::State>;
    /// One cyclic epoch over the active coordinates.
    fn cd_epoch(&self, s: &mut Self::State);
    /// Recomputes the gap and the objective (and screens).
    fn cd_check(&self, s: &mut Self::State) -> Result<()>;
    /// `(x, epochs done, gap, objective)`.
    fn cd_view<'s>(&self, s: &'s Self::State) -> (&'s Array1<T>, usize, T, T);
}

/// An [`EpochMethod`] as an [`Iterative`]: one iteration is `check_every` epochs (fewer at the
/// cap) followed by the gap check, whose value is the certificate.
pub struct Epochs<'m, M: ?Sized>(pub &'m M);

impl<T: Real, M: EpochMethod<T> + ?Sized> Iterative<T> for Epochs<'_, M> {
    type State = M::State;
    fn name(&self) -> &'static str {
        "coordinate descent"
    }
    fn start(&self, x0: &Array1<T>) -> Result<Self::State> {
        let mut s = self.0.cd_init(x0.view())?;
        self.0.cd_check(&mut s)?;
        Ok(s)
    }
    fn advance(&self, s: &mut Self::State) -> Result<IterInfo<T>> {
        let p = self.0.cd_params();
        let done = self.0.cd_view(s).1;
        let n = p.check_every.min(p.max_epochs.saturating_sub(done)).max(1);
        for _ in 0..n {
            self.0.cd_epoch(s);
        }
        self.0.cd_check(s)?;
        let (_, epoch, gap, objective) = self.0.cd_view(s);
        Ok(IterInfo {
            iter: epoch,
            objective,
            certificate: gap,
            kind: CertificateKind::DualityGap,
        })
    }
    fn estimate<'s>(&self, s: &'s Self::State) -> &'s Array1<T> {
        self.0.cd_view(s).0
    }
    fn tolerance(&self) -> T {
        self.0.cd_params().tol
    }
    fn max_iters(&self) -> usize {
        self.0.cd_params().max_epochs
    }
}

/// The coordinate-descent run loop: the gap at `x0`, then [`drive`](super::drive) over
/// [`Epochs`] until the gap is `≤ tol`, `max_epochs`, or the observer stops.
pub fn run_epochs<T: Real, M: EpochMethod<T> + ?Sized>(
    method: &M,
    x0: ArrayView1<'_, T>,
    observer: impl Observer<T>,
) -> Result<Solution<T, M::State>> {
    let it = Epochs(method);
    let mut s = it.start(&x0.to_owned())?;
    let reason = if method.cd_view(&s).2 <= method.cd_params().tol {
        TerminationReason::Converged
    } else {
        super::drive(&it, &mut s, observer)?.0
    };
    let (x, epoch, gap, objective) = method.cd_view(&s);
    Ok(Solution {
        x: x.clone(),
        iterations: epoch,
        objective,
        certificate: gap,
        kind: CertificateKind::DualityGap,
        reason,
        state: s,
    })
}

impl<T: Real> EpochMethod<T> for CoordinateDescent<'_, T> {
    type State = CoordinateDescentState<T>;
    fn cd_params(&self) -> &CoordinateDescentParams<T> {
        &self.params
    }
    fn cd_init(&self, x0: ArrayView1<'_, T>) -> Result<Self::State> {
        self.init(x0)
    }
    fn cd_epoch(&self, s: &mut Self::State) {
        self.epoch(s)
    }
    fn cd_check(&self, s: &mut Self::State) -> Result<()> {
        self.check(s)
    }
    fn cd_view<'s>(&self, s: &'s Self::State) -> (&'s Array1<T>, usize, T, T) {
        (&s.x, s.epoch, s.gap, s.objective)
    }
}

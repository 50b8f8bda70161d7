//! Coordinate descent with gap-safe screening for the Lasso, weighted Lasso, elastic net and
//! group lasso ([`LassoProblem`]).

use super::{
    check_divergence, CertificateKind, IterInfo, LassoPenalty, LassoProblem, Observer, Solution,
    TerminationReason,
};
use crate::error::{Error, Result};
use crate::func::soft_threshold;
use crate::linalg::{check_finite, check_len, Real};
use crate::ops::{DenseMatrix, LinearOperator, PowerIteration};
use ndarray::{Array1, Array2, ArrayView1, Axis};

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
}

impl<T: Real> Default for CoordinateDescentParams<T> {
    fn default() -> Self {
        Self {
            tol: T::c(1e-8),
            max_epochs: 100_000,
            check_every: 5,
            screening: true,
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
}

/// Cyclic coordinate descent (block coordinate descent for groups) on
/// `‖Ax − b‖²/(2n) + Ω(x)`, with exact coordinate minimization
/// `xⱼ ← S(xⱼ + aⱼᵀr/‖aⱼ‖², nλαwⱼ/‖aⱼ‖²)/(1 + nλ(1−α)/‖aⱼ‖²)` (S: soft threshold) and, for
/// groups, the block step `x_g ← BS(x_g + A_gᵀr/(nL_g), λw_g/L_g)`, `L_g = ‖A_g‖²/n`.
///
/// Every `check_every` epochs it computes the duality gap `G` of [`LassoProblem`] and, with
/// `screening`, removes the features (groups) proven zero at the optimum by the gap-safe
/// sphere test `|aⱼᵀθ| + ‖aⱼ‖√(2G/n) < λwⱼ` (`‖A_gᵀθ‖ + ‖A_g‖√(2G/n) < λw_g`), which is exact:
/// a screened variable is zero in every solution. Later epochs sweep only the remaining ones
/// (a working set that shrinks as the gap closes). It stops when `G ≤ tol`.
///
/// # References
/// J. Friedman, T. Hastie, R. Tibshirani, "Regularization paths for generalized linear models
/// via coordinate descent", J. Stat. Softw. 33 (2010); E. Ndiaye et al., "Gap safe screening
/// rules for sparsity enforcing penalties", JMLR 18 (2017).
pub struct CoordinateDescent<'a, T: Real> {
    problem: &'a LassoProblem<T>,
    params: CoordinateDescentParams<T>,
    /// Columns of A (contiguous), their squared norms and group Lipschitz constants.
    at: Array2<T>,
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
        let at = problem.a().t().as_standard_layout().to_owned();
        let col_sq = problem.column_norms().mapv(|v| v * v);
        let n = T::c(problem.n_samples() as f64);
        let group_l = match problem.penalty() {
            LassoPenalty::Group { groups, .. } => groups
                .iter()
                .map(|g| {
                    let sub = problem.a().select(Axis(1), g);
                    let op = DenseMatrix::new(sub).expect("finite");
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
            at,
            col_sq,
            group_l,
        })
    }

    /// The parameters.
    pub fn params(&self) -> &CoordinateDescentParams<T> {
        &self.params
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
        let r = self.problem.residual(x0)?;
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
                    let mut z: Vec<T> = gi
                        .iter()
                        .map(|&j| s.x[j] + self.at.row(j).dot(&s.r) / (n * l))
                        .collect();
                    let nz = z.iter().map(|v| *v * *v).sum::<T>().sqrt();
                    let t = lam * w[g] / l;
                    let sc = if nz > t { T::one() - t / nz } else { T::zero() };
                    z.iter_mut().for_each(|v| *v *= sc);
                    for (k, &j) in gi.iter().enumerate() {
                        let d = z[k] - old[k];
                        if d != T::zero() {
                            s.x[j] = z[k];
                            s.r.scaled_add(-d, &self.at.row(j));
                        }
                    }
                }
            }
            pen => {
                let (alpha, l2) = match pen {
                    LassoPenalty::ElasticNet { alpha } => (*alpha, lam * (T::one() - *alpha)),
                    _ => (T::one(), T::zero()),
                };
                for &j in &s.active {
                    let c = self.col_sq[j];
                    if c == T::zero() {
                        continue;
                    }
                    let aj = self.at.row(j);
                    let old = s.x[j];
                    let z = old + aj.dot(&s.r) / c;
                    let new =
                        soft_threshold(z, n * lam * alpha * w[j] / c) / (T::one() + n * l2 / c);
                    let d = new - old;
                    if d != T::zero() {
                        s.x[j] = new;
                        s.r.scaled_add(-d, &aj);
                    }
                }
            }
        }
        s.epoch += 1;
    }

    /// Computes the gap at the current iterate and screens.
    pub fn check(&self, s: &mut CoordinateDescentState<T>) -> Result<()> {
        let p = self.problem;
        let (gap, theta) = p.duality_gap_with_residual(s.x.view(), s.r.view())?;
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
                        .map(|&j| {
                            let v = self.at.row(j).dot(&theta);
                            v * v
                        })
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
                    let keep = self.at.row(j).dot(&theta).abs() + self.col_sq[j].sqrt() * radius
                        >= lam * alpha * w[j];
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
                s.r.scaled_add(d, &self.at.row(j));
                changed = true;
            }
        }
        if changed {
            s.gap = p.duality_gap_with_residual(s.x.view(), s.r.view())?.0;
            s.objective = p.objective_with_residual(s.x.view(), s.r.view())?;
        }
        Ok(())
    }

    /// Runs from `x0` until the gap is `≤ tol`, `max_epochs`, or the observer stops (called at
    /// each gap evaluation; `iter` counts epochs).
    pub fn run(
        &self,
        x0: ArrayView1<'_, T>,
        mut observer: impl Observer<T>,
    ) -> Result<Solution<T, CoordinateDescentState<T>>> {
        let mut s = self.init(x0)?;
        let mut reason = TerminationReason::MaxIters;
        self.check(&mut s)?;
        if s.gap > self.params.tol {
            while s.epoch < self.params.max_epochs {
                self.epoch(&mut s);
                if s.epoch % self.params.check_every == 0 || s.epoch == self.params.max_epochs {
                    self.check(&mut s)?;
                    let info = IterInfo {
                        iter: s.epoch,
                        objective: s.objective,
                        certificate: s.gap,
                        kind: CertificateKind::DualityGap,
                    };
                    let go_on = observer.observe(&info);
                    if s.gap <= self.params.tol {
                        reason = TerminationReason::Converged;
                        break;
                    }
                    if !go_on {
                        reason = TerminationReason::Observer;
                        break;
                    }
                }
            }
        } else {
            reason = TerminationReason::Converged;
        }
        Ok(Solution {
            x: s.x.clone(),
            iterations: s.epoch,
            objective: s.objective,
            certificate: s.gap,
            kind: CertificateKind::DualityGap,
            reason,
            state: s,
        })
    }
}

//! Working-set coordinate descent for the ℓ1 and elastic-net penalties: working sets grown by
//! the KKT-violation score, Anderson extrapolation of the coordinate-descent iterates, and
//! dual extrapolation of the residuals, with the gap-safe certified stop of
//! [`CoordinateDescent`].
//!
//! # The method
//! Outer iteration `t` (at `x`, residual `r = b − Ax`):
//! 1. **Dual point.** Candidates `θ_res = s·r/n` and, with dual extrapolation, `θ_acc = s·r_acc/n`
//!    where `r_acc = Σᵢ cᵢ r⁽ⁱ⁾` extrapolates the last `K + 1 = 6` residuals of the inner epochs
//!    (`c` solves `UᵀU z = 1`, `c = z/Σz`, `U` the residual differences); `s ≤ 1` scales each
//!    into the dual domain `|aⱼᵀθ| ≤ λαwⱼ` over the remaining features. The dual value `D(θ)`
//!    of a fixed `θ` does not change, so the best point seen so far stays a candidate. The gap
//!    `G = P(x) − max D` certifies `P(x) − P* ≤ G` (the problem with screened features removed
//!    has the same optimal value).
//! 2. **Gap-safe screening** with the best `θ`, as in plain coordinate descent.
//! 3. **Working set**: the support of `x` and the features of largest KKT violation
//!    `vⱼ = dist(aⱼᵀr/n − λ(1−α)xⱼ, ∂(λαwⱼ|·|)(xⱼ))` (skglm's score), of size
//!    `max(ws_start, 2·|supp x|)`, doubled when the last outer iteration did not lower the gap.
//! 4. **Inner solve** on the working set by cyclic coordinate descent until its largest KKT
//!    violation is `≤ 0.3·max_j vⱼ` (checked every `check_every` epochs; a tolerance on the
//!    violation, unlike one on the gap, is not loosened by the features outside the working
//!    set that make the rescaled residual a poor dual point). Every `K = 5` epochs an
//!    **Anderson** step extrapolates the last `K + 1` iterates and is taken only if it lowers
//!    the objective.
//!
//! # References
//! M. Massias, A. Gramfort, J. Salmon, "Celer: a fast solver for the Lasso with dual
//! extrapolation", ICML 2018 (working sets, dual extrapolation, inner tolerance 0.3 of the
//! outer criterion, first working set of 100);
//! Q. Bertrand, Q. Klopfenstein, P.-A. Bannier, G. Gidel, M. Massias, "Beyond L1: faster and
//! better sparse models with skglm", NeurIPS 2022 (Anderson extrapolation of coordinate
//! descent accepted on objective decrease, working sets of size `max(10, 2·|supp|)`);
//! D. Scieur, A. d'Aspremont, F. Bach, "Regularized nonlinear acceleration", NeurIPS 2016.

use super::cd::{CoordinateDescent, CoordinateDescentState};
use super::{
    check_divergence, CertificateKind, IterInfo, LassoPenalty, Observer, Solution,
    TerminationReason,
};
use crate::error::Result;
use crate::func::soft_threshold;
use crate::linalg::{axpy_slices, dot_slices, parallel_worth_it, Real};
use ndarray::{Array1, Array2, ArrayView1};
use rayon::prelude::*;
use std::collections::VecDeque;

/// The slice of a vector this module built (always contiguous).
fn contiguous<T>(v: &Array1<T>) -> &[T] {
    v.as_slice().expect("a contiguous vector")
}

/// Number of differences `K` in the Anderson and dual extrapolations.
pub const EXTRAPOLATION_K: usize = 5;

/// The inner solve stops at this fraction of the outer KKT violation (celer's and skglm's 0.3).
const INNER_FRACTION: f64 = 0.3;

/// Where the dual point of an outer iteration came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DualSource {
    /// The rescaled residual `s·r/n`.
    Residual,
    /// The rescaled extrapolated residual.
    Extrapolated,
    /// A point of an earlier outer iteration (its dual value was higher).
    Previous,
}

/// One outer iteration of the working-set solver.
#[derive(Clone, Debug)]
pub struct OuterRecord<T> {
    /// Epochs done when it started.
    pub epoch: usize,
    /// The duality gap at its start (after screening).
    pub gap: T,
    /// The source of the dual point of that gap.
    pub dual_source: DualSource,
    /// The support of `x` when the working set was chosen.
    pub support: Vec<usize>,
    /// The working set (sorted); empty on the last record (the gap reached the tolerance).
    pub working_set: Vec<usize>,
    /// Whether its inner solve ran on the Gram matrix of the working set.
    pub gram: bool,
}

/// One Anderson step.
#[derive(Clone, Copy, Debug)]
pub struct AndersonRecord<T> {
    /// Epochs done.
    pub epoch: usize,
    /// `P(x)` at the coordinate-descent iterate.
    pub before: T,
    /// `P` at the extrapolated point.
    pub candidate: T,
    /// Taken (`candidate < before`).
    pub accepted: bool,
}

/// What the working-set solver did: one record per outer iteration and per Anderson step,
/// and the final dual point (in [`CoordinateDescentState::trace`]).
#[derive(Clone, Debug, Default)]
pub struct WorkingSetTrace<T> {
    /// Outer iterations.
    pub outer: Vec<OuterRecord<T>>,
    /// Anderson steps.
    pub anderson: Vec<AndersonRecord<T>>,
    /// The best dual point `θ` (length `n`), feasible for the features not screened.
    pub theta: Array1<T>,
    /// Its dual value `D(θ)`.
    pub dual_value: T,
}

/// The extrapolation `Σᵢ cᵢ v⁽ⁱ⁺¹⁾` of `K + 1` vectors `v⁽⁰⁾…v⁽ᴷ⁾` (oldest first): `c` solves
/// `UᵀU z = 1` with `U = [v⁽¹⁾ − v⁽⁰⁾, …, v⁽ᴷ⁾ − v⁽ᴷ⁻¹⁾]`, `c = z/Σz`. `None` if `UᵀU` is
/// singular to working precision (the iterates stopped moving) or the result is not finite.
pub fn anderson_extrapolate<T: Real>(hist: &[Array1<T>]) -> Option<Array1<T>> {
    let k = hist.len().checked_sub(1).filter(|&k| k > 0)?;
    let diffs: Vec<Array1<T>> = (0..k).map(|i| &hist[i + 1] - &hist[i]).collect();
    let c = anderson_weights(k, |i, j| {
        dot_slices(contiguous(&diffs[i]), contiguous(&diffs[j]))
    })?;
    combine(hist, &c)
}

/// The weights `c = z/Σz` of an Anderson extrapolation from the inner products `uᵢᵀuⱼ` of the
/// `k` differences (`UᵀU z = 1`); `None` when the system is singular or the weights are not
/// finite.
#[allow(clippy::needless_range_loop)] // a symmetric fill: both g[i][j] and g[j][i]
fn anderson_weights<T: Real>(k: usize, inner: impl Fn(usize, usize) -> T) -> Option<Vec<T>> {
    let mut g = vec![vec![T::zero(); k + 1]; k];
    for i in 0..k {
        for j in 0..=i {
            let v = inner(i, j);
            g[i][j] = v;
            g[j][i] = v;
        }
        g[i][k] = T::one();
    }
    let z = solve_spd_small(g)?;
    let sum: T = z.iter().copied().sum();
    if !(sum.abs() > T::zero()) || !sum.is_finite() {
        return None;
    }
    Some(z.iter().map(|&zi| zi / sum).collect())
}

/// `Σᵢ cᵢ hist[i + 1]`, `None` if not finite.
fn combine<T: Real>(hist: &[Array1<T>], c: &[T]) -> Option<Array1<T>> {
    let mut out = Array1::zeros(hist[0].len());
    for (i, ci) in c.iter().enumerate() {
        out.scaled_add(*ci, &hist[i + 1]);
    }
    out.iter().all(|v| v.is_finite()).then_some(out)
}

/// Whether the working-set inner solve runs on the Gram matrix (see
/// [`CoordinateDescentParams::gram`](super::CoordinateDescentParams::gram)): automatically
/// when the working set is small against the samples (`|ws| ≤ n/8`, `|ws| ≤ 2048`) and the
/// previous inner solve took more than 10 epochs. Measured (`lasso_working_sets` example,
/// 20000 samples): with inner solves of 5–10 epochs the Gram matrix costs more than it saves
/// (2000 AR(0.9) features: 295 ms against 264 ms on the columns), with ~28 epochs per inner
/// solve it is 2.4× faster (400 AR(0.99) features: 169 ms against 403 ms).
fn use_gram(choice: Option<bool>, ws: usize, n: usize, last_inner_epochs: usize) -> bool {
    choice.unwrap_or(ws.saturating_mul(8) <= n && ws <= 2048 && last_inner_epochs > 10)
}

/// The stopping decision of an outer iteration, shared by the working-set solvers (Lasso family,
/// group lasso, logistic): `Some(reason)` when the gap reached the tolerance, the observer
/// asked to stop (it sees every outer gap), or the epoch cap was hit.
pub(super) fn outer_stop<T: Real>(
    gap: T,
    objective: T,
    epoch: usize,
    params: &super::CoordinateDescentParams<T>,
    observer: &mut impl Observer<T>,
) -> Option<TerminationReason> {
    let info = IterInfo {
        iter: epoch,
        objective,
        certificate: gap,
        kind: CertificateKind::DualityGap,
    };
    if gap <= params.tol {
        Some(TerminationReason::Converged)
    } else if !observer.observe(&info) {
        Some(TerminationReason::Observer)
    } else if epoch >= params.max_epochs {
        Some(TerminationReason::MaxIters)
    } else {
        None
    }
}

/// The working-set size: skglm's `max(start, 2·|supp|)`, doubled only if the last outer
/// iteration did not lower the gap (a safeguard: doubling whenever the gap did not halve
/// measured 14 % slower on the 50-λ path of the bench Lasso), at most `cap` and at least 1.
/// `prev` holds the last size and gap and is updated.
pub(super) fn working_set_size<T: Real>(
    start: usize,
    support: usize,
    gap: T,
    prev: &mut (usize, T),
    cap: usize,
) -> usize {
    let grow = if gap >= prev.1 { 2 * prev.0 } else { prev.0 };
    let k = start.max(2 * support).max(grow).clamp(1, cap.max(1));
    *prev = (k, gap);
    k
}

/// The `k` indices of smallest key (the support keyed `−∞`, then the largest violations keyed
/// `−v`), sorted.
pub(super) fn pick_working_set<T: Real>(mut scored: Vec<(T, usize)>, k: usize) -> Vec<usize> {
    if k < scored.len() {
        scored.select_nth_unstable_by(k.max(1) - 1, |a, b| {
            a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal)
        });
        scored.truncate(k);
    }
    let mut ws: Vec<usize> = scored.into_iter().map(|(_, j)| j).collect();
    ws.sort_unstable();
    ws
}

/// Solves the `k × k` system in the augmented matrix `[G | rhs]` by Gaussian elimination with
/// partial pivoting; `None` when a pivot falls below `ε²` times the largest diagonal entry (a
/// Gram matrix of differences that is singular to working precision: the iterates stopped
/// moving). Ill-conditioned systems are still solved: the weights may then be inaccurate, but
/// an extrapolated primal point is only taken if it lowers the objective and a dual point is
/// rescaled to feasibility, so neither can hurt the certificate.
fn solve_spd_small<T: Real>(mut m: Vec<Vec<T>>) -> Option<Vec<T>> {
    let k = m.len();
    let scale = (0..k).fold(T::zero(), |a, i| a.max(m[i][i].abs()));
    if !(scale > T::zero()) || !scale.is_finite() {
        return None;
    }
    let floor = scale * T::epsilon() * T::epsilon();
    for col in 0..k {
        let piv = (col..k).max_by(|&a, &b| {
            m[a][col]
                .abs()
                .partial_cmp(&m[b][col].abs())
                .unwrap_or(std::cmp::Ordering::Equal)
        })?;
        if !(m[piv][col].abs() > floor) {
            return None;
        }
        m.swap(col, piv);
        let (top, rest) = m.split_at_mut(col + 1);
        let pivot_row = &top[col];
        for row in rest.iter_mut() {
            let f = row[col] / pivot_row[col];
            for (r, &v) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *r -= f * v;
            }
        }
    }
    let mut z = vec![T::zero(); k];
    for row in (0..k).rev() {
        let mut v = m[row][k];
        for c in row + 1..k {
            v -= m[row][c] * z[c];
        }
        z[row] = v / m[row][row];
    }
    Some(z)
}

/// A dual point with `Aᵀθ` on the remaining features and its dual value.
#[derive(Clone)]
struct DualPoint<T> {
    /// The scale `s` applied to `v/n`.
    scale: T,
    theta: Array1<T>,
    /// `aⱼᵀθ` for every feature `j` (entries of screened features unused).
    at_theta: Array1<T>,
    value: T,
}

impl<T: Real> CoordinateDescent<'_, T> {
    /// `(α, λ(1 − α))` of the ℓ1 / elastic-net penalty.
    fn l1_l2(&self) -> (T, T) {
        match self.problem().penalty() {
            LassoPenalty::ElasticNet { alpha } => {
                (*alpha, self.problem().lambda() * (T::one() - *alpha))
            }
            _ => (T::one(), T::zero()),
        }
    }

    /// `P(x)` from `‖r‖²` (the ℓ1/EN objective over the features in `idx`, all others zero).
    fn objective_on(&self, x: &Array1<T>, r: &Array1<T>, idx: &[usize]) -> T {
        let p = self.problem();
        let (alpha, l2) = self.l1_l2();
        let (lam, w) = (p.lambda(), p.weights());
        let n = T::c(p.n_samples() as f64);
        let mut pen = T::zero();
        for &j in idx {
            pen += lam * alpha * w[j] * x[j].abs() + T::c(0.5) * l2 * x[j] * x[j];
        }
        let rs = contiguous(r);
        dot_slices(rs, rs) / (T::c(2.0) * n) + pen
    }

    /// The dual points `s·v/n` built from residual-like vectors `v` (one pass over the columns
    /// `idx` for all of them: each column is read once), each feasible on the features `idx`
    /// (for the elastic net every `θ` is feasible and `s = 1`), with its dual value
    /// `θᵀb − (n/2)‖θ‖² − Σ_{j∈idx} Ω*ⱼ(aⱼᵀθ)`.
    fn dual_points(&self, vs: &[&Array1<T>], idx: &[usize]) -> Vec<DualPoint<T>> {
        let p = self.problem();
        let n = T::c(p.n_samples() as f64);
        let slices: Vec<&[T]> = vs
            .iter()
            .map(|v| v.as_slice().expect("contiguous"))
            .collect();
        let k = slices.len();
        // Column blocks on the rayon threads: every product is computed alone, so the result
        // is the same bits for any thread count.
        const BLOCK: usize = 64;
        let mut vals = vec![T::zero(); idx.len() * k];
        let kernel = |(out, js): (&mut [T], &[usize])| {
            for (o, &j) in out.chunks_mut(k).zip(js) {
                for (oo, v) in o.iter_mut().zip(&slices) {
                    *oo = self.columns().dot(j, v) / n;
                }
            }
        };
        if parallel_worth_it(idx.len() * k * self.columns().column_cost()) {
            vals.par_chunks_mut(BLOCK * k)
                .zip(idx.par_chunks(BLOCK))
                .for_each(kernel);
        } else {
            vals.chunks_mut(BLOCK * k)
                .zip(idx.chunks(BLOCK))
                .for_each(kernel);
        }
        let mut ats: Vec<Array1<T>> = vec![Array1::zeros(p.n_features()); k];
        for (o, &j) in vals.chunks(k).zip(idx) {
            for (at, &v) in ats.iter_mut().zip(o) {
                at[j] = v;
            }
        }
        vs.iter()
            .zip(ats)
            .map(|(v, at)| self.finish_dual(v, at, idx))
            .collect()
    }

    /// The dual point of [`Self::dual_points`] from `v` and `aⱼᵀv/n` (`j ∈ idx`).
    fn finish_dual(&self, v: &Array1<T>, mut at_theta: Array1<T>, idx: &[usize]) -> DualPoint<T> {
        let p = self.problem();
        let n = T::c(p.n_samples() as f64);
        let projected = p.unpenalized().map(|z| {
            let mut v = v.clone();
            z.project(&mut v, &mut at_theta, T::one() / n);
            v
        });
        let v = projected.as_ref().unwrap_or(v);
        let (alpha, l2) = self.l1_l2();
        let (lam, w) = (p.lambda(), p.weights());
        let mut worst = T::zero();
        if l2 == T::zero() {
            for &j in idx {
                let bound = lam * alpha * w[j];
                if bound > T::zero() {
                    worst = worst.max(at_theta[j].abs() / bound);
                } else if at_theta[j] != T::zero() {
                    worst = T::infinity();
                }
            }
        }
        let s = if worst > T::one() {
            T::one() / worst
        } else {
            T::one()
        };
        let theta = v.mapv(|e| e * s / n);
        let mut conj = T::zero();
        if l2 > T::zero() {
            for &j in idx {
                let e = (at_theta[j].abs() - lam * alpha * w[j]).max(T::zero());
                conj += e * e / (T::c(2.0) * l2);
            }
        } else {
            at_theta.mapv_inplace(|c| c * s);
        }
        let value = if s.is_finite() && s > T::zero() {
            let ts = contiguous(&theta);
            theta.dot(&p.b()) - T::c(0.5) * n * dot_slices(ts, ts) - conj
        } else {
            T::neg_infinity()
        };
        DualPoint {
            scale: s,
            theta,
            at_theta,
            value,
        }
    }

    /// The KKT violation of feature `j` at `x` from `cⱼ = aⱼᵀr/n`: the distance of
    /// `cⱼ − λ(1 − α)xⱼ` (minus the smooth part's gradient) to `∂(λαwⱼ|·|)(xⱼ)`; zero for every
    /// `j` exactly at a solution.
    pub(super) fn violation(&self, j: usize, xj: T, cj: T) -> T {
        let (alpha, l2) = self.l1_l2();
        let bound = self.problem().lambda() * alpha * self.problem().weights()[j];
        let g = cj - l2 * xj;
        if xj == T::zero() {
            (g.abs() - bound).max(T::zero())
        } else {
            (g - bound * xj.signum()).abs()
        }
    }

    /// `aⱼᵀr/n` for `j ∈ idx` (zero elsewhere).
    fn correlations_on(&self, r: &Array1<T>, idx: &[usize]) -> Array1<T> {
        let n = T::c(self.problem().n_samples() as f64);
        let rs = r.as_slice().expect("contiguous");
        let mut c = Array1::zeros(self.problem().n_features());
        for &j in idx {
            c[j] = self.columns().dot(j, rs) / n;
        }
        c
    }

    /// The working-set solver (see the [module documentation](self)).
    pub(super) fn run_ws(
        &self,
        x0: ArrayView1<'_, T>,
        first_ws: Option<&[usize]>,
        mut observer: impl Observer<T>,
    ) -> Result<Solution<T, CoordinateDescentState<T>>> {
        let prob = self.problem();
        let mut first_ws = first_ws;
        let params = *self.params();
        let (alpha, l2) = self.l1_l2();
        let (lam, w) = (prob.lambda(), prob.weights());
        let n = T::c(prob.n_samples() as f64);
        let mut s = self.init(x0)?;
        let mut trace = WorkingSetTrace {
            theta: Array1::zeros(prob.n_samples()),
            dual_value: T::neg_infinity(),
            ..Default::default()
        };
        let mut best: Option<DualPoint<T>> = None;
        let mut r_hist: VecDeque<Array1<T>> = VecDeque::with_capacity(EXTRAPOLATION_K + 2);
        // The extrapolated residual of a Gram inner solve (formed without a residual history).
        let mut pending_acc: Option<Array1<T>> = None;
        // The Gram matrix of the last Gram inner solve's working set (entries reused).
        let mut gram_cache: Option<(Vec<usize>, Array2<T>)> = None;
        // Epochs of the last inner solve (what the automatic Gram choice looks at).
        let mut last_inner = 0usize;
        let mut prev = (0usize, T::infinity());
        let screening = params.screening && l2 == T::zero();
        // A relative margin keeps features whose constraint is active up to rounding.
        let lam_screen = lam * (T::one() - T::c(1e3) * T::epsilon());
        let reason = loop {
            // 1. The dual point and the gap.
            let mut source = DualSource::Previous;
            let r_acc = if let Some(v) = pending_acc.take() {
                Some(v)
            } else if params.dual_extrapolation && r_hist.len() == EXTRAPOLATION_K + 1 {
                r_hist.make_contiguous();
                anderson_extrapolate(r_hist.as_slices().0)
            } else {
                None
            };
            let vs: Vec<&Array1<T>> = std::iter::once(&s.r).chain(r_acc.as_ref()).collect();
            let sources = [DualSource::Residual, DualSource::Extrapolated];
            let cands = self.dual_points(&vs, &s.active);
            // aⱼᵀr/n (undo the scale of the residual's dual point; 0 < s ≤ 1 where finite).
            let res = &cands[0];
            let corr = if res.scale > T::zero() && res.scale.is_finite() && l2 == T::zero() {
                res.at_theta.mapv(|c| c / res.scale)
            } else if l2 > T::zero() {
                res.at_theta.clone()
            } else {
                self.correlations_on(&s.r, &s.active)
            };
            for (cand, src) in cands.into_iter().zip(sources) {
                if best.as_ref().is_none_or(|b| cand.value > b.value) {
                    best = Some(cand);
                    source = src;
                }
            }
            let dual = best.as_ref().expect("set above");
            let mut primal = self.objective_on(&s.x, &s.r, &s.active);
            check_divergence("coordinate descent", s.epoch, "objective", primal)?;
            let mut gap = (primal - dual.value).max(T::zero());
            // 2. Gap-safe screening with the best dual point.
            if screening {
                let radius = (T::c(2.0) * gap / n).sqrt();
                let mut changed = false;
                let (x, r) = (&mut s.x, &mut s.r);
                s.active.retain(|&j| {
                    let keep = dual.at_theta[j].abs() + self.col_sq()[j].sqrt() * radius
                        >= lam_screen * alpha * w[j];
                    if !keep && x[j] != T::zero() {
                        self.columns()
                            .axpy(j, x[j], r.as_slice_mut().expect("contiguous"));
                        x[j] = T::zero();
                        changed = true;
                    }
                    keep
                });
                if changed {
                    primal = self.objective_on(&s.x, &s.r, &s.active);
                    gap = (primal - dual.value).max(T::zero());
                    r_hist.clear();
                }
            }
            s.gap = gap;
            s.objective = primal;
            let support: Vec<usize> = s
                .active
                .iter()
                .copied()
                .filter(|&j| s.x[j] != T::zero())
                .collect();
            let mut record = OuterRecord {
                epoch: s.epoch,
                gap,
                dual_source: source,
                support: support.clone(),
                working_set: Vec::new(),
                gram: false,
            };
            if let Some(reason) = outer_stop(gap, primal, s.epoch, &params, &mut observer) {
                trace.outer.push(record);
                break reason;
            }
            // 3. The working set.
            let k_ws = working_set_size(
                params.ws_start,
                support.len(),
                gap,
                &mut prev,
                s.active.len(),
            );
            // Largest KKT violation first; the support always.
            let mut kkt = T::zero();
            let scored: Vec<(T, usize)> = s
                .active
                .iter()
                .map(|&j| {
                    let v = self.violation(j, s.x[j], corr[j]);
                    kkt = kkt.max(v);
                    let d = if s.x[j] != T::zero() {
                        T::neg_infinity()
                    } else {
                        -v
                    };
                    (d, j)
                })
                .collect();
            let mut ws: Vec<usize> = match first_ws.take() {
                // The caller's first working set (a path's strong rule) and the support.
                Some(hint) => {
                    let mut keep = vec![false; prob.n_features()];
                    for &j in hint.iter().chain(&support) {
                        keep[j] = true;
                    }
                    let ws: Vec<usize> = s.active.iter().copied().filter(|&j| keep[j]).collect();
                    prev.0 = ws.len().max(1);
                    ws
                }
                None => pick_working_set(scored, k_ws),
            };
            ws.sort_unstable();
            record.working_set = ws.clone();
            record.gram = use_gram(params.gram, ws.len(), prob.n_samples(), last_inner);
            let inner_start = s.epoch;
            let gram = record.gram;
            trace.outer.push(record);
            // 4. The inner solve.
            let inner_tol = T::c(INNER_FRACTION) * kkt;
            if gram {
                r_hist.clear();
                pending_acc =
                    self.inner_gram(&mut s, &ws, inner_tol, &mut trace.anderson, &mut gram_cache)?;
                last_inner = s.epoch - inner_start;
                continue;
            }
            self.inner_columns(&mut s, &ws, inner_tol, &mut r_hist, &mut trace.anderson)?;
            last_inner = s.epoch - inner_start;
        };
        if let Some(b) = best {
            trace.theta = b.theta;
            trace.dual_value = b.value;
        }
        s.trace = trace;
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

    /// The inner solve of one outer iteration on the columns of `ws`: glmnet's active cycling
    /// (every `check_every` epochs a sweep of the whole working set, which also measures the
    /// KKT violation of each coordinate just before its update — the inner stopping test, no
    /// separate pass over the columns —, in between sweeps of its nonzero coordinates only),
    /// the residual history for the dual extrapolation, and Anderson steps every `K + 1`
    /// epochs.
    fn inner_columns(
        &self,
        s: &mut CoordinateDescentState<T>,
        ws: &[usize],
        inner_tol: T,
        r_hist: &mut VecDeque<Array1<T>>,
        anderson_log: &mut Vec<AndersonRecord<T>>,
    ) -> Result<()> {
        let params = *self.params();
        let mut x_hist: Vec<Array1<T>> = Vec::with_capacity(EXTRAPOLATION_K + 1);
        let mut since_full = 0usize;
        let mut nonzero: Vec<usize> = Vec::with_capacity(ws.len());
        while s.epoch < params.max_epochs {
            // glmnet's active cycling: every `check_every` epochs a sweep of the whole
            // working set, which also measures the KKT violation of each coordinate just
            // before its update (the inner stopping test, no separate pass over the
            // columns); in between, sweeps of its nonzero coordinates only.
            let mut stop = false;
            if since_full == 0 {
                let worst = self.sweep(&mut s.x, &mut s.r, ws);
                check_divergence("coordinate descent", s.epoch, "KKT violation", worst)?;
                stop = worst <= inner_tol;
                nonzero.clear();
                nonzero.extend(ws.iter().copied().filter(|&j| s.x[j] != T::zero()));
            } else {
                self.sweep(&mut s.x, &mut s.r, &nonzero);
            }
            s.epoch += 1;
            since_full = (since_full + 1) % params.check_every;
            if stop {
                break;
            }
            if params.dual_extrapolation {
                if r_hist.len() == EXTRAPOLATION_K + 1 {
                    r_hist.pop_front();
                }
                r_hist.push_back(s.r.clone());
            }
            if params.anderson {
                x_hist.push(ws.iter().map(|&j| s.x[j]).collect());
                if x_hist.len() == EXTRAPOLATION_K + 1 {
                    self.anderson_step(s, ws, &x_hist, anderson_log);
                    x_hist.clear();
                }
            }
        }
        Ok(())
    }

    /// The inner solve of one outer iteration on the Gram matrix `G = A_wsᵀA_ws` (see
    /// [`CoordinateDescentParams::gram`](super::CoordinateDescentParams::gram)): the same
    /// coordinate steps on `q = A_wsᵀr`, kept by `q ← q − d·G[:, k]` (an epoch costs `|ws|²`,
    /// not `n·|ws|`), the same stopping rule on the KKT violation `q/n`, Anderson steps compared
    /// through `‖r‖² = ‖r₀‖² − dᵀ(q₀ + q)` (`d = x − x₀` on `ws`), and `r = r₀ − A_ws d` formed
    /// once at the end. With dual extrapolation it returns the extrapolated residual of its last
    /// `K + 1` iterates, `r_acc = r − A_ws(x_acc − x)`, with the weights from
    /// `UᵀU = DᵀGD` (`U` the residual differences, `D` the iterate differences): the residual
    /// history itself is never formed. The Gram matrix is kept in `cache` for the next outer
    /// iteration, whose working set mostly repeats this one (the support stays in it).
    fn inner_gram(
        &self,
        s: &mut CoordinateDescentState<T>,
        ws: &[usize],
        inner_tol: T,
        log: &mut Vec<AndersonRecord<T>>,
        cache: &mut Option<(Vec<usize>, Array2<T>)>,
    ) -> Result<Option<Array1<T>>> {
        let prob = self.problem();
        let params = *self.params();
        let n = T::c(prob.n_samples() as f64);
        let (alpha, l2) = self.l1_l2();
        let (lam, w) = (prob.lambda(), prob.weights());
        let m = ws.len();
        let g = self
            .columns()
            .gram(ws, cache.as_ref().map(|(i, g)| (i.as_slice(), g)));
        let q0: Array1<T> = ws
            .iter()
            .map(|&j| self.columns().dot(j, contiguous(&s.r)))
            .collect();
        let rr0 = dot_slices(contiguous(&s.r), contiguous(&s.r));
        let x0: Array1<T> = ws.iter().map(|&j| s.x[j]).collect();
        let mut x = x0.clone();
        let mut q = q0.clone();
        let thresh: Vec<T> = ws.iter().map(|&j| n * lam * alpha * w[j]).collect();
        // P restricted to the working set (the other coordinates do not move), from ‖r‖².
        let objective = |x: &Array1<T>, q: &Array1<T>| -> T {
            let mut rr = rr0;
            let mut pen = T::zero();
            for k in 0..m {
                rr -= (x[k] - x0[k]) * (q0[k] + q[k]);
                pen += lam * alpha * w[ws[k]] * x[k].abs() + T::c(0.5) * l2 * x[k] * x[k];
            }
            rr / (T::c(2.0) * n) + pen
        };
        let mut x_hist: Vec<Array1<T>> = Vec::with_capacity(EXTRAPOLATION_K + 1);
        let mut d_hist: VecDeque<Array1<T>> = VecDeque::with_capacity(EXTRAPOLATION_K + 2);
        let mut since_check = 0usize;
        while s.epoch < params.max_epochs {
            {
                let xs = x.as_slice_mut().expect("contiguous");
                let qs = q.as_slice_mut().expect("contiguous");
                for k in 0..m {
                    let c = g[(k, k)];
                    if c == T::zero() {
                        continue;
                    }
                    let old = xs[k];
                    let new =
                        soft_threshold(old + qs[k] / c, thresh[k] / c) / (T::one() + n * l2 / c);
                    let d = new - old;
                    if d != T::zero() {
                        xs[k] = new;
                        axpy_slices(qs, -d, g.row(k).to_slice().expect("standard layout"));
                    }
                }
            }
            s.epoch += 1;
            since_check += 1;
            if params.dual_extrapolation {
                if d_hist.len() == EXTRAPOLATION_K + 1 {
                    d_hist.pop_front();
                }
                d_hist.push_back(x.clone());
            }
            if params.anderson {
                x_hist.push(x.clone());
                if x_hist.len() == EXTRAPOLATION_K + 1 {
                    if let Some(x_acc) = anderson_extrapolate(&x_hist) {
                        let q_acc = &q0 - &g.dot(&(&x_acc - &x0));
                        let before = objective(&x, &q);
                        let candidate = objective(&x_acc, &q_acc);
                        let accepted = candidate < before;
                        if accepted {
                            x = x_acc;
                            q = q_acc;
                        }
                        log.push(AndersonRecord {
                            epoch: s.epoch,
                            before,
                            candidate,
                            accepted,
                        });
                    }
                    x_hist.clear();
                }
            }
            if since_check >= params.check_every {
                since_check = 0;
                let worst = (0..m).fold(T::zero(), |a, k| {
                    a.max(self.violation(ws[k], x[k], q[k] / n))
                });
                check_divergence("coordinate descent", s.epoch, "KKT violation", worst)?;
                if worst <= inner_tol {
                    break;
                }
            }
        }
        *cache = Some((ws.to_vec(), g.clone()));
        // The residual and the iterate.
        for (k, &j) in ws.iter().enumerate() {
            let d = x[k] - x0[k];
            if d != T::zero() {
                self.columns().axpy_into(j, -d, &mut s.r);
                s.x[j] = x[k];
            }
        }
        if d_hist.len() < EXTRAPOLATION_K + 1 {
            return Ok(None);
        }
        d_hist.make_contiguous();
        let hist = d_hist.as_slices().0;
        let diffs: Vec<Array1<T>> = (0..EXTRAPOLATION_K)
            .map(|i| &hist[i + 1] - &hist[i])
            .collect();
        let gd: Vec<Array1<T>> = diffs.iter().map(|d| g.dot(d)).collect();
        let Some(c) = anderson_weights(EXTRAPOLATION_K, |i, j| diffs[i].dot(&gd[j])) else {
            return Ok(None);
        };
        let Some(x_acc) = combine(hist, &c) else {
            return Ok(None);
        };
        let mut r_acc = s.r.clone();
        for (k, &j) in ws.iter().enumerate() {
            let d = x_acc[k] - x[k];
            if d != T::zero() {
                self.columns().axpy_into(j, -d, &mut r_acc);
            }
        }
        Ok(Some(r_acc))
    }

    /// One Anderson step on the working set `ws` from the last `K + 1` iterates: the
    /// extrapolated point replaces `x` (and `r`) only if its objective is lower.
    fn anderson_step(
        &self,
        s: &mut CoordinateDescentState<T>,
        ws: &[usize],
        x_hist: &[Array1<T>],
        log: &mut Vec<AndersonRecord<T>>,
    ) {
        let Some(x_acc) = anderson_extrapolate(x_hist) else {
            return;
        };
        let mut r_acc = s.r.clone();
        for (k, &j) in ws.iter().enumerate() {
            let d = x_acc[k] - s.x[j];
            if d != T::zero() {
                self.columns()
                    .axpy(j, -d, r_acc.as_slice_mut().expect("contiguous"));
            }
        }
        let before = self.objective_on(&s.x, &s.r, ws);
        let mut x_new = s.x.clone();
        for (k, &j) in ws.iter().enumerate() {
            x_new[j] = x_acc[k];
        }
        let candidate = self.objective_on(&x_new, &r_acc, ws);
        let accepted = candidate < before;
        if accepted {
            s.x = x_new;
            s.r = r_acc;
        }
        log.push(AndersonRecord {
            epoch: s.epoch,
            before,
            candidate,
            accepted,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The automatic Gram choice at its boundaries; a user's choice always wins.
    #[test]
    fn gram_choice_follows_its_rule() {
        assert!(use_gram(None, 100, 800, 11));
        assert!(!use_gram(None, 100, 799, 11), "|ws| > n/8");
        assert!(!use_gram(None, 100, 800, 10), "short inner solves");
        assert!(use_gram(None, 2048, 8 * 2048, 11));
        assert!(!use_gram(None, 2049, 8 * 2049, 11), "|ws| > 2048");
        assert!(use_gram(Some(true), 5000, 10, 0));
        assert!(!use_gram(Some(false), 10, 1_000_000, 1000));
    }

    /// Anderson weights from the inner products of the differences: `UᵀU z = 1`, `c = z/Σz`
    /// (the affine combination of smallest `‖Σ cᵢuᵢ‖`), checked on closed forms; singular
    /// systems give `None`.
    #[test]
    fn anderson_weights_solve_their_system() {
        // Orthonormal differences: equal weights.
        let c = anderson_weights(2, |i, j| if i == j { 1.0 } else { 0.0 }).unwrap();
        assert_eq!(c, vec![0.5, 0.5]);
        // ‖u₀‖² = 1, ‖u₁‖² = 4, orthogonal: z = (1, 1/4), c = (0.8, 0.2).
        let c: Vec<f64> = anderson_weights(2, |i, j| match (i, j) {
            (0, 0) => 1.0,
            (1, 1) => 4.0,
            _ => 0.0,
        })
        .unwrap();
        assert!(
            (c[0] - 0.8).abs() < 1e-15 && (c[1] - 0.2).abs() < 1e-15,
            "{c:?}"
        );
        // Correlated: [[2, 1], [1, 2]] z = 1 gives z = (1/3, 1/3).
        let c: Vec<f64> = anderson_weights(2, |i, j| if i == j { 2.0 } else { 1.0 }).unwrap();
        assert!((c[0] - 0.5).abs() < 1e-15);
        assert!(anderson_weights(2, |_, _| 1.0).is_none(), "singular");
        assert!(anderson_weights(1, |_, _| 0.0).is_none());
        // combine: Σ cᵢ hist[i + 1].
        let hist = vec![
            Array1::from(vec![9.0]),
            Array1::from(vec![1.0]),
            Array1::from(vec![3.0]),
        ];
        assert_eq!(combine(&hist, &[0.25, 0.75]).unwrap()[0], 2.5);
    }

    /// A sweep returns the KKT violation of each coordinate just before its update: for one
    /// coordinate, the violation at the starting point; for several, the largest of those
    /// measured along the pass (recomputed here step by step).
    #[test]
    fn sweep_reports_the_violation_before_each_update() {
        use crate::solve::{CoordinateDescentParams, LassoPenalty, LassoProblem};
        let a = ndarray::array![
            [1.0, 0.3, -0.2],
            [0.1, 1.0, 0.4],
            [-0.5, 0.2, 1.0],
            [0.3, 0.3, 0.3]
        ];
        let b = ndarray::array![1.0, -0.4, 0.7, 0.2];
        for pen in [
            LassoPenalty::L1 { weights: None },
            LassoPenalty::ElasticNet { alpha: 0.5 },
        ] {
            let prob = LassoProblem::new(a.clone(), b.clone(), 0.005, pen).unwrap();
            let cd = CoordinateDescent::new(&prob, CoordinateDescentParams::default()).unwrap();
            let x0 = ndarray::array![0.2, 0.0, -0.1];
            let r0 = &b - &a.dot(&x0);
            let (mut x, mut r) = (x0.clone(), r0.clone());
            let got: f64 = cd.sweep(&mut x, &mut r, &[1]);
            let c1 = a.column(1).dot(&r0) / 4.0;
            assert!((got - cd.violation(1, 0.0, c1)).abs() < 1e-15);
            assert!(got > 0.0);
            // A full pass: replay it coordinate by coordinate.
            let (mut x, mut r) = (x0.clone(), r0.clone());
            let got = cd.sweep(&mut x, &mut r, &[0, 1, 2]);
            let (mut xs, mut rs) = (x0.clone(), r0.clone());
            let mut want: f64 = 0.0;
            for j in 0..3 {
                let c = a.column(j).dot(&rs) / 4.0;
                want = want.max(cd.violation(j, xs[j], c));
                cd.sweep(&mut xs, &mut rs, &[j]);
            }
            assert!((got - want).abs() < 1e-15, "{got} vs {want}");
            assert_eq!(x, xs);
        }
    }
}

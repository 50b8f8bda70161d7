//! Working-set block coordinate descent for the group lasso
//! `‖Ax − b‖²/(2n) + λ Σ_g w_g‖x_g‖₂`, with Anderson extrapolation of the block iterates and
//! dual extrapolation of the residuals, certified by the duality gap of [`LassoProblem`].
//!
//! # The method
//! The group version of [`cd_ws`](super::cd_ws), outer iteration at `x` (residual `r`):
//! 1. **Dual points and gap.** From `r` and, with dual extrapolation, `r_acc` (the last
//!    `K + 1 = 6` residuals of the inner epochs extrapolated), each rescaled into the dual
//!    domain `‖A_gᵀθ‖ ≤ λw_g` over the remaining groups ([`LassoProblem`]'s gap); the best dual
//!    value seen so far is kept.
//! 2. **Gap-safe screening** of groups, `‖A_gᵀθ‖ + ‖A_g‖√(2G/n) < λw_g`, as plain block
//!    coordinate descent does.
//! 3. **Working set**: the groups of the support and those of largest violation
//!    `v_g = dist(A_gᵀr/n, λw_g∂‖·‖(x_g))` (`max(‖c_g‖ − λw_g, 0)` at `x_g = 0`,
//!    `‖c_g − λw_g x_g/‖x_g‖‖` elsewhere), `max(⌈ws_start/ḡ⌉, 2·|supp|)` groups (`ḡ` the mean
//!    group size), doubled when the last outer iteration did not lower the gap.
//! 4. **Inner solve**: block steps `x_g ← BS(x_g + A_gᵀr/(nL_g), λw_g/L_g)` over the working
//!    set until its largest violation is `≤ 0.3·max_g v_g`; every `K = 5` epochs an Anderson
//!    step, taken only if it lowers the objective.
//!
//! # References
//! Q. Bertrand et al., "Beyond L1: faster and better sparse models with skglm", NeurIPS 2022
//! (working sets and Anderson extrapolation for the group lasso); M. Massias, S. Vaiter,
//! A. Gramfort, J. Salmon, "Dual extrapolation for sparse generalized linear models", JMLR 21
//! (2020) (dual extrapolation beyond the Lasso).

use super::cd::{CoordinateDescent, CoordinateDescentState};
use super::cd_ws::{
    anderson_extrapolate, outer_stop, pick_working_set, working_set_size, AndersonRecord,
    DualSource, OuterRecord, WorkingSetTrace, EXTRAPOLATION_K,
};
use super::{check_divergence, CertificateKind, LassoPenalty, Observer, Solution};
use crate::error::Result;
use crate::linalg::{dot_slices, Real};
use ndarray::{Array1, ArrayView1};
use std::collections::VecDeque;

/// The inner solve stops at this fraction of the outer violation.
const INNER_FRACTION: f64 = 0.3;

impl<T: Real> CoordinateDescent<'_, T> {
    /// The groups of the penalty (index lists).
    fn group_lists(&self) -> Vec<&[usize]> {
        match self.problem().penalty() {
            LassoPenalty::Group { groups, .. } => groups.iter().collect(),
            _ => Vec::new(),
        }
    }

    /// `‖v_g‖`.
    fn group_norm(v: &Array1<T>, g: &[usize]) -> T {
        g.iter().map(|&j| v[j] * v[j]).sum::<T>().sqrt()
    }

    /// The violation `dist(c_g, λw_g ∂‖·‖(x_g))` of group `g` from `c = Aᵀr/n`.
    fn group_violation(&self, g: usize, idx: &[usize], x: &Array1<T>, c: &Array1<T>) -> T {
        let t = self.problem().lambda() * self.problem().weights()[g];
        let nx = Self::group_norm(x, idx);
        if nx == T::zero() {
            (Self::group_norm(c, idx) - t).max(T::zero())
        } else {
            idx.iter()
                .map(|&j| {
                    let d = c[j] - t * x[j] / nx;
                    d * d
                })
                .sum::<T>()
                .sqrt()
        }
    }

    /// `P(x)` from the residual.
    fn group_objective(&self, x: &Array1<T>, r: &Array1<T>, lists: &[&[usize]]) -> T {
        let p = self.problem();
        let n = T::c(p.n_samples() as f64);
        let w = p.weights();
        let rs = r.as_slice().expect("contiguous");
        let pen = lists
            .iter()
            .enumerate()
            .fold(T::zero(), |a, (g, idx)| a + w[g] * Self::group_norm(x, idx));
        dot_slices(rs, rs) / (T::c(2.0) * n) + p.lambda() * pen
    }

    /// `aⱼᵀv/n` for the features of the groups `gs` (zero elsewhere).
    fn group_correlations(&self, v: &Array1<T>, gs: &[usize], lists: &[&[usize]]) -> Array1<T> {
        let n = T::c(self.problem().n_samples() as f64);
        let vs = v.as_slice().expect("contiguous");
        let mut c = Array1::zeros(self.problem().n_features());
        for &g in gs {
            for &j in lists[g] {
                c[j] = self.columns().dot(j, vs) / n;
            }
        }
        c
    }

    /// One pass of block steps over the groups `gs` (`buf`: scratch for one group).
    fn group_sweep(
        &self,
        x: &mut Array1<T>,
        r: &mut Array1<T>,
        gs: &[usize],
        lists: &[&[usize]],
        buf: &mut Vec<T>,
    ) {
        let p = self.problem();
        let n = T::c(p.n_samples() as f64);
        let (lam, w) = (p.lambda(), p.weights());
        let rs = r.as_slice_mut().expect("contiguous");
        for &g in gs {
            let l = self.group_lipschitz(g);
            if l == T::zero() {
                continue;
            }
            let idx = lists[g];
            buf.clear();
            buf.extend(
                idx.iter()
                    .map(|&j| x[j] + self.columns().dot(j, rs) / (n * l)),
            );
            let nz = buf.iter().map(|v| *v * *v).sum::<T>().sqrt();
            let t = lam * w[g] / l;
            let sc = if nz > t { T::one() - t / nz } else { T::zero() };
            for (k, &j) in idx.iter().enumerate() {
                let new = buf[k] * sc;
                let d = new - x[j];
                if d != T::zero() {
                    x[j] = new;
                    self.columns().axpy(j, -d, rs);
                }
            }
        }
    }

    /// The working-set solver for the group lasso (see the [module documentation](self)).
    pub(super) fn run_group_ws(
        &self,
        x0: ArrayView1<'_, T>,
        mut observer: impl Observer<T>,
    ) -> Result<Solution<T, CoordinateDescentState<T>>> {
        let prob = self.problem();
        let params = *self.params();
        let lists = self.group_lists();
        let (lam, w) = (prob.lambda(), prob.weights());
        let n = T::c(prob.n_samples() as f64);
        let mean_size = prob.n_features().div_ceil(lists.len().max(1)).max(1);
        let mut s = self.init(x0)?;
        let mut trace = WorkingSetTrace {
            theta: Array1::zeros(prob.n_samples()),
            dual_value: T::neg_infinity(),
            ..Default::default()
        };
        // The best dual point: (θ, D(θ)).
        let mut best: Option<(Array1<T>, T)> = None;
        let mut r_hist: VecDeque<Array1<T>> = VecDeque::with_capacity(EXTRAPOLATION_K + 2);
        let mut prev = (0usize, T::infinity());
        let mut buf = Vec::new();
        let lam_screen = lam * (T::one() - T::c(1e3) * T::epsilon());
        let reason = loop {
            // 1. Dual points from r and the extrapolated residual; the gap.
            let corr = self.group_correlations(&s.r, &s.active, &lists);
            let mut source = DualSource::Previous;
            let mut candidates = vec![(s.r.clone(), corr.clone(), DualSource::Residual)];
            if params.dual_extrapolation && r_hist.len() == EXTRAPOLATION_K + 1 {
                r_hist.make_contiguous();
                if let Some(r_acc) = anderson_extrapolate(r_hist.as_slices().0) {
                    let c = self.group_correlations(&r_acc, &s.active, &lists);
                    candidates.push((r_acc, c, DualSource::Extrapolated));
                }
            }
            let mut at_theta = None;
            for (v, c, src) in candidates {
                let (theta, value, att) = self.group_dual_point(&v, c, &s.active, &lists);
                if best.as_ref().is_none_or(|b| value > b.1) {
                    best = Some((theta, value));
                    source = src;
                    at_theta = Some(att);
                }
            }
            let dual = best.as_ref().expect("set above").1;
            let mut primal = self.group_objective(&s.x, &s.r, &lists);
            check_divergence("block coordinate descent", s.epoch, "objective", primal)?;
            let mut gap = (primal - dual).max(T::zero());
            // 2. Gap-safe screening (with the dual point found now; a kept earlier one has
            // no fresh correlations, and skipping a screening round is safe).
            if params.screening {
                if let Some(att) = at_theta {
                    let radius = (T::c(2.0) * gap / n).sqrt();
                    let mut changed = false;
                    let (x, r) = (&mut s.x, &mut s.r);
                    s.active.retain(|&g| {
                        let keep = Self::group_norm(&att, lists[g])
                            + (self.group_lipschitz(g) * n).sqrt() * radius
                            >= lam_screen * w[g];
                        if !keep {
                            for &j in lists[g] {
                                if x[j] != T::zero() {
                                    self.columns().axpy(
                                        j,
                                        x[j],
                                        r.as_slice_mut().expect("contiguous"),
                                    );
                                    x[j] = T::zero();
                                    changed = true;
                                }
                            }
                        }
                        keep
                    });
                    if changed {
                        primal = self.group_objective(&s.x, &s.r, &lists);
                        gap = (primal - dual).max(T::zero());
                        r_hist.clear();
                    }
                }
            }
            s.gap = gap;
            s.objective = primal;
            let support: Vec<usize> = s
                .active
                .iter()
                .copied()
                .filter(|&g| lists[g].iter().any(|&j| s.x[j] != T::zero()))
                .collect();
            let mut record = OuterRecord {
                epoch: s.epoch,
                gap,
                dual_source: source,
                support: support.clone(),
                working_set: Vec::new(),
                // Block steps read the columns (a group Gram solver is not implemented).
                gram: false,
            };
            if let Some(reason) = outer_stop(gap, primal, s.epoch, &params, &mut observer) {
                trace.outer.push(record);
                break reason;
            }
            // 3. The working set: the support, then the largest violations.
            let k_ws = working_set_size(
                params.ws_start.div_ceil(mean_size),
                support.len(),
                gap,
                &mut prev,
                s.active.len(),
            );
            let mut kkt = T::zero();
            let scored: Vec<(T, usize)> = s
                .active
                .iter()
                .map(|&g| {
                    let v = self.group_violation(g, lists[g], &s.x, &corr);
                    kkt = kkt.max(v);
                    let in_support = lists[g].iter().any(|&j| s.x[j] != T::zero());
                    (if in_support { T::neg_infinity() } else { -v }, g)
                })
                .collect();
            let ws = pick_working_set(scored, k_ws);
            record.working_set = ws.clone();
            trace.outer.push(record);
            let ws_features: Vec<usize> =
                ws.iter().flat_map(|&g| lists[g].iter().copied()).collect();
            // 4. Inner solve with Anderson steps.
            let inner_tol = T::c(INNER_FRACTION) * kkt;
            let mut x_hist: Vec<Array1<T>> = Vec::with_capacity(EXTRAPOLATION_K + 1);
            let mut since_check = 0usize;
            while s.epoch < params.max_epochs {
                self.group_sweep(&mut s.x, &mut s.r, &ws, &lists, &mut buf);
                s.epoch += 1;
                since_check += 1;
                if params.dual_extrapolation {
                    if r_hist.len() == EXTRAPOLATION_K + 1 {
                        r_hist.pop_front();
                    }
                    r_hist.push_back(s.r.clone());
                }
                if params.anderson {
                    x_hist.push(ws_features.iter().map(|&j| s.x[j]).collect());
                    if x_hist.len() == EXTRAPOLATION_K + 1 {
                        self.group_anderson_step(
                            &mut s,
                            &ws_features,
                            &x_hist,
                            &lists,
                            &mut trace.anderson,
                        );
                        x_hist.clear();
                    }
                }
                if since_check >= params.check_every {
                    since_check = 0;
                    let c = self.group_correlations(&s.r, &ws, &lists);
                    let worst = ws.iter().fold(T::zero(), |m, &g| {
                        m.max(self.group_violation(g, lists[g], &s.x, &c))
                    });
                    check_divergence("block coordinate descent", s.epoch, "violation", worst)?;
                    if worst <= inner_tol {
                        break;
                    }
                }
            }
        };
        if let Some((theta, value)) = best {
            trace.theta = theta;
            trace.dual_value = value;
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

    /// The dual point `θ = s·v/n` (`s ≤ 1` the largest scale with `‖A_gᵀθ‖ ≤ λw_g` on the
    /// groups `gs`), its value `θᵀb − (n/2)‖θ‖²` and `Aᵀθ` (on the features of `gs`), from
    /// `c = Aᵀv/n` on those features.
    fn group_dual_point(
        &self,
        v: &Array1<T>,
        mut c: Array1<T>,
        gs: &[usize],
        lists: &[&[usize]],
    ) -> (Array1<T>, T, Array1<T>) {
        let p = self.problem();
        let n = T::c(p.n_samples() as f64);
        let (lam, w) = (p.lambda(), p.weights());
        let worst = gs.iter().fold(T::zero(), |m, &g| {
            m.max(Self::group_norm(&c, lists[g]) / (lam * w[g]))
        });
        let sc = if worst > T::one() {
            T::one() / worst
        } else {
            T::one()
        };
        c.mapv_inplace(|e| e * sc);
        let theta = v.mapv(|e| e * sc / n);
        let value = if sc.is_finite() && sc > T::zero() {
            let ts = theta.as_slice().expect("contiguous");
            theta.dot(&p.b()) - T::c(0.5) * n * dot_slices(ts, ts)
        } else {
            T::neg_infinity()
        };
        (theta, value, c)
    }

    /// One Anderson step on the features `idx` of the working set: taken only if it lowers the
    /// objective.
    fn group_anderson_step(
        &self,
        s: &mut CoordinateDescentState<T>,
        idx: &[usize],
        x_hist: &[Array1<T>],
        lists: &[&[usize]],
        log: &mut Vec<AndersonRecord<T>>,
    ) {
        let Some(x_acc) = anderson_extrapolate(x_hist) else {
            return;
        };
        let mut r_acc = s.r.clone();
        let mut x_new = s.x.clone();
        for (k, &j) in idx.iter().enumerate() {
            let d = x_acc[k] - s.x[j];
            if d != T::zero() {
                self.columns()
                    .axpy(j, -d, r_acc.as_slice_mut().expect("contiguous"));
                x_new[j] = x_acc[k];
            }
        }
        let before = self.group_objective(&s.x, &s.r, lists);
        let candidate = self.group_objective(&x_new, &r_acc, lists);
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

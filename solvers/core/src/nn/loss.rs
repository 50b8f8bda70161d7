//! Classification losses on logits with integer labels ([`ClassLoss`]), and the Huber
//! regression loss ([`Huber`], a [`BatchLoss`]).
//!
//! Every [`ClassLoss`] returns the mean over the batch and the gradient of that mean with
//! respect to the logits. Losses that keep a state per training example (ELR's running target,
//! PS-KD's previous predictions) read the examples' indices in the training set, and their
//! state round-trips through [`ClassLoss::state`] for checkpoints.
//!
//! | loss | per example (logits `o`, label `y`, `K` classes) |
//! |---|---|
//! | [`LossSpec::CrossEntropy`] | `−Σ_j q_j log softmax(o)_j`, `q = (1 − ε) e_y + ε/K` (label smoothing `ε`) |
//! | [`LossSpec::StableMax`] | `−log(s(o_y)/Σ_j s(o_j))`, `s(x) = x + 1` for `x ≥ 0`, `1/(1 − x)` below |
//! | [`LossSpec::ZLoss`] | `softplus(a(b − z_y))/a`, `z = (o − mean o)/std o` |
//! | [`LossSpec::Elr`] | cross-entropy `+ λ log(1 − ⟨t, p⟩)`, `t ← βt + (1 − β)p` per example |
//! | [`LossSpec::Pskd`] | cross-entropy to `(1 − α_t) e_y + α_t p_prev`, `α_t = α_T·t/T` |
//!
//! # References
//! * L. Prieto, M. Barsbey, P. Mediano, T. Birdal, "Grokking at the edge of numerical
//!   stability", ICLR 2025 (StableMax; ⊥Grad is in [`optim`](super::optim)).
//! * A. de Brébisson, P. Vincent, "The Z-loss: a shift and scale invariant classification loss
//!   belonging to the spherical family", 2016.
//! * S. Liu, J. Niles-Weed, N. Razavian, C. Fernandez-Granda, "Early-learning regularization
//!   prevents memorization of noisy labels", NeurIPS 2020 (ELR; constants of its reference
//!   code: `β = 0.7`, `λ = 3`, probabilities clamped to `[1e-4, 1 − 1e-4]`).
//! * K. Kim, B. Ji, D. Yoon, S. Hwang, "Self-knowledge distillation with progressive refinement
//!   of targets", ICCV 2021 (PS-KD; `α_T = 0.8`).
//! * C. Szegedy et al., "Rethinking the Inception architecture", CVPR 2016 (label smoothing).

use crate::diff::BatchLoss;
use crate::error::{Error, Result};
use crate::linalg::{check_batch, Real};
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2};
use serde::{Deserialize, Serialize};

/// A classification loss on a batch of logits (B × K) with integer labels.
pub trait ClassLoss<T: Real = f64>: Send + Sync {
    /// Name for reports.
    fn name(&self) -> String;
    /// The mean loss over the batch; writes its gradient with respect to the logits into
    /// `grad` (B × K). `ids[b]` is row `b`'s index in the training set (read by losses with a
    /// state per example). `Err` on a label out of range, a shape mismatch or non-finite logits.
    fn value_grad(
        &mut self,
        logits: ArrayView2<'_, T>,
        labels: &[usize],
        ids: &[usize],
        grad: ArrayViewMut2<'_, T>,
    ) -> Result<T>;
    /// Called before each epoch `epoch` of `epochs` (PS-KD's schedule of `α`).
    fn start_epoch(&mut self, epoch: usize, epochs: usize) {
        let _ = (epoch, epochs);
    }
    /// The state to checkpoint (empty for stateless losses).
    fn state(&self) -> Vec<f64> {
        Vec::new()
    }
    /// Restores [`ClassLoss::state`].
    fn set_state(&mut self, state: Vec<f64>) -> Result<()> {
        if state.is_empty() {
            Ok(())
        } else {
            Err(Error::param(
                "loss state",
                state.len(),
                "this loss keeps no state; the checkpoint belongs to another loss",
            ))
        }
    }
}

/// The classification losses by name and constants (what the command line and a saved model
/// record); [`LossSpec::build`] makes the loss.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LossSpec {
    /// Softmax cross-entropy with label smoothing `ε ∈ [0, 1)` (0: none).
    CrossEntropy {
        /// Label smoothing.
        smoothing: f64,
    },
    /// StableMax cross-entropy.
    StableMax,
    /// The Z-loss with sharpness `a > 0` and location `b`.
    ZLoss {
        /// Sharpness.
        a: f64,
        /// Location.
        b: f64,
    },
    /// Early-learning regularization.
    Elr {
        /// Weight `λ` of the regularizer.
        lambda: f64,
        /// Momentum `β` of the running target.
        beta: f64,
    },
    /// Progressive self-knowledge distillation.
    Pskd {
        /// Final weight `α_T` of the previous predictions.
        alpha_t: f64,
    },
}

impl LossSpec {
    /// The defaults of each paper by command-line name (`ce`, `stablemax`, `zloss`, `elr`,
    /// `pskd`).
    pub fn by_name(name: &str) -> Result<Self> {
        Ok(match name {
            "ce" => LossSpec::CrossEntropy { smoothing: 0.0 },
            "ls" => LossSpec::CrossEntropy { smoothing: 0.1 },
            "stablemax" => LossSpec::StableMax,
            "zloss" => LossSpec::ZLoss { a: 1.0, b: 2.0 },
            "elr" => LossSpec::Elr {
                lambda: 3.0,
                beta: 0.7,
            },
            "pskd" => LossSpec::Pskd { alpha_t: 0.8 },
            other => {
                return Err(Error::param(
                    "loss",
                    other,
                    "expected ce, ls, stablemax, zloss, elr or pskd",
                ))
            }
        })
    }

    /// The loss for a training set of `n_train` examples and `k` classes; `Err` on constants
    /// out of range.
    pub fn build<T: Real>(self, n_train: usize, k: usize) -> Result<Box<dyn ClassLoss<T>>> {
        Ok(match self {
            LossSpec::CrossEntropy { smoothing } => {
                if !(0.0..1.0).contains(&smoothing) {
                    return Err(Error::param(
                        "label smoothing",
                        smoothing,
                        "must lie in [0, 1) (e.g. 0.1)",
                    ));
                }
                Box::new(CrossEntropy { smoothing })
            }
            LossSpec::StableMax => Box::new(StableMaxCe),
            LossSpec::ZLoss { a, b } => {
                if !(a > 0.0 && a.is_finite() && b.is_finite()) {
                    return Err(Error::param(
                        "Z-loss (a, b)",
                        format!("({a}, {b})"),
                        "a must be positive and b finite (e.g. a = 1, b = 2)",
                    ));
                }
                Box::new(ZLoss { a, b })
            }
            LossSpec::Elr { lambda, beta } => {
                if !(lambda >= 0.0 && (0.0..1.0).contains(&beta)) {
                    return Err(Error::param(
                        "ELR (λ, β)",
                        format!("({lambda}, {beta})"),
                        "λ ≥ 0 and β ∈ [0, 1) (the paper: λ = 3, β = 0.7)",
                    ));
                }
                Box::new(Elr {
                    lambda,
                    beta,
                    k,
                    target: vec![0.0; n_train * k],
                })
            }
            LossSpec::Pskd { alpha_t } => {
                if !(0.0..=1.0).contains(&alpha_t) {
                    return Err(Error::param(
                        "PS-KD α_T",
                        alpha_t,
                        "must lie in [0, 1] (the paper: 0.8)",
                    ));
                }
                Box::new(Pskd {
                    alpha_t,
                    alpha: 0.0,
                    k,
                    prev: vec![0.0; n_train * k],
                })
            }
        })
    }
}

/// Checks shapes, labels and finiteness.
fn check<T: Real>(
    who: &str,
    logits: ArrayView2<'_, T>,
    labels: &[usize],
    ids: Option<(&[usize], usize)>,
    grad: &ArrayViewMut2<'_, T>,
) -> Result<()> {
    let (b, k) = logits.dim();
    crate::linalg::check_len(who, "labels", b, labels.len())?;
    if grad.dim() != (b, k) {
        return Err(Error::shape(
            who,
            "gradient buffer",
            format!("{:?}", (b, k)),
            format!("{:?}", grad.dim()),
        ));
    }
    if let Some(i) = labels.iter().position(|&l| l >= k) {
        return Err(Error::param(
            "label",
            labels[i],
            format!("{who}: labels must lie in 0..{k} (row {i})"),
        ));
    }
    if let Some((ids, n)) = ids {
        crate::linalg::check_len(who, "example indices", b, ids.len())?;
        if let Some(i) = ids.iter().position(|&j| j >= n) {
            return Err(Error::param(
                "example index",
                ids[i],
                format!("{who}: indices must lie in 0..{n}, the training-set size"),
            ));
        }
    }
    check_batch(who, "logits", b, k, logits)
}

pub use crate::linalg::log_softmax_into as log_softmax_row;

/// `−Σ q_j log p_j` for a row with the softmax in `g`, turned into the gradient `p − q`
/// (`q = (1 − w) e_y + w·other` where `other(j)` gives the soft part).
fn soft_ce_row<T: Real>(
    o: ArrayView1<'_, T>,
    mut g: ArrayViewMut1<'_, T>,
    y: usize,
    w: T,
    other: impl Fn(usize) -> T,
) -> T {
    let lse = log_softmax_row(o, g.view_mut());
    let mut loss = T::zero();
    for (j, gv) in g.iter_mut().enumerate() {
        let q = w * other(j) + if j == y { T::one() - w } else { T::zero() };
        if q != T::zero() {
            loss -= q * (o[j] - lse);
        }
        *gv -= q;
    }
    loss
}

/// Softmax cross-entropy with optional label smoothing.
#[derive(Clone, Debug)]
pub struct CrossEntropy {
    /// Label smoothing `ε`.
    pub smoothing: f64,
}

impl<T: Real> ClassLoss<T> for CrossEntropy {
    fn name(&self) -> String {
        if self.smoothing > 0.0 {
            format!("cross-entropy (label smoothing {})", self.smoothing)
        } else {
            "cross-entropy".into()
        }
    }
    fn value_grad(
        &mut self,
        logits: ArrayView2<'_, T>,
        labels: &[usize],
        _ids: &[usize],
        mut grad: ArrayViewMut2<'_, T>,
    ) -> Result<T> {
        check("CrossEntropy", logits, labels, None, &grad)?;
        let (b, k) = logits.dim();
        let (eps, inv_k, inv_b) = (T::c(self.smoothing), T::c(1.0 / k as f64), mean_scale(b));
        let mut total = T::zero();
        for ((o, g), &y) in logits.rows().into_iter().zip(grad.rows_mut()).zip(labels) {
            total += soft_ce_row(o, g, y, eps, |_| inv_k);
        }
        grad.mapv_inplace(|v| v * inv_b);
        Ok(total * inv_b)
    }
}

fn mean_scale<T: Real>(b: usize) -> T {
    T::one() / T::c(b.max(1) as f64)
}

/// StableMax cross-entropy: `s(x) = x + 1` (`x ≥ 0`), `1/(1 − x)` (`x < 0`) replaces `e^x`,
/// so probabilities decay polynomially and do not round to exactly 0 or 1 (no Softmax
/// Collapse). With `d(x) = s'(x)/s(x) = 1/(1 + |x|)` and `P_j = s(o_j)/Σ s`, the gradient is
/// `P_j d(o_j) − δ_{jy} d(o_y)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct StableMaxCe;

/// `log s(x)` of StableMax.
pub fn log_stablemax_s<T: Real>(x: T) -> T {
    if x >= T::zero() {
        x.ln_1p()
    } else {
        -(-x).ln_1p()
    }
}

impl<T: Real> ClassLoss<T> for StableMaxCe {
    fn name(&self) -> String {
        "StableMax cross-entropy".into()
    }
    fn value_grad(
        &mut self,
        logits: ArrayView2<'_, T>,
        labels: &[usize],
        _ids: &[usize],
        mut grad: ArrayViewMut2<'_, T>,
    ) -> Result<T> {
        check("StableMax", logits, labels, None, &grad)?;
        let inv_b: T = mean_scale(logits.nrows());
        let mut total = T::zero();
        for ((o, mut g), &y) in logits.rows().into_iter().zip(grad.rows_mut()).zip(labels) {
            // log Σ s(o_j) with the largest log s factored out.
            let ls: Vec<T> = o.iter().map(|&v| log_stablemax_s(v)).collect();
            let m = ls.iter().fold(T::neg_infinity(), |a, &v| a.max(v));
            let sum: T = ls.iter().map(|&v| (v - m).exp()).sum();
            let lse = m + sum.ln();
            total += lse - ls[y];
            for (j, gv) in g.iter_mut().enumerate() {
                let d = T::one() / (T::one() + o[j].abs());
                *gv = ((ls[j] - lse).exp() * d - if j == y { d } else { T::zero() }) * inv_b;
            }
        }
        Ok(total * inv_b)
    }
}

/// The Z-loss `softplus(a(b − z_y))/a` on the standardized logits `z = (o − μ)/σ`
/// (σ the population standard deviation over the classes, plus `1e-12` against a constant row).
/// Invariant to shifting and scaling the logits. With `ℓ' = −σ(a(b − z_y))` and the Jacobian
/// `∂z_i/∂o_j = (δ_ij − 1/K − z_i z_j/K)/σ`, the gradient is `ℓ'(e_y − 1/K − z_y z/K)/σ`.
#[derive(Clone, Copy, Debug)]
pub struct ZLoss {
    /// Sharpness `a`.
    pub a: f64,
    /// Location `b`.
    pub b: f64,
}

impl<T: Real> ClassLoss<T> for ZLoss {
    fn name(&self) -> String {
        format!("Z-loss (a = {}, b = {})", self.a, self.b)
    }
    fn value_grad(
        &mut self,
        logits: ArrayView2<'_, T>,
        labels: &[usize],
        _ids: &[usize],
        mut grad: ArrayViewMut2<'_, T>,
    ) -> Result<T> {
        check("ZLoss", logits, labels, None, &grad)?;
        let (b, k) = logits.dim();
        let (a, bb, kf, inv_b) = (T::c(self.a), T::c(self.b), T::c(k as f64), mean_scale(b));
        let mut total = T::zero();
        for ((o, mut g), &y) in logits.rows().into_iter().zip(grad.rows_mut()).zip(labels) {
            let mu = o.sum() / kf;
            let var = o.iter().map(|&v| (v - mu) * (v - mu)).sum::<T>() / kf;
            let sd = var.sqrt() + T::c(1e-12);
            let zy = (o[y] - mu) / sd;
            total += super::softplus(bb - zy, a);
            let dl = -super::sigmoid(a * (bb - zy)) * inv_b;
            for (j, gv) in g.iter_mut().enumerate() {
                let zj = (o[j] - mu) / sd;
                let e = if j == y { T::one() } else { T::zero() };
                *gv = dl * (e - T::one() / kf - zy * zj / kf) / sd;
            }
        }
        Ok(total * inv_b)
    }
}

/// ELR's term for one example, given its softmax `p` (K) and running target `t` (K): with
/// `p̃ = clamp(p, 1e-4, 1 − 1e-4)`, first (if `update`) `t ← βt + (1 − β)p̃/Σp̃`, then returns
/// `λ log(1 − ⟨t, p̃⟩)` and writes its gradient in the logits, `p ⊙ (q − ⟨p, q⟩)` with
/// `q_j = −λ t_j/(1 − ⟨t, p̃⟩)` where the clamp is inactive (0 elsewhere), into `d`. [`Elr`]
/// uses it with one `λ`; a self-tuning network passes each example's own.
pub fn elr_term(
    p: &[f64],
    t: &mut [f64],
    beta: f64,
    lambda: f64,
    update: bool,
    d: &mut [f64],
) -> f64 {
    let (lo, hi) = (1e-4, 1.0 - 1e-4);
    let pc: Vec<f64> = p.iter().map(|v| v.clamp(lo, hi)).collect();
    if update {
        let s: f64 = pc.iter().sum();
        for (tv, &pv) in t.iter_mut().zip(&pc) {
            *tv = beta * *tv + (1.0 - beta) * pv / s;
        }
    }
    let inner: f64 = t.iter().zip(&pc).map(|(a, b)| a * b).sum();
    let one_minus = (1.0 - inner).max(1e-12);
    let q: Vec<f64> = p
        .iter()
        .zip(t.iter())
        .map(|(&pj, &tj)| {
            if pj > lo && pj < hi {
                -lambda * tj / one_minus
            } else {
                0.0
            }
        })
        .collect();
    let pq: f64 = p.iter().zip(&q).map(|(a, b)| a * b).sum();
    for ((dv, &pj), &qj) in d.iter_mut().zip(p).zip(&q) {
        *dv = pj * (qj - pq);
    }
    lambda * one_minus.ln()
}

/// Early-learning regularization (see the [module](self) table). Per example the softmax `p` is
/// clamped to `[1e-4, 1 − 1e-4]` (`p̃`), the running target is updated first,
/// `t ← βt + (1 − β)p̃/Σp̃` (treated as a constant), then the loss is
/// `CE + λ log(1 − ⟨t, p̃⟩)`; the clamp passes no gradient outside its range.
#[derive(Clone, Debug)]
pub struct Elr {
    lambda: f64,
    beta: f64,
    k: usize,
    target: Vec<f64>,
}

impl<T: Real> ClassLoss<T> for Elr {
    fn name(&self) -> String {
        format!("ELR (λ = {}, β = {})", self.lambda, self.beta)
    }
    fn value_grad(
        &mut self,
        logits: ArrayView2<'_, T>,
        labels: &[usize],
        ids: &[usize],
        mut grad: ArrayViewMut2<'_, T>,
    ) -> Result<T> {
        let n = self.target.len() / self.k.max(1);
        check("ELR", logits, labels, Some((ids, n)), &grad)?;
        crate::linalg::check_len("ELR", "classes", self.k, logits.ncols())?;
        let inv_b: T = mean_scale(logits.nrows());
        let mut total = T::zero();
        for (((o, mut g), &y), &id) in logits
            .rows()
            .into_iter()
            .zip(grad.rows_mut())
            .zip(labels)
            .zip(ids)
        {
            total += soft_ce_row(o, g.view_mut(), y, T::zero(), |_| T::zero());
            // g = p − e_y; recover p.
            let p: Vec<f64> = g
                .iter()
                .enumerate()
                .map(|(j, &v)| v.as_f64() + if j == y { 1.0 } else { 0.0 })
                .collect();
            let t = &mut self.target[id * self.k..(id + 1) * self.k];
            let mut d = vec![0.0; self.k];
            total += T::c(elr_term(&p, t, self.beta, self.lambda, true, &mut d));
            for (gv, dv) in g.iter_mut().zip(d) {
                *gv += T::c(dv);
            }
        }
        grad.mapv_inplace(|v| v * inv_b);
        Ok(total * inv_b)
    }
    fn state(&self) -> Vec<f64> {
        self.target.clone()
    }
    fn set_state(&mut self, state: Vec<f64>) -> Result<()> {
        crate::linalg::check_len("ELR", "saved targets", self.target.len(), state.len())?;
        self.target = state;
        Ok(())
    }
}

/// Progressive self-knowledge distillation: the target of example `i` at epoch `t` (of `T`) is
/// `(1 − α_t) e_y + α_t p_prev(i)`, where `p_prev(i)` is the softmax the model gave example `i`
/// when it last saw it (the previous epoch), and `α_t = α_T·t/T`; at the first epoch `α = 0`
/// (no previous predictions). The predictions are stored after each use, as in the reference
/// code.
#[derive(Clone, Debug)]
pub struct Pskd {
    alpha_t: f64,
    alpha: f64,
    k: usize,
    prev: Vec<f64>,
}

impl<T: Real> ClassLoss<T> for Pskd {
    fn name(&self) -> String {
        format!("PS-KD (α_T = {})", self.alpha_t)
    }
    fn start_epoch(&mut self, epoch: usize, epochs: usize) {
        self.alpha = if epoch == 0 {
            0.0
        } else {
            self.alpha_t * epoch as f64 / epochs.max(1) as f64
        };
    }
    fn value_grad(
        &mut self,
        logits: ArrayView2<'_, T>,
        labels: &[usize],
        ids: &[usize],
        mut grad: ArrayViewMut2<'_, T>,
    ) -> Result<T> {
        let n = self.prev.len() / self.k.max(1);
        check("PS-KD", logits, labels, Some((ids, n)), &grad)?;
        crate::linalg::check_len("PS-KD", "classes", self.k, logits.ncols())?;
        let inv_b: T = mean_scale(logits.nrows());
        let alpha = T::c(self.alpha);
        let mut total = T::zero();
        for (((o, mut g), &y), &id) in logits
            .rows()
            .into_iter()
            .zip(grad.rows_mut())
            .zip(labels)
            .zip(ids)
        {
            let prev = &mut self.prev[id * self.k..(id + 1) * self.k];
            total += soft_ce_row(o, g.view_mut(), y, alpha, |j| T::c(prev[j]));
            // Store this prediction: p = g + q.
            for (j, (pv, &gv)) in prev.iter_mut().zip(g.iter()).enumerate() {
                let q = alpha * T::c(*pv) + if j == y { T::one() - alpha } else { T::zero() };
                *pv = (gv + q).as_f64();
            }
        }
        grad.mapv_inplace(|v| v * inv_b);
        Ok(total * inv_b)
    }
    fn state(&self) -> Vec<f64> {
        let mut s = vec![self.alpha];
        s.extend(&self.prev);
        s
    }
    fn set_state(&mut self, state: Vec<f64>) -> Result<()> {
        crate::linalg::check_len("PS-KD", "saved state", self.prev.len() + 1, state.len())?;
        self.alpha = state[0];
        self.prev = state[1..].to_vec();
        Ok(())
    }
}

/// The Huber loss `Σ_j h_δ(x_j − x*_j)` per sample, mean over the batch, with
/// `h_δ(d) = d²/2` for `|d| ≤ δ` and `δ(|d| − δ/2)` beyond.
#[derive(Clone, Copy, Debug)]
pub struct Huber {
    /// The threshold `δ > 0`.
    pub delta: f64,
}

impl<T: Real> BatchLoss<T> for Huber {
    fn name(&self) -> String {
        format!("Huber (δ = {})", self.delta)
    }
    fn value_grad(
        &self,
        x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        target: ArrayView2<'_, T>,
    ) -> Result<(T, Array2<T>)> {
        check_batch("Huber", "target", x.nrows(), x.ncols(), target)?;
        if !(self.delta > 0.0) {
            return Err(Error::param("Huber δ", self.delta, "must be positive"));
        }
        let (d, inv_b) = (T::c(self.delta), mean_scale::<T>(x.nrows()));
        let mut v = T::zero();
        let mut g = &x - &target;
        g.mapv_inplace(|e| {
            if e.abs() <= d {
                v += e * e / T::c(2.0);
                e * inv_b
            } else {
                v += d * (e.abs() - d / T::c(2.0));
                d * e.signum() * inv_b
            }
        });
        Ok((v * inv_b, g))
    }
}

//! First-order optimizers over a flat parameter vector split into named groups, each with its
//! own learning-rate scale, weight decay, ⊥Grad switch, projection and proximal step.
//!
//! One step of [`ParamOptimizer::step`], in order:
//! 1. **⊥Grad** (per group that asks for it; Prieto et al. 2025): `g ← g − (⟨g, θ⟩/‖θ‖²) θ`,
//!    rescaled to the norm of the original `g` (as in the paper's code), so the update cannot
//!    simply scale the weights up (the naive loss minimization that precedes Softmax Collapse).
//! 2. **Clipping** of the global gradient norm to `clip_norm`.
//! 3. **Weight decay**: coupled (`g ← g + λθ`) for every method except AdamW, where it is
//!    decoupled (`θ ← θ(1 − η λ)`; Loshchilov, Hutter 2019).
//! 4. **The update** with the learning rate `η = lr·schedule(t)·lr_scale`:
//!
//!    | method | update (`t` = step, from 1) |
//!    |---|---|
//!    | SGD | `b ← μb + g`; `θ ← θ − η b` (Nesterov: `θ ← θ − η(g + μb)`) |
//!    | Adam / AdamW | `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`, `θ ← θ − η m̂/(√v̂ + ε)` |
//!    | RMSprop | `v ← αv + (1−α)g²`, `θ ← θ − η g/(√v + ε)` (PyTorch's form) |
//!    | AdaBelief | `m` as Adam, `s ← β₂s + (1−β₂)(g − m)² + ε`, `θ ← θ − η m̂/(√ŝ + ε)` |
//! 5. **Projection** of the group (non-negativity, a box), **ISS-P** pruning ([`IssP`]) and
//!    its **proximal step** `θ_G ← prox_{ηw R}(θ_G)` for a core penalty `R` with weight `w`
//!    (ℓ1, nuclear norm, the group sparse envelope, …), which makes the step a
//!    proximal-gradient step on `loss + w R`. A smooth penalty (SORSA orthonormality, the
//!    generalized Gaussian with `p > 1`) enters as a gradient term: add its gradient to the
//!    group's gradient before the step.
//!
//! The state (`t`, the moment vectors) is [`OptimState`], which serializes exactly (an `f32`
//! converts to `f64` and back without loss, and JSON stores `f64` exactly), so a resumed run
//! is bit-identical to an uninterrupted one.
//!
//! # References
//! D. P. Kingma, J. Ba, "Adam", ICLR 2015; I. Loshchilov, F. Hutter, "Decoupled weight decay
//! regularization", ICLR 2019; T. Tieleman, G. Hinton, RMSprop (lecture 6.5, 2012);
//! J. Zhuang et al., "AdaBelief optimizer", NeurIPS 2020; I. Loshchilov, F. Hutter, "SGDR:
//! stochastic gradient descent with warm restarts", ICLR 2017 (cosine schedule); L. Prieto et
//! al., "Grokking at the edge of numerical stability", ICLR 2025 (⊥Grad).

use super::ParamGroupSpec;
use crate::error::{Error, Result};
use crate::func::Prox;
use crate::linalg::Real;
use ndarray::{ArrayView1, ArrayViewMut1};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;

/// The update rule and its constants.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Method {
    /// SGD with (heavy-ball or Nesterov) momentum `μ ∈ [0, 1)`.
    Sgd {
        /// Momentum.
        momentum: f64,
        /// Nesterov's variant.
        nesterov: bool,
    },
    /// Adam with coupled weight decay.
    Adam {
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// Denominator offset.
        eps: f64,
    },
    /// Adam with decoupled weight decay.
    AdamW {
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// Denominator offset.
        eps: f64,
    },
    /// RMSprop.
    RmsProp {
        /// Decay of the squared-gradient average.
        alpha: f64,
        /// Denominator offset.
        eps: f64,
    },
    /// AdaBelief.
    AdaBelief {
        /// First-moment decay.
        beta1: f64,
        /// Decay of the belief (variance of the gradient around `m`).
        beta2: f64,
        /// Offset (added inside the belief and to its root, as in the paper).
        eps: f64,
    },
}

impl Method {
    /// The usual defaults by name: `sgd` (momentum 0.9), `adam`, `adamw` (β = 0.9, 0.999,
    /// ε = 1e-8), `rmsprop` (α = 0.99, ε = 1e-8), `adabelief` (ε = 1e-16).
    pub fn by_name(name: &str) -> Result<Self> {
        Ok(match name {
            "sgd" => Method::Sgd {
                momentum: 0.9,
                nesterov: false,
            },
            "adam" => Method::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            "adamw" => Method::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            "rmsprop" => Method::RmsProp {
                alpha: 0.99,
                eps: 1e-8,
            },
            "adabelief" => Method::AdaBelief {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-16,
            },
            other => {
                return Err(Error::param(
                    "optimizer",
                    other,
                    "expected sgd, adam, adamw, rmsprop or adabelief",
                ))
            }
        })
    }

    fn check(&self) -> Result<()> {
        let unit = |name: &str, v: f64| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::param(name, v, "must lie in [0, 1)"))
            }
        };
        let pos = |v: f64| {
            if v > 0.0 {
                Ok(())
            } else {
                Err(Error::param("eps", v, "must be positive"))
            }
        };
        match *self {
            Method::Sgd { momentum, .. } => unit("momentum", momentum),
            Method::Adam { beta1, beta2, eps }
            | Method::AdamW { beta1, beta2, eps }
            | Method::AdaBelief { beta1, beta2, eps } => {
                unit("beta1", beta1)?;
                unit("beta2", beta2)?;
                pos(eps)
            }
            Method::RmsProp { alpha, eps } => {
                unit("alpha", alpha)?;
                pos(eps)
            }
        }
    }
}

/// A learning-rate schedule: the factor that multiplies the base rate at step `t` (from 0).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    /// 1.
    Constant,
    /// `factor^⌊t/every⌋`.
    Step {
        /// Steps between decays.
        every: u64,
        /// Decay factor.
        factor: f64,
    },
    /// `γ^t`.
    Exponential {
        /// Decay per step.
        gamma: f64,
    },
    /// `m + (1 − m)(1 + cos(π min(t, T)/T))/2` (cosine annealing to the floor `m` at `T`).
    Cosine {
        /// Steps `T` of the half period.
        total: u64,
        /// The floor `m` (a fraction of the base rate).
        floor: f64,
    },
}

impl LrSchedule {
    /// The factor at step `t`.
    pub fn factor(&self, t: u64) -> f64 {
        match *self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Step { every, factor } => {
                factor.powi((t / every.max(1)).min(i32::MAX as u64) as i32)
            }
            LrSchedule::Exponential { gamma } => gamma.powf(t as f64),
            LrSchedule::Cosine { total, floor } => {
                let r = t.min(total) as f64 / total.max(1) as f64;
                floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * r).cos())
            }
        }
    }
}

/// What to do after the update to a group's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Projection {
    /// Nothing.
    None,
    /// `θ ← max(θ, 0)` (e.g. the LPN's non-negative weights).
    NonNegative,
    /// `θ ← clamp(θ, lo, hi)`.
    Box {
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
}

/// The settings of one parameter group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupConfig {
    /// Name (as [`ParamGroupSpec::name`]).
    pub name: String,
    /// Its range in the parameter vector.
    pub range: Range<usize>,
    /// Multiplies the learning rate.
    pub lr_scale: f64,
    /// Weight decay `λ ≥ 0`.
    pub weight_decay: f64,
    /// ⊥Grad on this group.
    pub orthogonal: bool,
    /// Projection after the step.
    pub projection: Projection,
}

impl GroupConfig {
    /// Defaults (scale 1, no decay, no ⊥Grad, no projection) for a group.
    pub fn from_spec(spec: &ParamGroupSpec) -> Self {
        Self {
            name: spec.name.clone(),
            range: spec.range.clone(),
            lr_scale: 1.0,
            weight_decay: 0.0,
            orthogonal: false,
            projection: Projection::None,
        }
    }
}

/// The whole configuration (serializable, stored in checkpoints).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    /// Update rule.
    pub method: Method,
    /// Base learning rate.
    pub lr: f64,
    /// Schedule of the rate.
    pub schedule: LrSchedule,
    /// Clip the global gradient norm to this value.
    pub clip_norm: Option<f64>,
    /// Groups (disjoint ranges; parameters outside every group use the defaults).
    pub groups: Vec<GroupConfig>,
}

impl OptimConfig {
    /// A configuration with one group per spec, `weight_decay` on the weight groups
    /// ([`ParamGroupSpec::is_weight`]) and none on biases and gains, and `orthogonal` (⊥Grad)
    /// on every group if asked.
    pub fn for_groups(
        method: Method,
        lr: f64,
        specs: &[ParamGroupSpec],
        weight_decay: f64,
        orthogonal: bool,
    ) -> Self {
        Self {
            method,
            lr,
            schedule: LrSchedule::Constant,
            clip_norm: None,
            groups: specs
                .iter()
                .map(|s| GroupConfig {
                    weight_decay: if s.is_weight { weight_decay } else { 0.0 },
                    orthogonal,
                    ..GroupConfig::from_spec(s)
                })
                .collect(),
        }
    }
}

/// Step counter and moment vectors (stored as `f64`, exact for `f32`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimState {
    /// Steps taken.
    pub t: u64,
    /// First moments (SGD: the momentum buffer).
    pub m: Vec<f64>,
    /// Second moments (empty for SGD).
    pub v: Vec<f64>,
    /// Frozen ISS-P masks (pruned indices per ISS-P group, once its pruning stage ended).
    #[serde(default)]
    pub masks: Vec<Vec<u32>>,
}

/// Iterative soft shrinkage-percentage (ISS-P; J. Wang, H. Wang, Y. Zhang, Y. Fu, Z. Tao,
/// "Iterative soft shrinkage learning for efficient image super-resolution", ICCV 2023) on one
/// parameter group. During the pruning stage (the first `prune_steps` steps), after every
/// update the `⌈ratio·n⌉` entries of smallest magnitude (at most `⌊0.995 n⌋`, as in the
/// reference code) are multiplied by `shrink` — attenuated, not zeroed, so that a weight can
/// grow back and leave the pruned set. After the stage the last pruned set is frozen and set to
/// zero after every step (fine-tuning a sparse network). The reference code's setting:
/// `ratio = 0.95`, `shrink = 0.95`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct IssP {
    /// Fraction of the group pruned.
    pub ratio: f64,
    /// Attenuation factor of the pruned entries per step (0 gives iterative hard thresholding).
    pub shrink: f64,
    /// Steps of the pruning stage.
    pub prune_steps: u64,
}

impl IssP {
    /// The indices of the `⌈ratio·n⌉` (≤ `⌊0.995 n⌋`) smallest magnitudes of `w`.
    pub fn smallest<T: Real>(&self, w: &[T]) -> Vec<u32> {
        let n = w.len();
        let k = ((self.ratio * n as f64).ceil() as usize).min((0.995 * n as f64) as usize);
        if k == 0 {
            return Vec::new();
        }
        let mut idx: Vec<u32> = (0..n as u32).collect();
        idx.select_nth_unstable_by(k - 1, |&a, &b| {
            w[a as usize]
                .abs()
                .partial_cmp(&w[b as usize].abs())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        idx.truncate(k);
        idx.sort_unstable();
        idx
    }
}

/// A proximal step attached to a group.
struct GroupProx<T: Real> {
    group: usize,
    weight: f64,
    prox: Arc<dyn Prox<T>>,
}

/// The optimizer (see the [module](self) docs).
pub struct ParamOptimizer<T: Real = f64> {
    config: OptimConfig,
    /// Group of each parameter (`groups.len()` for the defaults).
    owner: Vec<usize>,
    m: Vec<T>,
    v: Vec<T>,
    t: u64,
    work: Vec<T>,
    proxes: Vec<GroupProx<T>>,
    /// ISS-P per group index, with the frozen mask once the stage ended.
    prunes: Vec<(usize, IssP, Option<Vec<u32>>)>,
}

impl<T: Real> std::fmt::Debug for ParamOptimizer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamOptimizer")
            .field("config", &self.config)
            .field("t", &self.t)
            .field("proxes", &self.proxes.len())
            .finish()
    }
}

impl<T: Real> ParamOptimizer<T> {
    /// An optimizer for `n` parameters. `Err` on constants out of range or overlapping or
    /// out-of-bounds groups.
    pub fn new(config: OptimConfig, n: usize) -> Result<Self> {
        config.method.check()?;
        if !(config.lr > 0.0 && config.lr.is_finite()) {
            return Err(Error::param(
                "learning rate",
                config.lr,
                "must be positive (e.g. 1e-3)",
            ));
        }
        if let Some(c) = config.clip_norm {
            if !(c > 0.0) {
                return Err(Error::param("clip norm", c, "must be positive"));
            }
        }
        let mut owner = vec![config.groups.len(); n];
        for (gi, g) in config.groups.iter().enumerate() {
            if g.range.end > n || g.range.start > g.range.end {
                return Err(Error::param(
                    "parameter group",
                    format!("{} {:?}", g.name, g.range),
                    format!("the range must lie within the {n} parameters"),
                ));
            }
            if !(g.weight_decay >= 0.0 && g.lr_scale >= 0.0) {
                return Err(Error::param(
                    "parameter group",
                    &g.name,
                    "weight decay and learning-rate scale must be non-negative",
                ));
            }
            for o in &mut owner[g.range.clone()] {
                if *o != config.groups.len() {
                    return Err(Error::param(
                        "parameter group",
                        &g.name,
                        "groups must not overlap",
                    ));
                }
                *o = gi;
            }
        }
        let second = !matches!(config.method, Method::Sgd { .. });
        Ok(Self {
            config,
            owner,
            m: vec![T::zero(); n],
            v: vec![T::zero(); if second { n } else { 0 }],
            t: 0,
            work: vec![T::zero(); n],
            proxes: Vec::new(),
            prunes: Vec::new(),
        })
    }

    /// Adds the proximal step of `weight·R` after each update of the group named `group`.
    pub fn with_prox(mut self, group: &str, weight: f64, prox: Arc<dyn Prox<T>>) -> Result<Self> {
        let gi = self.group_index(group)?;
        if !(weight >= 0.0) {
            return Err(Error::param(
                "penalty weight",
                weight,
                "must be non-negative",
            ));
        }
        self.proxes.push(GroupProx {
            group: gi,
            weight,
            prox,
        });
        Ok(self)
    }

    /// Prunes the group named `group` by ISS-P (see [`IssP`]). `Err` on an unknown group or
    /// a ratio or factor outside `[0, 1]`.
    pub fn with_iss_p(mut self, group: &str, iss: IssP) -> Result<Self> {
        let gi = self.group_index(group)?;
        if !((0.0..=1.0).contains(&iss.ratio) && (0.0..=1.0).contains(&iss.shrink)) {
            return Err(Error::param(
                "ISS-P",
                format!("ratio {}, shrink {}", iss.ratio, iss.shrink),
                "both must lie in [0, 1] (the paper: 0.95, 0.95)",
            ));
        }
        self.prunes.push((gi, iss, None));
        Ok(self)
    }

    fn group_index(&self, group: &str) -> Result<usize> {
        self.config
            .groups
            .iter()
            .position(|g| g.name == group)
            .ok_or_else(|| {
                Error::param(
                    "group",
                    group,
                    format!(
                        "no such parameter group; the groups are {:?}",
                        self.config
                            .groups
                            .iter()
                            .map(|g| g.name.as_str())
                            .collect::<Vec<_>>()
                    ),
                )
            })
    }

    /// The configuration.
    pub fn config(&self) -> &OptimConfig {
        &self.config
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// The learning rate of the next step (before the group scale).
    pub fn current_lr(&self) -> f64 {
        self.config.lr * self.config.schedule.factor(self.t)
    }

    /// The state for a checkpoint.
    pub fn state(&self) -> OptimState {
        OptimState {
            t: self.t,
            m: self.m.iter().map(|v| v.as_f64()).collect(),
            v: self.v.iter().map(|v| v.as_f64()).collect(),
            masks: self
                .prunes
                .iter()
                .map(|(_, _, m)| m.clone().unwrap_or_default())
                .collect(),
        }
    }

    /// Restores [`ParamOptimizer::state`]; `Err` if the lengths do not fit.
    pub fn set_state(&mut self, s: OptimState) -> Result<()> {
        crate::linalg::check_len("optimizer state", "first moments", self.m.len(), s.m.len())?;
        crate::linalg::check_len("optimizer state", "second moments", self.v.len(), s.v.len())?;
        self.t = s.t;
        self.m = s.m.into_iter().map(T::c).collect();
        self.v = s.v.into_iter().map(T::c).collect();
        for (k, (_, iss, mask)) in self.prunes.iter_mut().enumerate() {
            *mask = (s.t > iss.prune_steps).then(|| s.masks.get(k).cloned().unwrap_or_default());
        }
        Ok(())
    }

    fn group_params(&self, gi: usize) -> (f64, f64) {
        self.config
            .groups
            .get(gi)
            .map_or((1.0, 0.0), |g| (g.lr_scale, g.weight_decay))
    }

    /// One step (see the [module](self) docs). `Err` on a length mismatch or a non-finite
    /// gradient, and then nothing changes.
    pub fn step(&mut self, params: &mut [T], grad: &[T]) -> Result<()> {
        let n = self.owner.len();
        crate::linalg::check_len("ParamOptimizer::step", "parameters", n, params.len())?;
        crate::linalg::check_len("ParamOptimizer::step", "gradient", n, grad.len())?;
        if let Some(i) = grad.iter().position(|g| !g.is_finite()) {
            return Err(Error::NonFinite {
                what: "gradient".into(),
                index: i,
                value: grad[i].to_string(),
            });
        }
        let mut g = std::mem::take(&mut self.work);
        g.copy_from_slice(grad);
        for grp in self.config.groups.iter().filter(|g| g.orthogonal) {
            orthogonalize(&mut g[grp.range.clone()], &params[grp.range.clone()]);
        }
        if let Some(c) = self.config.clip_norm {
            clip_grad_norm(&mut g, T::c(c));
        }
        let lr = self.current_lr();
        self.t += 1;
        let t = self.t.min(i32::MAX as u64) as i32;
        let one = T::one();
        match self.config.method {
            Method::Sgd { momentum, nesterov } => {
                let mu = T::c(momentum);
                for i in 0..n {
                    let (sc, wd) = self.group_params(self.owner[i]);
                    let gi = g[i] + T::c(wd) * params[i];
                    self.m[i] = mu * self.m[i] + gi;
                    let d = if nesterov {
                        gi + mu * self.m[i]
                    } else {
                        self.m[i]
                    };
                    params[i] -= T::c(lr * sc) * d;
                }
            }
            Method::Adam { beta1, beta2, eps }
            | Method::AdamW { beta1, beta2, eps }
            | Method::AdaBelief { beta1, beta2, eps } => {
                let decoupled = matches!(self.config.method, Method::AdamW { .. });
                let belief = matches!(self.config.method, Method::AdaBelief { .. });
                let (b1, b2, e) = (T::c(beta1), T::c(beta2), T::c(eps));
                let c1 = one - b1.powi(t);
                let c2 = one - b2.powi(t);
                for i in 0..n {
                    let (sc, wd) = self.group_params(self.owner[i]);
                    let eta = T::c(lr * sc);
                    let mut gi = g[i];
                    if decoupled {
                        params[i] *= one - eta * T::c(wd);
                    } else {
                        gi += T::c(wd) * params[i];
                    }
                    self.m[i] = b1 * self.m[i] + (one - b1) * gi;
                    self.v[i] = if belief {
                        let d = gi - self.m[i];
                        b2 * self.v[i] + (one - b2) * d * d + e
                    } else {
                        b2 * self.v[i] + (one - b2) * gi * gi
                    };
                    params[i] -= eta * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + e);
                }
            }
            Method::RmsProp { alpha, eps } => {
                let (a, e) = (T::c(alpha), T::c(eps));
                for i in 0..n {
                    let (sc, wd) = self.group_params(self.owner[i]);
                    let gi = g[i] + T::c(wd) * params[i];
                    self.v[i] = a * self.v[i] + (one - a) * gi * gi;
                    params[i] -= T::c(lr * sc) * gi / (self.v[i].sqrt() + e);
                }
            }
        }
        self.work = g;
        for grp in &self.config.groups {
            let r = grp.range.clone();
            match grp.projection {
                Projection::None => {}
                Projection::NonNegative => params[r].iter_mut().for_each(|v| *v = v.max(T::zero())),
                Projection::Box { lo, hi } => params[r]
                    .iter_mut()
                    .for_each(|v| *v = v.max(T::c(lo)).min(T::c(hi))),
            }
        }
        let t_now = self.t;
        for (gi, iss, mask) in &mut self.prunes {
            let r = self.config.groups[*gi].range.clone();
            let w = &mut params[r];
            if t_now <= iss.prune_steps {
                let small = iss.smallest(w);
                let f = T::c(iss.shrink);
                small.iter().for_each(|&i| w[i as usize] *= f);
                if t_now == iss.prune_steps {
                    *mask = Some(small);
                }
            } else {
                let m = mask.get_or_insert_with(|| iss.smallest(w));
                m.iter().for_each(|&i| w[i as usize] = T::zero());
            }
        }
        for gp in &self.proxes {
            let grp = &self.config.groups[gp.group];
            let gamma = T::c(lr * grp.lr_scale * gp.weight);
            if gamma > T::zero() {
                let r = grp.range.clone();
                let x = params[r.clone()].to_vec();
                gp.prox.prox_into(
                    ArrayViewMut1::from(&mut params[r]),
                    ArrayView1::from(&x),
                    gamma,
                )?;
            }
        }
        Ok(())
    }
}

/// ⊥Grad on one group: removes from `g` its component along `w` and restores the norm of `g`
/// (`ε = 1e-30` in both denominators, as in the paper's code).
pub fn orthogonalize<T: Real>(g: &mut [T], w: &[T]) {
    let tiny = T::c(1e-30);
    let ww: T = w.iter().map(|&v| v * v).sum::<T>() + tiny;
    let wg: T = w.iter().zip(g.iter()).map(|(&a, &b)| a * b).sum();
    let gn = g.iter().map(|&v| v * v).sum::<T>().sqrt();
    let proj = wg / ww;
    g.iter_mut().zip(w).for_each(|(gv, &wv)| *gv -= proj * wv);
    let on = g.iter().map(|&v| v * v).sum::<T>().sqrt() + tiny;
    let s = gn / on;
    g.iter_mut().for_each(|v| *v *= s);
}

/// Scales `g` so that its Euclidean norm is at most `max_norm`; returns the norm before.
pub fn clip_grad_norm<T: Real>(g: &mut [T], max_norm: T) -> T {
    let norm = g.iter().map(|&v| v * v).sum::<T>().sqrt();
    if norm > max_norm {
        let s = max_norm / norm;
        g.iter_mut().for_each(|v| *v *= s);
    }
    norm
}

//! STN on the digits MLP: a dropout rate per hidden layer, the standard deviation of Gaussian
//! input noise, label smoothing, a weight decay per dense layer and optionally the weight of
//! early-learning regularization (ELR, a loss hyperparameter of the core's losses), tuned online
//! for the validation cross-entropy (the MLP setting of MacKay et al. 2019 and pomonam's
//! examples, on the shipped 8×8 digits with the fixed split of
//! `hyperprox_core::nn::train::digits_split`).
//!
//! Network: `x (+ noise) → StnDense → ReLU → Dropout → … → StnDense → logits`; every dense
//! layer reads the unconstrained hyperparameters (the first `H` context columns), the dropout
//! layers their rates (the following columns).
//!
//! * **Training step** (training mode): per example `ũ = u + σ ⊙ ε`, except the weight decay,
//!   drawn once per minibatch; the input noise, the smoothing and the dropout masks use the
//!   example's values; the loss is the smoothed cross-entropy plus
//!   `(1/B) Σ_i ½ wd ‖W_eff(ũ_i)‖²` over the dense layers (`StnDense::decay_penalty`); Adam
//!   on the network.
//! * **Hyper step** (evaluation mode: no dropout, noise or smoothing; MacKay et al.'s
//!   validation step): the cross-entropy on a validation minibatch at `u` (or per-example
//!   perturbed `ũ` when the scales are tuned); its gradient in `u` is the network's context VJP,
//!   the only path (the "response gradient"); `L_V − τH` by the hyper optimizer.
//! * **Delta-STN** (`delta`; Bae & Grosse 2020, `DeltaStnStepOptimizer` of pomonam's code):
//!   the gates read `δ = ũ − u`, so the network at `u` is the elementary one. Each training
//!   step is a *general* step (the elementary weights, at `u`, no perturbation) then a
//!   *response* step (the hyper weights and gates, at `ũ`) on the prediction linearized in
//!   `δ`: `f(x; 0) + (∂f/∂δ)·δ`, computed by forward mode ([`DigitsStn::linearized`]). Two
//!   Adam states, one per parameter set. The hyper step is STN's at context `δ` (the gradient
//!   in `u` passes through `δ = ũ − u` with `u` in `ũ` held, as the reference code's
//!   `detach`).
//! * **ELR** (`elr`): `+ λ_i log(1 − ⟨t_i, p_i⟩)` with each example's own perturbed `λ_i` and
//!   the running targets `t_i` in the state (`hyperprox_core::nn::loss::elr_term`).
//! * **Early stopping**: the full validation loss every `eval_every` steps; the best state is
//!   kept and the run stops after `patience` evaluations without improvement.
//! * **Baselines** ([`train_fixed`]): the same network with its gates frozen at zero (the plain
//!   MLP, bit for bit) and the hyperparameters fixed; grid and random search split the same
//!   total number of training steps among their runs.

use crate::hyper::{Hyper, HyperSet, Range};
use crate::layer::StnDense;
use hyperprox_core::diff::{batch_seed, Differentiable};
use hyperprox_core::error::{Error, Result};
use hyperprox_core::linalg::{log_softmax_into, sigmoid};
use hyperprox_core::nn::loss::elr_term;
use hyperprox_core::nn::optim::{Method, OptimState, ParamOptimizer};
use hyperprox_core::nn::train::{Labelled, Split};
use hyperprox_core::nn::{Act, Activation, DropRate, Dropout, DropoutControl, Layer, Sequential};
use ndarray::{s, Array2, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Indices of the hyperparameters after the dropout rates (then one weight decay per dense
/// layer, then ELR's weight when enabled).
const NOISE: usize = 0;
const SMOOTH: usize = 1;
const DECAY: usize = 2;
/// ELR's running-target momentum by default (the reference code's `β`).
pub const ELR_BETA: f64 = 0.7;

fn elr_beta_default() -> f64 {
    ELR_BETA
}

/// Settings. Defaults: hidden 128-128; 3000 training steps, warm-up 100, 5 training steps per
/// hyper step; batch 64; Adam 1e-3 on the network, Adam 3e-3 on the hyperparameters and scales
/// (the STN code's choice); τ = 1e-3; initial dropout 0.05 (range (0, 0.95)), input noise 0.05
/// (range (0, 1)), label smoothing 0.05 (range (0, 0.5)), weight decay 1e-4 (exp); initial
/// scale 1.0 (the MLP setting); validation every 100 steps, patience 10.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DigitsConfig {
    /// Hidden widths.
    pub hidden: Vec<usize>,
    /// Training steps at most.
    pub steps: u64,
    /// Training steps before the first hyper step.
    pub warmup: u64,
    /// Training steps per hyper step.
    pub train_per_hyper: u64,
    /// Minibatch size.
    pub batch: usize,
    /// Adam learning rate of the network.
    pub lr_weights: f64,
    /// Learning rate of the hyperparameters (Adam).
    pub lr_hyper: f64,
    /// Entropy weight τ.
    pub tau: f64,
    /// Tune the perturbation scales.
    pub tune_scales: bool,
    /// Initial perturbation scale.
    pub initial_scale: f64,
    /// Initial values: dropout (every layer), input noise, label smoothing, weight decay (every
    /// dense layer).
    pub initial: [f64; 4],
    /// Full validation every this many steps.
    pub eval_every: u64,
    /// Evaluations without improvement before stopping.
    pub patience: usize,
    /// Seed.
    pub seed: u64,
    /// Delta-STN (Bae & Grosse 2020): the gates read the centered perturbation `ũ − u`, so the
    /// network at the current hyperparameters is the elementary one; each training step is a
    /// general step (elementary weights, unperturbed `u`) and a response step (hyper weights
    /// and gates, perturbed `ũ`, on the prediction linearized in the perturbation).
    #[serde(default)]
    pub delta: bool,
    /// Also tune early-learning regularization's weight `λ` (Liu et al. 2020; the loss
    /// `+ λ log(1 − ⟨t, p⟩)` with a running target per training example, β = 0.7), in (0, 10)
    /// from this initial value; `None`: no ELR. The network must be made with
    /// [`DigitsStn::for_config`].
    #[serde(default)]
    pub elr: Option<f64>,
    /// ELR's target momentum `β ∈ [0, 1)` (default 0.7).
    #[serde(default = "elr_beta_default")]
    pub elr_beta: f64,
}

impl Default for DigitsConfig {
    fn default() -> Self {
        Self {
            hidden: vec![128, 128],
            steps: 3000,
            warmup: 100,
            train_per_hyper: 5,
            batch: 64,
            lr_weights: 1e-3,
            lr_hyper: 3e-3,
            tau: 1e-3,
            tune_scales: true,
            initial_scale: 1.0,
            initial: [0.05, 0.05, 0.05, 1e-4],
            eval_every: 100,
            patience: 10,
            seed: 0,
            delta: false,
            elr: None,
            elr_beta: ELR_BETA,
        }
    }
}

/// A full evaluation (evaluation mode, at the unperturbed hyperparameters).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Eval {
    /// Training steps done.
    pub step: u64,
    /// Validation cross-entropy.
    pub val_loss: f64,
    /// Test cross-entropy.
    pub test_loss: f64,
    /// Test accuracy.
    pub test_accuracy: f64,
    /// Hyperparameter values.
    pub values: Vec<f64>,
}

/// The run's state (the checkpoint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DigitsState {
    /// Network parameters.
    pub params: Vec<f64>,
    /// Hyperparameters.
    pub hypers: HyperSet,
    /// Optimizer states (network, `[u; s]`); with Delta-STN the network's covers the
    /// elementary weights only.
    pub opt: (OptimState, OptimState),
    /// Delta-STN: the optimizer state of the response parameters (hyper weights and gates).
    #[serde(default)]
    pub opt_response: Option<OptimState>,
    /// ELR's running targets (training examples × 10; empty without ELR).
    #[serde(default)]
    pub elr_targets: Vec<f64>,
    /// Training steps done.
    pub step: u64,
    /// Evaluations so far.
    pub evals: Vec<Eval>,
    /// Best evaluation's parameters and hyperparameters.
    pub best: Option<(Vec<f64>, HyperSet, Eval)>,
    /// Evaluations since the best.
    pub since_best: usize,
    /// Whether early stopping ended the run.
    pub stopped: bool,
    /// The configuration.
    pub config: DigitsConfig,
}

/// The STN MLP on a split of labelled data.
pub struct DigitsStn<'a> {
    data: &'a Split<f64>,
    net: Sequential<f64>,
    dense: Vec<(Arc<StnDense>, std::ops::Range<usize>)>,
    control: Arc<DropoutControl>,
    n_hyper: usize,
    n_drop: usize,
    elr: bool,
    /// For each layer of `net`, its index in `dense` if it is an STN layer.
    stn_at: Vec<Option<usize>>,
    /// Indices of the elementary (general) and the response parameters.
    general: Vec<usize>,
    response: Vec<usize>,
}

fn adam() -> Method {
    Method::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    }
}

use crate::flat_optimizer as optim;

impl<'a> DigitsStn<'a> {
    /// The network for `data` with `hidden` widths (10 classes), without ELR.
    pub fn new(data: &'a Split<f64>, hidden: &[usize], seed: u64) -> Result<Self> {
        Self::build(data, hidden, seed, false)
    }

    /// The network of `cfg` (its widths, seed, and ELR's weight among the hyperparameters
    /// when `cfg.elr` is set).
    pub fn for_config(data: &'a Split<f64>, cfg: &DigitsConfig) -> Result<Self> {
        Self::build(data, &cfg.hidden, cfg.seed, cfg.elr.is_some())
    }

    fn build(data: &'a Split<f64>, hidden: &[usize], seed: u64, elr: bool) -> Result<Self> {
        if hidden.is_empty() || hidden.contains(&0) {
            return Err(Error::param(
                "hidden widths",
                format!("{hidden:?}"),
                "need at least one hidden layer, each of width ≥ 1",
            ));
        }
        let classes = 10usize;
        let n_drop = hidden.len();
        let n_hyper = num_hypers(n_drop) + usize::from(elr);
        let width = n_hyper + n_drop;
        let control = DropoutControl::new(seed);
        let mut layers: Vec<Arc<dyn Layer<f64>>> = vec![];
        let mut dense = vec![];
        let mut stn_at = vec![];
        let (mut general, mut response) = (vec![], vec![]);
        let mut start = 0;
        let mut n_in = data.train.x.ncols();
        for (k, &h) in hidden.iter().chain(std::iter::once(&classes)).enumerate() {
            let d = Arc::new(StnDense::new(n_in, h, n_hyper).with_context_width(width));
            let np = Differentiable::<f64>::num_params(d.as_ref());
            let e = d.elementary_len();
            general.extend(start..start + e);
            response.extend(start + e..start + np);
            stn_at.push(Some(dense.len()));
            dense.push((d.clone(), start..start + np));
            start += np;
            layers.push(d);
            if k < hidden.len() {
                layers.push(Arc::new(Act::new(h, Activation::Relu)?));
                let rate = DropRate::Context(n_hyper + k);
                layers.push(Arc::new(Dropout::new(h, rate, control.clone(), k as u64)?));
                stn_at.extend([None, None]);
            }
            n_in = h;
        }
        Ok(Self {
            data,
            net: Sequential::new(layers)?,
            dense,
            control,
            n_hyper,
            n_drop,
            elr,
            stn_at,
            general,
            response,
        })
    }

    /// The network (a core `Sequential`; context: `u` then the dropout rates).
    pub fn network(&self) -> &Sequential<f64> {
        &self.net
    }

    /// The dropout control (training or evaluation mode).
    pub fn control(&self) -> &Arc<DropoutControl> {
        &self.control
    }

    /// The context of unconstrained rows `u` (B × H): `u` (Delta-STN, `centered`: `u` minus
    /// the current values), then the dropout rates at `u`.
    pub fn context_of(&self, hypers: &HyperSet, u: &Array2<f64>, centered: bool) -> Array2<f64> {
        self.context(hypers, u, centered)
    }

    /// Number of network parameters.
    pub fn num_params(&self) -> usize {
        self.net.num_params()
    }

    /// The hyperparameter set at the configuration's initial values.
    pub fn hypers(&self, cfg: &DigitsConfig) -> Result<HyperSet> {
        let sc = cfg.initial_scale;
        let mut v = vec![];
        for k in 0..self.n_drop {
            let r = Range::Sigmoid { lo: 0.0, hi: 0.95 };
            v.push(Hyper::new(
                format!("dropout{}", k + 1),
                r,
                cfg.initial[0],
                sc,
            )?);
        }
        v.push(Hyper::new(
            "input_noise",
            Range::Sigmoid { lo: 0.0, hi: 1.0 },
            cfg.initial[1],
            sc,
        )?);
        v.push(Hyper::new(
            "label_smoothing",
            Range::Sigmoid { lo: 0.0, hi: 0.5 },
            cfg.initial[2],
            sc,
        )?);
        for k in 0..=self.n_drop {
            let name = format!("weight_decay{}", k + 1);
            v.push(Hyper::new(name, Range::Exp, cfg.initial[3], sc)?);
        }
        if self.elr {
            let r = Range::Sigmoid { lo: 0.0, hi: 10.0 };
            let init = cfg.elr.unwrap_or(3.0);
            v.push(Hyper::new("elr_lambda", r, init, sc)?);
        }
        HyperSet::new(v)
    }

    /// The initial state.
    pub fn init(&self, cfg: &DigitsConfig) -> Result<DigitsState> {
        check_config(cfg)?;
        self.check_elr(cfg)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
        let params = self.net.init_params(&mut rng);
        let (nw, opt_response) = if cfg.delta {
            let r = optim(adam(), cfg.lr_weights, self.response.len())?.state();
            (self.general.len(), Some(r))
        } else {
            (params.len(), None)
        };
        Ok(DigitsState {
            opt: (
                optim(adam(), cfg.lr_weights, nw)?.state(),
                optim(adam(), cfg.lr_hyper, 2 * self.n_hyper)?.state(),
            ),
            opt_response,
            elr_targets: if self.elr {
                vec![0.0; 10 * self.data.train.y.len()]
            } else {
                vec![]
            },
            params,
            hypers: self.hypers(cfg)?,
            step: 0,
            evals: vec![],
            best: None,
            since_best: 0,
            stopped: false,
            config: cfg.clone(),
        })
    }

    /// The context (B × (H + dropout layers)) of the unconstrained rows `u`: `u` (centered:
    /// `u` minus the current values) then the dropout rates.
    fn context(&self, hypers: &HyperSet, u: &Array2<f64>, centered: bool) -> Array2<f64> {
        let mut c = Array2::zeros((u.nrows(), self.n_hyper + self.n_drop));
        c.slice_mut(s![.., ..self.n_hyper]).assign(u);
        if centered {
            c.slice_mut(s![.., ..self.n_hyper])
                .zip_mut_with(&hypers.repeated(u.nrows()), |a, b| *a -= b);
        }
        for k in 0..self.n_drop {
            let r = hypers.hypers[k].range;
            let col = u.column(k).mapv(|v| r.map(v));
            c.column_mut(self.n_hyper + k).assign(&col);
        }
        c
    }

    /// Smoothed cross-entropy (mean over rows) and its gradient in the logits.
    fn loss(logits: ArrayView2<'_, f64>, y: &[usize], smooth: &[f64]) -> (f64, Array2<f64>) {
        let (b, k) = logits.dim();
        let mut g = Array2::zeros((b, k));
        let mut total = 0.0;
        for i in 0..b {
            let mut p = g.row_mut(i);
            let lse = log_softmax_into(logits.row(i), p.view_mut());
            let e = smooth[i];
            for j in 0..k {
                let t = (1.0 - e) * f64::from(j == y[i]) + e / k as f64;
                total += t * (lse - logits[[i, j]]);
                p[j] = (p[j] - t) / b as f64;
            }
        }
        (total / b as f64, g)
    }

    /// Cross-entropy and accuracy of `params` at `u` on `set` (evaluation mode; `centered`:
    /// Delta-STN's gates).
    pub fn evaluate(
        &self,
        params: &[f64],
        hypers: &HyperSet,
        set: &Labelled<f64>,
        centered: bool,
    ) -> Result<(f64, f64)> {
        self.control.set_training(false);
        let c = self.context(hypers, &hypers.repeated(set.x.nrows()), centered);
        let logits = self.net.forward(params, set.x.view(), c.view())?;
        let (loss, _) = Self::loss(logits.view(), &set.y, &vec![0.0; set.y.len()]);
        let correct = logits
            .rows()
            .into_iter()
            .zip(&set.y)
            .filter(|(r, &y)| {
                let best = (0..r.len())
                    .max_by(|&a, &b| r[a].total_cmp(&r[b]))
                    .unwrap_or(0);
                best == y
            })
            .count();
        Ok((loss, correct as f64 / set.y.len() as f64))
    }

    /// A training minibatch: indices drawn from `rng`.
    fn draw(&self, batch: usize, rng: &mut rand::rngs::StdRng) -> Vec<usize> {
        (0..batch)
            .map(|_| rng.random_range(0..self.data.train.y.len()))
            .collect()
    }

    /// The minibatch `idx` at the rows `ut`: inputs with Gaussian noise, labels, smoothing per
    /// example, the weight decay of each dense layer (of the first row) and ELR's weight per
    /// example (empty without ELR).
    fn prepare(
        &self,
        hypers: &HyperSet,
        idx: &[usize],
        ut: &Array2<f64>,
        rng: &mut rand::rngs::StdRng,
    ) -> Prepared {
        let nd = self.n_drop;
        let mut x = self.data.train.x.select(Axis(0), idx);
        let y: Vec<usize> = idx.iter().map(|&i| self.data.train.y[i]).collect();
        let map = |j: usize, v: f64| hypers.hypers[j].range.map(v);
        for (i, mut row) in x.rows_mut().into_iter().enumerate() {
            let sd = map(nd + NOISE, ut[[i, nd + NOISE]]);
            for v in row.iter_mut() {
                let e: f64 = StandardNormal.sample(&mut *rng);
                *v += sd * e;
            }
        }
        let smooth: Vec<f64> = (0..idx.len())
            .map(|i| map(nd + SMOOTH, ut[[i, nd + SMOOTH]]))
            .collect();
        let wd = (0..=nd)
            .map(|k| map(nd + DECAY + k, ut[[0, nd + DECAY + k]]))
            .collect();
        let elr = match self.elr_col() {
            Some(j) => (0..idx.len()).map(|i| map(j, ut[[i, j]])).collect(),
            None => vec![],
        };
        Prepared {
            x,
            y,
            smooth,
            wd,
            elr,
        }
    }

    /// The column of ELR's weight.
    fn elr_col(&self) -> Option<usize> {
        self.elr.then_some(self.n_hyper - 1)
    }

    fn check_elr(&self, cfg: &DigitsConfig) -> Result<()> {
        if self.elr != cfg.elr.is_some() {
            return Err(Error::param(
                "elr",
                format!("{:?}", cfg.elr),
                "the network was made for another ELR setting: make it with DigitsStn::for_config",
            ));
        }
        Ok(())
    }

    /// Adds ELR's term with each example's weight to the mean loss and its logit gradient
    /// `g` (already divided by the batch size); `update`: advance the examples' targets.
    #[allow(clippy::too_many_arguments)]
    fn add_elr(
        &self,
        beta: f64,
        targets: &mut [f64],
        logits: ArrayView2<'_, f64>,
        idx: &[usize],
        lambdas: &[f64],
        update: bool,
        g: &mut Array2<f64>,
    ) -> f64 {
        let (b, k) = logits.dim();
        let mut total = 0.0;
        let mut p = vec![0.0; k];
        let mut d = vec![0.0; k];
        for i in 0..b {
            let mut pv = ndarray::ArrayViewMut1::from(&mut p[..]);
            let lse = log_softmax_into(logits.row(i), pv.view_mut());
            for (j, v) in p.iter_mut().enumerate() {
                *v = (logits[[i, j]] - lse).exp();
            }
            let t = &mut targets[idx[i] * k..(idx[i] + 1) * k];
            total += elr_term(&p, t, beta, lambdas[i], update, &mut d);
            for (gv, dv) in g.row_mut(i).iter_mut().zip(&d) {
                *gv += dv / b as f64;
            }
        }
        total / b as f64
    }

    /// Adds the weight decay of the effective weights at the context `c` (layer `k`'s decay
    /// `wd[k]`) to `gp`; returns it.
    fn add_decay(
        &self,
        p: &[f64],
        c: ArrayView2<'_, f64>,
        wd: &[f64],
        gp: &mut [f64],
    ) -> Result<f64> {
        let mut total = 0.0;
        for ((d, r), &w) in self.dense.iter().zip(wd) {
            let wds = vec![w; c.nrows()];
            total += d
                .decay_penalty(&p[r.clone()], c, &wds, &mut gp[r.clone()])?
                .0;
        }
        Ok(total)
    }

    fn check_step(loss: f64, gp: &[f64], what: &str, step: u64) -> Result<()> {
        if !loss.is_finite() || gp.iter().any(|v| !v.is_finite()) {
            return Err(Error::Diverged {
                method: what.into(),
                iteration: step as usize + 1,
                detail: format!("loss {loss}; lower the learning rate"),
            });
        }
        Ok(())
    }

    /// One training step at the rows `ut` (the weight-decay column constant): the loss and its
    /// gradient in every parameter (STN), the elementary ones (`frozen`: the plain MLP), or,
    /// with Delta-STN (`centered`), the general step at `ut = u`.
    fn train_step(
        &self,
        st: &mut DigitsState,
        idx: &[usize],
        ut: &Array2<f64>,
        frozen: bool,
        rng: &mut rand::rngs::StdRng,
    ) -> Result<(f64, Vec<f64>)> {
        let centered = st.config.delta;
        let b = self.prepare(&st.hypers, idx, ut, rng);
        let c = self.context(&st.hypers, ut, centered);
        self.control.set_training(true);
        self.control.set_step(st.step);
        let logits = self.net.forward(&st.params, b.x.view(), c.view())?;
        let (mut loss, mut g) = Self::loss(logits.view(), &b.y, &b.smooth);
        if self.elr {
            let (beta, t) = (st.config.elr_beta, &mut st.elr_targets);
            loss += self.add_elr(beta, t, logits.view(), idx, &b.elr, true, &mut g);
        }
        let mut gp = vec![0.0; st.params.len()];
        self.net
            .vjp(&st.params, b.x.view(), c.view(), g.view(), &mut gp)?;
        loss += self.add_decay(&st.params, c.view(), &b.wd, &mut gp)?;
        if frozen {
            // The plain MLP: only the elementary weights and biases learn.
            for &i in &self.response {
                gp[i] = 0.0;
            }
        }
        Self::check_step(loss, &gp, "STN training step", st.step)?;
        Ok((loss, gp))
    }

    /// Indices of the response parameters (the STN layers' hyper weights, hyper biases and
    /// gates), which Delta-STN's response step trains; the others are the general ones.
    pub fn response_params(&self) -> &[usize] {
        &self.response
    }

    fn check_rows(&self, idx: &[usize], ut: &Array2<f64>) -> Result<()> {
        let n = self.data.train.y.len();
        if let Some(&i) = idx.iter().find(|&&i| i >= n) {
            return Err(Error::param(
                "minibatch index",
                i,
                format!("the training set has {n} examples"),
            ));
        }
        hyperprox_core::linalg::check_len("STN digits", "rows of ũ", idx.len(), ut.nrows())?;
        hyperprox_core::linalg::check_len("STN digits", "columns of ũ", self.n_hyper, ut.ncols())
    }

    /// Parameter offsets of the network's layers (one more than layers).
    fn offsets(&self) -> Vec<usize> {
        let mut offsets = vec![0];
        for l in self.net.layers() {
            offsets.push(offsets.last().copied().unwrap_or(0) + l.num_params());
        }
        offsets
    }

    /// The context `cd` with its gate columns set to zero.
    fn uncentered_zero(&self, cd: ArrayView2<'_, f64>) -> Array2<f64> {
        let mut c0 = cd.to_owned();
        c0.slice_mut(s![.., ..self.n_hyper]).fill(0.0);
        c0
    }

    /// Delta-STN's linearization at a centered context `cd` (gate columns `δ`, then the dropout
    /// rates): the activations of every layer at `δ = 0` (the input first, the logits last)
    /// and the tangent `(∂f/∂δ)·δ` of the logits, propagated layer by layer as
    /// `ṫ_{l+1} = J_x ṫ_l + J_δ δ` (the state JVP plus [`StnDense::jvp_ctx`]). In training mode
    /// the dropout masks are those of the current step. The linearized prediction is
    /// `last activation + tangent`.
    pub fn linearized(
        &self,
        params: &[f64],
        x: Array2<f64>,
        cd: ArrayView2<'_, f64>,
    ) -> Result<(Vec<Array2<f64>>, Array2<f64>)> {
        hyperprox_core::linalg::check_len(
            "Delta-STN",
            "parameters",
            self.net.num_params(),
            params.len(),
        )?;
        let c0 = self.uncentered_zero(cd);
        let mut w = Array2::zeros(cd.raw_dim());
        w.slice_mut(s![.., ..self.n_hyper])
            .assign(&cd.slice(s![.., ..self.n_hyper]));
        let offsets = self.offsets();
        let mut xs = vec![x];
        let mut t = Array2::zeros(xs[0].raw_dim());
        for (l, layer) in self.net.layers().iter().enumerate() {
            let (p, xl) = (&params[offsets[l]..offsets[l + 1]], xs[l].view());
            let mut tn = layer.jvp(p, xl, c0.view(), t.view())?;
            if let Some(k) = self.stn_at[l] {
                tn += &self.dense[k].0.jvp_ctx(p, xl, c0.view(), w.view())?;
            }
            let xn = layer.forward(p, xl, c0.view())?;
            xs.push(xn);
            t = tn;
        }
        Ok((xs, t))
    }

    /// The STN training step's loss and its gradient in every parameter at the rows `ut` for
    /// the training examples `idx` (ELR's targets of those examples advance in `st`); the
    /// trainer calls the same step. `Err` on an index or a shape out of range.
    pub fn train_loss_grad(
        &self,
        st: &mut DigitsState,
        idx: &[usize],
        ut: &Array2<f64>,
        rng: &mut rand::rngs::StdRng,
    ) -> Result<(f64, Vec<f64>)> {
        self.check_rows(idx, ut)?;
        self.train_step(st, idx, ut, false, rng)
    }

    /// Delta-STN's response step at the perturbed rows `ut`: the training loss of the
    /// prediction linearized in the centered perturbation `δ = ũ − u`,
    /// `f(x; 0) + (∂f/∂δ)·δ` (the network at `δ = 0` with the regularizers at `ũ`, plus its
    /// JVP, layer by layer: state JVP plus [`StnDense::jvp_ctx`]), plus the weight decay of
    /// `ŵ(ũ)`. Returns the loss and its gradient in the response parameters (zero elsewhere).
    ///
    /// The gradient backpropagates through the tangent: at `δ = 0` the activations do not
    /// depend on the response parameters and ReLU's derivative is piecewise constant, so the
    /// tangent's adjoint runs through the layers' input VJPs at `δ = 0`, and each STN layer's
    /// response parameters get the VJP of its term `S(δ) ⊙ [X W_hᵀ, b_h]` (its own VJP at
    /// context `δ`, restricted to those parameters).
    pub fn response_step(
        &self,
        st: &DigitsState,
        idx: &[usize],
        ut: &Array2<f64>,
        rng: &mut rand::rngs::StdRng,
    ) -> Result<(f64, Vec<f64>)> {
        self.check_rows(idx, ut)?;
        let Prepared {
            x,
            y,
            smooth,
            wd,
            elr,
        } = self.prepare(&st.hypers, idx, ut, rng);
        let cd = self.context(&st.hypers, ut, true);
        let c0 = self.uncentered_zero(cd.view());
        self.control.set_training(true);
        self.control.set_step(st.step);
        let (xs, t) = self.linearized(&st.params, x, cd.view())?;
        let layers = self.net.layers();
        let offsets = self.offsets();
        let p = |l: usize| &st.params[offsets[l]..offsets[l + 1]];
        let z = &xs[layers.len()] + &t;
        let (mut loss, mut a) = Self::loss(z.view(), &y, &smooth);
        if self.elr {
            // The targets advance in the general step only.
            let mut t = st.elr_targets.clone();
            let beta = st.config.elr_beta;
            loss += self.add_elr(beta, &mut t, z.view(), idx, &elr, false, &mut a);
        }
        let mut gp = vec![0.0; st.params.len()];
        let mut scratch = vec![0.0; st.params.len()];
        for (l, layer) in layers.iter().enumerate().rev() {
            let (xl, r) = (xs[l].view(), offsets[l]..offsets[l + 1]);
            if self.stn_at[l].is_some() {
                layer.vjp(p(l), xl, cd.view(), a.view(), &mut gp[r.clone()])?;
            }
            if l > 0 {
                a = layer.vjp(p(l), xl, c0.view(), a.view(), &mut scratch[r])?;
            }
        }
        loss += self.add_decay(&st.params, cd.view(), &wd, &mut gp)?;
        for &i in &self.general {
            gp[i] = 0.0;
        }
        Self::check_step(loss, &gp, "Delta-STN response step", st.step)?;
        Ok((loss, gp))
    }

    fn hyper_step(
        &self,
        st: &mut DigitsState,
        oh: &mut ParamOptimizer<f64>,
        rng: &mut rand::rngs::StdRng,
    ) -> Result<()> {
        let cfg = st.config.clone();
        let h = self.n_hyper;
        let idx: Vec<usize> = (0..cfg.batch)
            .map(|_| rng.random_range(0..self.data.val.y.len()))
            .collect();
        let x = self.data.val.x.select(Axis(0), &idx);
        let y: Vec<usize> = idx.iter().map(|&i| self.data.val.y[i]).collect();
        let (u, eps) = if cfg.tune_scales {
            st.hypers.perturbed(cfg.batch, rng)
        } else {
            (st.hypers.repeated(cfg.batch), Array2::zeros((cfg.batch, h)))
        };
        let c = self.context(&st.hypers, &u, cfg.delta);
        self.control.set_training(false);
        let logits = self.net.forward(&st.params, x.view(), c.view())?;
        let (_, g) = Self::loss(logits.view(), &y, &vec![0.0; cfg.batch]);
        let cbar = self.net.vjp_ctx(&st.params, x.view(), c.view(), g.view())?;
        let hg = st.hypers.entropy_grad();
        let mut us: Vec<f64> = st.hypers.hypers.iter().map(|p| p.u).collect();
        us.extend(st.hypers.hypers.iter().map(|p| p.s));
        let mut grad = vec![0.0; 2 * h];
        for j in 0..h {
            grad[j] = cbar.column(j).sum();
            if cfg.tune_scales {
                let sj = st.hypers.hypers[j].s;
                grad[h + j] =
                    (&cbar.column(j) * &eps.column(j)).sum() * sigmoid(sj) - cfg.tau * hg[j];
            }
        }
        oh.step(&mut us, &grad)?;
        for (j, p) in st.hypers.hypers.iter_mut().enumerate() {
            p.u = us[j];
            p.s = us[h + j];
        }
        Ok(())
    }

    fn full_eval(&self, st: &mut DigitsState) -> Result<()> {
        let c = st.config.delta;
        let (val_loss, _) = self.evaluate(&st.params, &st.hypers, &self.data.val, c)?;
        let (test_loss, test_accuracy) =
            self.evaluate(&st.params, &st.hypers, &self.data.test, c)?;
        let e = Eval {
            step: st.step,
            val_loss,
            test_loss,
            test_accuracy,
            values: st.hypers.values(),
        };
        st.evals.push(e.clone());
        if st.best.as_ref().is_none_or(|b| val_loss < b.2.val_loss) {
            st.best = Some((st.params.clone(), st.hypers.clone(), e));
            st.since_best = 0;
        } else {
            st.since_best += 1;
            if st.since_best >= st.config.patience {
                st.stopped = true;
            }
        }
        Ok(())
    }

    /// Advances the STN run to `until` training steps (or its end, or early stopping).
    pub fn run(
        &self,
        st: &mut DigitsState,
        until: u64,
        progress: &mut dyn FnMut(&DigitsState),
    ) -> Result<()> {
        self.advance(st, until, false, progress)
    }

    fn advance(
        &self,
        st: &mut DigitsState,
        until: u64,
        fixed: bool,
        progress: &mut dyn FnMut(&DigitsState),
    ) -> Result<()> {
        let cfg = st.config.clone();
        check_config(&cfg)?;
        self.check_elr(&cfg)?;
        if self.elr {
            hyperprox_core::linalg::check_len(
                "STN digits",
                "ELR targets in the state",
                10 * self.data.train.y.len(),
                st.elr_targets.len(),
            )?;
        }
        let delta = cfg.delta && !fixed;
        let nw = if delta {
            self.general.len()
        } else {
            st.params.len()
        };
        let mut ow = optim(adam(), cfg.lr_weights, nw)?;
        ow.set_state(st.opt.0.clone())?;
        let mut oh = optim(adam(), cfg.lr_hyper, 2 * self.n_hyper)?;
        oh.set_state(st.opt.1.clone())?;
        let mut or = match (&st.opt_response, delta) {
            (Some(s), true) => {
                let mut o = optim(adam(), cfg.lr_weights, self.response.len())?;
                o.set_state(s.clone())?;
                Some(o)
            }
            (None, true) => {
                return Err(Error::param(
                    "checkpoint",
                    "no response optimizer",
                    "a Delta-STN run needs a Delta-STN state (start it with init)",
                ))
            }
            _ => None,
        };
        let end = until.min(cfg.steps);
        while st.step < end && !st.stopped {
            let mut rng = rand::rngs::StdRng::seed_from_u64(batch_seed(cfg.seed, st.step));
            let ut = if fixed {
                st.hypers.repeated(cfg.batch)
            } else {
                let (mut ut, _) = st.hypers.perturbed(cfg.batch, &mut rng);
                for k in 0..=self.n_drop {
                    let j = self.n_drop + DECAY + k;
                    let first = ut[[0, j]];
                    ut.column_mut(j).fill(first);
                }
                ut
            };
            let idx = self.draw(cfg.batch, &mut rng);
            if let Some(or) = or.as_mut() {
                let u = st.hypers.repeated(cfg.batch);
                let (_, gp) = self.train_step(st, &idx, &u, false, &mut rng)?;
                step_on(&mut ow, &mut st.params, &gp, &self.general)?;
                let (_, gp) = self.response_step(st, &idx, &ut, &mut rng)?;
                step_on(or, &mut st.params, &gp, &self.response)?;
            } else {
                let (_, gp) = self.train_step(st, &idx, &ut, fixed, &mut rng)?;
                ow.step(&mut st.params, &gp)?;
            }
            st.step += 1;
            if !fixed && st.step > cfg.warmup && (st.step - cfg.warmup) % cfg.train_per_hyper == 0 {
                self.hyper_step(st, &mut oh, &mut rng)?;
            }
            if st.step % cfg.eval_every == 0 || st.step == cfg.steps {
                self.full_eval(st)?;
                progress(st);
            }
        }
        st.opt = (ow.state(), oh.state());
        if let Some(or) = or {
            st.opt_response = Some(or.state());
        }
        Ok(())
    }
}

/// A training minibatch at its hyperparameters.
struct Prepared {
    x: Array2<f64>,
    y: Vec<usize>,
    smooth: Vec<f64>,
    wd: Vec<f64>,
    elr: Vec<f64>,
}

/// One optimizer step on the parameters `idx` (gathered, stepped, scattered back).
fn step_on(o: &mut ParamOptimizer<f64>, p: &mut [f64], g: &[f64], idx: &[usize]) -> Result<()> {
    let mut sub: Vec<f64> = idx.iter().map(|&i| p[i]).collect();
    let gs: Vec<f64> = idx.iter().map(|&i| g[i]).collect();
    o.step(&mut sub, &gs)?;
    for (&i, v) in idx.iter().zip(sub) {
        p[i] = v;
    }
    Ok(())
}

fn check_config(cfg: &DigitsConfig) -> Result<()> {
    let counts = [
        ("batch", cfg.batch as u64),
        ("train_per_hyper", cfg.train_per_hyper),
        ("eval_every", cfg.eval_every),
        ("patience", cfg.patience as u64),
    ];
    if !(0.0..1.0).contains(&cfg.elr_beta) {
        return Err(Error::param("elr_beta", cfg.elr_beta, "must be in [0, 1)"));
    }
    if let Some(l) = cfg.elr {
        if !(l > 0.0 && l < 10.0) {
            return Err(Error::param(
                "elr",
                l,
                "ELR's initial weight must be in (0, 10)",
            ));
        }
    }
    crate::check_loop(&counts, [cfg.lr_weights, cfg.lr_hyper], cfg.tau)
}

/// The plain MLP (gates frozen at zero) trained with the hyperparameters fixed at `values`
/// (dropout per layer, then input noise, smoothing, weight decay) for `cfg.steps` steps, with
/// the same early stopping; returns its state (the best evaluation in `best`).
pub fn train_fixed(stn: &DigitsStn<'_>, cfg: &DigitsConfig, values: &[f64]) -> Result<DigitsState> {
    let cfg = DigitsConfig {
        delta: false,
        ..cfg.clone()
    };
    let mut st = stn.init(&cfg)?;
    hyperprox_core::linalg::check_len(
        "train_fixed",
        "hyperparameter values",
        st.hypers.len(),
        values.len(),
    )?;
    for (h, &v) in st.hypers.hypers.iter_mut().zip(values) {
        h.u = h.range.inverse(h.range.clamp_open(v))?;
    }
    stn.advance(&mut st, u64::MAX, true, &mut |_| {})?;
    Ok(st)
}

/// One baseline run: its fixed values and its state.
#[derive(Clone, Debug)]
pub struct BaselineRun {
    /// Hyperparameter values.
    pub values: Vec<f64>,
    /// The run (its best evaluation in `best`).
    pub state: DigitsState,
}

/// The number of hyperparameters of a network with `layers` hidden layers, without ELR: a
/// dropout rate per hidden layer, input noise, label smoothing, a weight decay per dense layer.
pub fn num_hypers(layers: usize) -> usize {
    2 * layers + 3
}

/// Grid search over one dropout rate shared by the layers, `points` values evenly in
/// `[0, 0.9]`, without input noise, smoothing or weight decay; the runs share `total_steps`
/// training steps equally.
pub fn grid_search(
    stn: &DigitsStn<'_>,
    cfg: &DigitsConfig,
    points: usize,
    total_steps: u64,
) -> Result<Vec<BaselineRun>> {
    let per = split_steps(total_steps, points)?;
    (0..points)
        .map(|i| {
            let p = 0.9 * i as f64 / (points - 1).max(1) as f64;
            let mut values = vec![p; cfg.hidden.len()];
            values.extend(vec![0.0; cfg.hidden.len() + 3]);
            if let Some(l) = cfg.elr {
                values.push(l);
            }
            let c = DigitsConfig {
                steps: per,
                ..cfg.clone()
            };
            let state = train_fixed(stn, &c, &values)?;
            Ok(BaselineRun { values, state })
        })
        .collect()
}

/// Random search: `runs` draws of every hyperparameter (dropout `U(0, 0.9)` per layer, input
/// noise `U(0, 0.3)`, smoothing `U(0, 0.2)`, weight decay log-uniform in `[1e-6, 1e-2]`),
/// seeded, sharing `total_steps` equally.
pub fn random_search(
    stn: &DigitsStn<'_>,
    cfg: &DigitsConfig,
    runs: usize,
    total_steps: u64,
    seed: u64,
) -> Result<Vec<BaselineRun>> {
    let per = split_steps(total_steps, runs)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..runs)
        .map(|_| {
            let mut values: Vec<f64> = (0..cfg.hidden.len())
                .map(|_| 0.9 * rng.random::<f64>())
                .collect();
            values.push(0.3 * rng.random::<f64>());
            values.push(0.2 * rng.random::<f64>());
            for _ in 0..=cfg.hidden.len() {
                values.push(10f64.powf(-6.0 + 4.0 * rng.random::<f64>()));
            }
            if cfg.elr.is_some() {
                values.push(10.0 * rng.random::<f64>());
            }
            let c = DigitsConfig {
                steps: per,
                ..cfg.clone()
            };
            let state = train_fixed(stn, &c, &values)?;
            Ok(BaselineRun { values, state })
        })
        .collect()
}

fn split_steps(total: u64, runs: usize) -> Result<u64> {
    if runs == 0 || total < runs as u64 {
        return Err(Error::param(
            "runs",
            runs,
            format!("need 1 to {total} runs (each trains at least one step)"),
        ));
    }
    Ok(total / runs as u64)
}

/// The run with the lowest best validation loss.
pub fn best_run(runs: &[BaselineRun]) -> Option<&BaselineRun> {
    runs.iter().min_by(|a, b| {
        let v = |r: &BaselineRun| {
            r.state
                .best
                .as_ref()
                .map_or(f64::INFINITY, |b| b.2.val_loss)
        };
        v(a).total_cmp(&v(b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each hyperparameter column reaches its regularizer: the noise's standard deviation,
    /// the smoothing per example, the decay of each layer (first row), ELR's weight per example.
    #[test]
    fn prepare_reads_each_hyperparameter_from_its_column() {
        let data = hyperprox_core::nn::train::digits_split::<f64>().unwrap();
        let cfg = DigitsConfig {
            hidden: vec![16, 12, 8],
            elr: Some(3.0),
            ..Default::default()
        };
        let stn = DigitsStn::for_config(&data, &cfg).unwrap();
        let hs = stn.hypers(&cfg).unwrap();
        let b = 64;
        // Distinct values: dropouts, noise 0.3, smoothing per row, decays 1e-4 … 1e-1, ELR
        // per row.
        let mut values = vec![0.1, 0.2, 0.25, 0.3, 0.0, 1e-4, 1e-3, 1e-2, 1e-1, 0.0];
        let mut ut = Array2::zeros((b, hs.len()));
        for i in 0..b {
            values[4] = 0.01 + 0.004 * i as f64;
            values[9] = 0.5 + 0.1 * i as f64;
            for (j, h) in hs.hypers.iter().enumerate() {
                ut[[i, j]] = h.range.inverse(values[j]).unwrap();
            }
        }
        let idx: Vec<usize> = (0..b).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let p = stn.prepare(&hs, &idx, &ut, &mut rng);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b.abs().max(1e-12);
        for i in 0..b {
            assert!(
                close(p.smooth[i], 0.01 + 0.004 * i as f64),
                "{}",
                p.smooth[i]
            );
            assert!(close(p.elr[i], 0.5 + 0.1 * i as f64), "{}", p.elr[i]);
        }
        for (k, w) in [1e-4, 1e-3, 1e-2, 1e-1].iter().enumerate() {
            assert!(close(p.wd[k], *w), "{:?}", p.wd);
        }
        assert_eq!(p.y, data.train.y[..b].to_vec());
        let d = &p.x - &data.train.x.slice(s![..b, ..]);
        let sd = (d.iter().map(|v| v * v).sum::<f64>() / d.len() as f64).sqrt();
        let mean = d.mean().unwrap_or(0.0);
        assert!(
            (sd - 0.3).abs() < 0.01 && mean.abs() < 0.01,
            "sd {sd}, mean {mean}"
        );
    }
}

//! STN on the digits MLP: a dropout rate per hidden layer, the standard deviation of Gaussian
//! input noise, label smoothing and a weight decay, tuned online for the validation
//! cross-entropy (the MLP setting of MacKay et al. 2019 and pomonam's examples, on the shipped
//! 8×8 digits with the fixed split of `hyperprox_core::nn::train::digits_split`).
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
use hyperprox_core::nn::optim::{Method, OptimState, ParamOptimizer};
use hyperprox_core::nn::train::{Labelled, Split};
use hyperprox_core::nn::{Act, Activation, DropRate, Dropout, DropoutControl, Layer, Sequential};
use ndarray::{s, Array2, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Indices of the hyperparameters after the dropout rates.
const NOISE: usize = 0;
const SMOOTH: usize = 1;
const DECAY: usize = 2;

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
    /// Initial values: dropout (every layer), input noise, label smoothing, weight decay.
    pub initial: [f64; 4],
    /// Full validation every this many steps.
    pub eval_every: u64,
    /// Evaluations without improvement before stopping.
    pub patience: usize,
    /// Seed.
    pub seed: u64,
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
    /// Optimizer states (network, `[u; s]`).
    pub opt: (OptimState, OptimState),
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
    /// The network for `data` with `hidden` widths (10 classes).
    pub fn new(data: &'a Split<f64>, hidden: &[usize], seed: u64) -> Result<Self> {
        if hidden.is_empty() || hidden.contains(&0) {
            return Err(Error::param(
                "hidden widths",
                format!("{hidden:?}"),
                "need at least one hidden layer, each of width ≥ 1",
            ));
        }
        let classes = 10usize;
        let (n_drop, n_hyper) = (hidden.len(), hidden.len() + 3);
        let width = n_hyper + n_drop;
        let control = DropoutControl::new(seed);
        let mut layers: Vec<Arc<dyn Layer<f64>>> = vec![];
        let mut dense = vec![];
        let mut start = 0;
        let mut n_in = data.train.x.ncols();
        for (k, &h) in hidden.iter().chain(std::iter::once(&classes)).enumerate() {
            let d = Arc::new(StnDense::new(n_in, h, n_hyper).with_context_width(width));
            let np = Differentiable::<f64>::num_params(d.as_ref());
            dense.push((d.clone(), start..start + np));
            start += np;
            layers.push(d);
            if k < hidden.len() {
                layers.push(Arc::new(Act::new(h, Activation::Relu)?));
                let rate = DropRate::Context(n_hyper + k);
                layers.push(Arc::new(Dropout::new(h, rate, control.clone(), k as u64)?));
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

    /// The context of unconstrained rows `u` (B × H): `u`, then the dropout rates.
    pub fn context_of(&self, hypers: &HyperSet, u: &Array2<f64>) -> Array2<f64> {
        self.context(hypers, u)
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
        v.push(Hyper::new("weight_decay", Range::Exp, cfg.initial[3], sc)?);
        HyperSet::new(v)
    }

    /// The initial state.
    pub fn init(&self, cfg: &DigitsConfig) -> Result<DigitsState> {
        check_config(cfg)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
        let params = self.net.init_params(&mut rng);
        Ok(DigitsState {
            opt: (
                optim(adam(), cfg.lr_weights, params.len())?.state(),
                optim(adam(), cfg.lr_hyper, 2 * self.n_hyper)?.state(),
            ),
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

    /// The context (B × (H + dropout layers)) of the unconstrained rows `u`: `u` then the
    /// dropout rates.
    fn context(&self, hypers: &HyperSet, u: &Array2<f64>) -> Array2<f64> {
        let mut c = Array2::zeros((u.nrows(), self.n_hyper + self.n_drop));
        c.slice_mut(s![.., ..self.n_hyper]).assign(u);
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

    /// Cross-entropy and accuracy of `params` at `u` on `set` (evaluation mode).
    pub fn evaluate(
        &self,
        params: &[f64],
        hypers: &HyperSet,
        set: &Labelled<f64>,
    ) -> Result<(f64, f64)> {
        self.control.set_training(false);
        let c = self.context(hypers, &hypers.repeated(set.x.nrows()));
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

    /// One training step at the perturbed rows `ut` (the weight-decay column constant).
    fn train_step(
        &self,
        st: &mut DigitsState,
        ow: &mut ParamOptimizer<f64>,
        ut: &Array2<f64>,
        frozen: bool,
        rng: &mut rand::rngs::StdRng,
    ) -> Result<f64> {
        let cfg = &st.config;
        let nd = self.n_drop;
        let idx: Vec<usize> = (0..cfg.batch)
            .map(|_| rng.random_range(0..self.data.train.y.len()))
            .collect();
        let mut x = self.data.train.x.select(Axis(0), &idx);
        let y: Vec<usize> = idx.iter().map(|&i| self.data.train.y[i]).collect();
        let map = |j: usize, v: f64| st.hypers.hypers[j].range.map(v);
        for (i, mut row) in x.rows_mut().into_iter().enumerate() {
            let sd = map(nd + NOISE, ut[[i, nd + NOISE]]);
            for v in row.iter_mut() {
                let e: f64 = StandardNormal.sample(&mut *rng);
                *v += sd * e;
            }
        }
        let smooth: Vec<f64> = (0..cfg.batch)
            .map(|i| map(nd + SMOOTH, ut[[i, nd + SMOOTH]]))
            .collect();
        let wd = map(nd + DECAY, ut[[0, nd + DECAY]]);
        let c = self.context(&st.hypers, ut);
        self.control.set_training(true);
        self.control.set_step(st.step);
        let logits = self.net.forward(&st.params, x.view(), c.view())?;
        let (mut loss, g) = Self::loss(logits.view(), &y, &smooth);
        let mut gp = vec![0.0; st.params.len()];
        self.net
            .vjp(&st.params, x.view(), c.view(), g.view(), &mut gp)?;
        let wds = vec![wd; cfg.batch];
        for (d, r) in &self.dense {
            let (pen, _) =
                d.decay_penalty(&st.params[r.clone()], c.view(), &wds, &mut gp[r.clone()])?;
            loss += pen;
        }
        if frozen {
            // The plain MLP: only the elementary weights and biases learn.
            for (d, r) in &self.dense {
                let part = d.elementary_len();
                gp[r.start + part..r.end].iter_mut().for_each(|v| *v = 0.0);
            }
        }
        if !loss.is_finite() || gp.iter().any(|v| !v.is_finite()) {
            return Err(Error::Diverged {
                method: "STN training step".into(),
                iteration: st.step as usize + 1,
                detail: format!("loss {loss}; lower the learning rate"),
            });
        }
        ow.step(&mut st.params, &gp)?;
        Ok(loss)
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
        let c = self.context(&st.hypers, &u);
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
        let (val_loss, _) = self.evaluate(&st.params, &st.hypers, &self.data.val)?;
        let (test_loss, test_accuracy) = self.evaluate(&st.params, &st.hypers, &self.data.test)?;
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
        let mut ow = optim(adam(), cfg.lr_weights, st.params.len())?;
        ow.set_state(st.opt.0.clone())?;
        let mut oh = optim(adam(), cfg.lr_hyper, 2 * self.n_hyper)?;
        oh.set_state(st.opt.1.clone())?;
        let end = until.min(cfg.steps);
        while st.step < end && !st.stopped {
            let mut rng = rand::rngs::StdRng::seed_from_u64(batch_seed(cfg.seed, st.step));
            let ut = if fixed {
                st.hypers.repeated(cfg.batch)
            } else {
                let (mut ut, _) = st.hypers.perturbed(cfg.batch, &mut rng);
                let j = self.n_drop + DECAY;
                let first = ut[[0, j]];
                ut.column_mut(j).fill(first);
                ut
            };
            self.train_step(st, &mut ow, &ut, fixed, &mut rng)?;
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
        Ok(())
    }
}

fn check_config(cfg: &DigitsConfig) -> Result<()> {
    let counts = [
        ("batch", cfg.batch as u64),
        ("train_per_hyper", cfg.train_per_hyper),
        ("eval_every", cfg.eval_every),
        ("patience", cfg.patience as u64),
    ];
    crate::check_loop(&counts, [cfg.lr_weights, cfg.lr_hyper], cfg.tau)
}

/// The plain MLP (gates frozen at zero) trained with the hyperparameters fixed at `values`
/// (dropout per layer, then input noise, smoothing, weight decay) for `cfg.steps` steps, with
/// the same early stopping; returns its state (the best evaluation in `best`).
pub fn train_fixed(stn: &DigitsStn<'_>, cfg: &DigitsConfig, values: &[f64]) -> Result<DigitsState> {
    let mut st = stn.init(cfg)?;
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

/// The number of hyperparameters of a network with `layers` hidden layers.
pub fn num_hypers(layers: usize) -> usize {
    layers + 3
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
            values.extend([0.0, 0.0, 0.0]);
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
            values.push(10f64.powf(-6.0 + 4.0 * rng.random::<f64>()));
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

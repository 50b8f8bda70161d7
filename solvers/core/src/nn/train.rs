//! Training classifiers built from the [`nn`](super) blocks: architectures from a short spec
//! (`mlp:128,128`, `cnn:16,32`), the shipped digits with a fixed split, and a minibatch trainer
//! with any [`ClassLoss`], any [`Method`], dropout, exact checkpoints and per-epoch records.

use super::loss::{ClassLoss, CrossEntropy, LossSpec};
use super::optim::{IssP, LrSchedule, Method, OptimConfig, OptimState, ParamOptimizer};
use super::{
    Act, Activation, Conv2d, Dense, DropRate, Dropout, DropoutControl, ImageShape, Layer, Pool2d,
    PoolKind, Sequential,
};
use crate::diff::{batch_seed, Differentiable};
use crate::error::{Error, Result};
use crate::linalg::Real;
use ndarray::{Array2, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A network architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "widths", rename_all = "snake_case")]
pub enum Arch {
    /// Dense layers of these widths with ReLU (and dropout after each), then a dense output.
    Mlp(Vec<usize>),
    /// Per entry: 3×3 convolution (padding 1) with that many channels, ReLU, 2×2 max pooling;
    /// then dropout and a dense output.
    Cnn(Vec<usize>),
}

impl Arch {
    /// Parses `mlp:W1,W2,…` or `cnn:C1,C2,…` (`mlp:` alone is a linear model).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::param(
                "architecture",
                s,
                format!("{why}; expected e.g. mlp:128,128 or cnn:16,32"),
            )
        };
        let (kind, rest) = s.split_once(':').ok_or_else(|| bad("no ':'"))?;
        let widths = rest
            .split(',')
            .filter(|w| !w.trim().is_empty())
            .map(|w| match w.trim().parse::<usize>() {
                Ok(v) if v > 0 && v <= 1 << 16 => Ok(v),
                _ => Err(bad("widths must be integers in 1..=65536")),
            })
            .collect::<Result<Vec<_>>>()?;
        match kind {
            "mlp" => Ok(Arch::Mlp(widths)),
            "cnn" if widths.is_empty() => Err(bad("a CNN needs at least one convolution")),
            "cnn" => Ok(Arch::Cnn(widths)),
            _ => Err(bad("unknown kind")),
        }
    }

    /// The network for images of shape `input` and `classes` outputs, with dropout rate
    /// `dropout` (0: none) controlled by `control`.
    pub fn build<T: Real>(
        &self,
        input: ImageShape,
        classes: usize,
        dropout: f64,
        control: &Arc<DropoutControl>,
    ) -> Result<Sequential<T>> {
        let mut layers: Vec<Arc<dyn Layer<T>>> = Vec::new();
        let mut salt = 0;
        let mut drop = |layers: &mut Vec<Arc<dyn Layer<T>>>, n: usize| -> Result<()> {
            if dropout > 0.0 {
                salt += 1;
                layers.push(Arc::new(Dropout::new(
                    n,
                    DropRate::Fixed(dropout),
                    control.clone(),
                    salt,
                )?));
            }
            Ok(())
        };
        let mut width = input.len();
        match self {
            Arch::Mlp(ws) => {
                for &w in ws {
                    layers.push(Arc::new(Dense::new(width, w)));
                    layers.push(Arc::new(Act::new(w, Activation::Relu)?));
                    drop(&mut layers, w)?;
                    width = w;
                }
            }
            Arch::Cnn(cs) => {
                let mut shape = input;
                for &c in cs {
                    let conv = Conv2d::new(shape, c, 3, 1, 1)?;
                    shape = conv.output();
                    layers.push(Arc::new(conv));
                    layers.push(Arc::new(Act::new(shape.len(), Activation::Relu)?));
                    if shape.h >= 2 && shape.w >= 2 {
                        let pool = Pool2d::new(shape, PoolKind::Max, 2, 2)?;
                        shape = pool.output();
                        layers.push(Arc::new(pool));
                    }
                }
                width = shape.len();
                drop(&mut layers, width)?;
            }
        }
        layers.push(Arc::new(Dense::new(width, classes)));
        Sequential::new(layers)
    }
}

/// A labelled data set: features (rows) and labels in `0..classes`.
#[derive(Clone, Debug)]
pub struct Labelled<T> {
    /// Features.
    pub x: Array2<T>,
    /// Labels.
    pub y: Vec<usize>,
}

impl<T: Real> Labelled<T> {
    /// `Err` on mismatched lengths, an empty set, non-finite features or labels `≥ classes`.
    pub fn new(x: Array2<T>, y: Vec<usize>, classes: usize) -> Result<Self> {
        crate::linalg::check_len("Labelled", "labels", x.nrows(), y.len())?;
        if x.is_empty() {
            return Err(Error::param(
                "data",
                "empty",
                "the data set needs at least one example",
            ));
        }
        crate::linalg::check_batch("Labelled", "features", x.nrows(), x.ncols(), x.view())?;
        if let Some(i) = y.iter().position(|&l| l >= classes) {
            return Err(Error::param(
                "label",
                y[i],
                format!("labels must lie in 0..{classes} (example {i})"),
            ));
        }
        Ok(Self { x, y })
    }
    /// Rows `idx`.
    pub fn select(&self, idx: &[usize]) -> Self {
        Self {
            x: self.x.select(Axis(0), idx),
            y: idx.iter().map(|&i| self.y[i]).collect(),
        }
    }
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.y.len()
    }
    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// Training, validation and test sets.
#[derive(Clone, Debug)]
pub struct Split<T> {
    /// Training set.
    pub train: Labelled<T>,
    /// Validation set.
    pub val: Labelled<T>,
    /// Test set.
    pub test: Labelled<T>,
}

/// Training examples of [`digits_split`].
pub const DIGITS_TRAIN: usize = 1297;

/// The shipped digits (1797 images, 8×8, values in `[0, 1]`) with the fixed split used by the
/// command line and the tests: the examples shuffled with seed 0, then 1297 for training, 200 for
/// validation and 300 for testing.
pub fn digits_split<T: Real>() -> Result<Split<T>> {
    let path = crate::io::shipped_data_dir().join("digits/digits.csv");
    let (x, y) = crate::io::read_digits_csv(&path)?;
    let mut idx: Vec<usize> = (0..y.len()).collect();
    idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(0));
    let all = Labelled::new(x.mapv(T::c), y, 10)?;
    let n_train = DIGITS_TRAIN.min(idx.len());
    let n_val = 200.min(idx.len() - n_train);
    Ok(Split {
        train: all.select(&idx[..n_train]),
        val: all.select(&idx[n_train..n_train + n_val]),
        test: all.select(&idx[n_train + n_val..]),
    })
}

impl<T> Labelled<T> {
    /// Symmetric label noise (the setting of the noisy-label literature, e.g. ELR's): each
    /// label is replaced, with probability `rate`, by one of the other `classes − 1` classes
    /// drawn uniformly; seeded. Returns how many labels changed. `Err` on a rate outside
    /// `[0, 1)` or fewer than two classes.
    pub fn corrupt_labels(&mut self, rate: f64, classes: usize, seed: u64) -> Result<usize> {
        use rand::Rng;
        if !(0.0..1.0).contains(&rate) {
            return Err(Error::param("label noise", rate, "must be in [0, 1)"));
        }
        if classes < 2 {
            return Err(Error::param(
                "classes",
                classes,
                "label noise needs at least two",
            ));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut changed = 0;
        for y in self.y.iter_mut() {
            if rng.random::<f64>() < rate {
                let other = rng.random_range(0..classes - 1);
                *y = if other >= *y { other + 1 } else { other };
                changed += 1;
            }
        }
        Ok(changed)
    }
}

/// Everything that defines a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Architecture.
    pub arch: Arch,
    /// Input image shape.
    pub input: ImageShape,
    /// Number of classes.
    pub classes: usize,
    /// Loss.
    pub loss: LossSpec,
    /// Optimizer.
    pub method: Method,
    /// Base learning rate.
    pub lr: f64,
    /// Weight decay on the weight groups.
    pub weight_decay: f64,
    /// ⊥Grad on every group.
    pub orthogonal: bool,
    /// Dropout rate (0: none).
    pub dropout: f64,
    /// Epochs.
    pub epochs: usize,
    /// Minibatch size.
    pub batch: usize,
    /// Cosine decay of the rate over the run.
    pub cosine: bool,
    /// Seed of the initialization, the minibatches and the dropout masks.
    pub seed: u64,
    /// ISS-P pruning of every weight group (biases are kept).
    #[serde(default)]
    pub prune: Option<IssP>,
}

impl TrainConfig {
    /// The defaults for the digits: Adam at 1e-3, batch 64, 30 epochs, cross-entropy.
    pub fn digits(arch: Arch) -> Self {
        Self {
            arch,
            input: ImageShape::new(1, 8, 8),
            classes: 10,
            loss: LossSpec::CrossEntropy { smoothing: 0.0 },
            method: Method::by_name("adam").expect("known"),
            lr: 1e-3,
            weight_decay: 0.0,
            orthogonal: false,
            dropout: 0.0,
            epochs: 30,
            batch: 64,
            cosine: false,
            seed: 0,
            prune: None,
        }
    }

    fn check(&self) -> Result<()> {
        if self.batch == 0 || self.epochs == 0 {
            return Err(Error::param(
                "batch and epochs",
                format!("{}, {}", self.batch, self.epochs),
                "both must be at least 1",
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::param("dropout", self.dropout, "must lie in [0, 1)"));
        }
        Ok(())
    }
}

/// One epoch's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch (from 1).
    pub epoch: usize,
    /// Mean training loss over the epoch's minibatches (the training loss, with dropout).
    pub train_loss: f64,
    /// Cross-entropy on the validation set (evaluation mode), comparable across losses.
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_accuracy: f64,
    /// Test accuracy.
    pub test_accuracy: f64,
    /// Wall-clock seconds of the epoch's training steps.
    pub seconds: f64,
}

/// A run's state: everything needed to resume bit-identically.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The configuration.
    pub config: TrainConfig,
    /// Epochs done.
    pub epoch: usize,
    /// Minibatch steps done.
    pub step: u64,
    /// Parameters (as `f64`; exact for `f32`).
    pub params: Vec<f64>,
    /// Optimizer state.
    pub optim: OptimState,
    /// The loss's state (ELR targets, PS-KD predictions).
    pub loss_state: Vec<f64>,
    /// Per-epoch records.
    pub history: Vec<EpochRecord>,
}

/// A classifier ready to train: network, dropout control, optimizer and loss.
pub struct Trainer<T: Real> {
    /// The network.
    pub net: Sequential<T>,
    /// Its dropout switch.
    pub control: Arc<DropoutControl>,
    /// Parameters.
    pub params: Vec<T>,
    optim: ParamOptimizer<T>,
    loss: Box<dyn ClassLoss<T>>,
    config: TrainConfig,
    epoch: usize,
    step: u64,
    history: Vec<EpochRecord>,
}

impl<T: Real> Trainer<T> {
    /// A fresh run on a training set of `n_train` examples.
    pub fn new(config: TrainConfig, n_train: usize) -> Result<Self> {
        config.check()?;
        let control = DropoutControl::new(config.seed);
        let net = config
            .arch
            .build::<T>(config.input, config.classes, config.dropout, &control)?;
        let params = net.init(config.seed);
        let mut oc = OptimConfig::for_groups(
            config.method,
            config.lr,
            &net.param_groups(),
            config.weight_decay,
            config.orthogonal,
        );
        if config.cosine {
            let steps = config.epochs as u64 * n_train.div_ceil(config.batch) as u64;
            oc.schedule = LrSchedule::Cosine {
                total: steps,
                floor: 0.0,
            };
        }
        let mut optim = ParamOptimizer::new(oc, params.len())?;
        if let Some(iss) = config.prune {
            for g in net.param_groups().iter().filter(|g| g.is_weight) {
                optim = optim.with_iss_p(&g.name, iss)?;
            }
        }
        let loss = config.loss.build::<T>(n_train, config.classes)?;
        Ok(Self {
            net,
            control,
            params,
            optim,
            loss,
            config,
            epoch: 0,
            step: 0,
            history: Vec::new(),
        })
    }

    /// Resumes from a saved state; `Err` if it does not fit the training set.
    pub fn resume(state: TrainState, n_train: usize) -> Result<Self> {
        let mut t = Self::new(state.config, n_train)?;
        crate::linalg::check_len(
            "checkpoint",
            "parameters",
            t.params.len(),
            state.params.len(),
        )?;
        t.params = state.params.into_iter().map(T::c).collect();
        t.optim.set_state(state.optim)?;
        t.loss.set_state(state.loss_state)?;
        t.epoch = state.epoch;
        t.step = state.step;
        t.history = state.history;
        Ok(t)
    }

    /// The state to checkpoint.
    pub fn state(&self) -> TrainState {
        TrainState {
            config: self.config.clone(),
            epoch: self.epoch,
            step: self.step,
            params: self.params.iter().map(|v| v.as_f64()).collect(),
            optim: self.optim.state(),
            loss_state: self.loss.state(),
            history: self.history.clone(),
        }
    }

    /// Epochs done.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Per-epoch records.
    pub fn history(&self) -> &[EpochRecord] {
        &self.history
    }

    /// The name of the loss.
    pub fn loss_name(&self) -> String {
        self.loss.name()
    }

    /// Logits of `x` in evaluation mode (no dropout), in chunks of 512 rows.
    pub fn logits(&self, x: &Array2<T>) -> Result<Array2<T>> {
        self.control.set_training(false);
        let mut out = Array2::zeros((x.nrows(), self.config.classes));
        for (i, chunk) in x.axis_chunks_iter(Axis(0), 512).enumerate() {
            let c = Array2::zeros((chunk.nrows(), 0));
            let o = self.net.forward(&self.params, chunk, c.view())?;
            out.slice_mut(ndarray::s![i * 512..i * 512 + chunk.nrows(), ..])
                .assign(&o);
        }
        self.control.set_training(true);
        Ok(out)
    }

    /// `(cross-entropy, accuracy)` on a data set, in evaluation mode.
    pub fn evaluate(&self, d: &Labelled<T>) -> Result<(f64, f64)> {
        let logits = self.logits(&d.x)?;
        let mut g = Array2::zeros(logits.raw_dim());
        let ce =
            CrossEntropy { smoothing: 0.0 }.value_grad(logits.view(), &d.y, &[], g.view_mut())?;
        Ok((ce.as_f64(), accuracy(&logits, &d.y)))
    }

    /// The minibatch steps of one epoch in `order`.
    fn train_steps(
        &mut self,
        train: &Labelled<T>,
        order: &[usize],
        gp: &mut [T],
        total: &mut f64,
        batches: &mut usize,
    ) -> Result<()> {
        for ids in order.chunks(self.config.batch) {
            let b = train.select(ids);
            self.control.set_step(self.step);
            let empty = Array2::<T>::zeros((ids.len(), 0));
            let (logits, saved) = self
                .net
                .forward_save(&self.params, b.x.view(), empty.view())?;
            let mut g = Array2::zeros(logits.raw_dim());
            let l = self
                .loss
                .value_grad(logits.view(), &b.y, ids, g.view_mut())?;
            if !l.is_finite() {
                return Err(Error::Diverged {
                    method: "training".into(),
                    iteration: self.step as usize,
                    detail: format!("the training loss ({l}); lower the learning rate"),
                });
            }
            gp.iter_mut().for_each(|v| *v = T::zero());
            self.net
                .vjp_saved(&self.params, b.x.view(), empty.view(), &saved, g.view(), gp)?;
            self.optim.step(&mut self.params, gp)?;
            self.step += 1;
            *total += l.as_f64();
            *batches += 1;
        }
        Ok(())
    }

    /// One epoch over `train` (shuffled by a seed derived from the run's seed and the epoch),
    /// then the evaluation; returns the record (also appended to the history).
    pub fn train_epoch(&mut self, split: &Split<T>) -> Result<EpochRecord> {
        let train = &split.train;
        let n = train.len();
        let epochs = self.config.epochs;
        self.loss.start_epoch(self.epoch, epochs);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(batch_seed(
            self.config.seed,
            self.epoch as u64,
        )));
        let t0 = std::time::Instant::now();
        let (mut total, mut batches) = (0.0, 0usize);
        let mut gp = vec![T::zero(); self.params.len()];
        in_pool(|| self.train_steps(train, &order, &mut gp, &mut total, &mut batches))?;
        let seconds = t0.elapsed().as_secs_f64();
        self.epoch += 1;
        let (val_loss, val_accuracy) = self.evaluate(&split.val)?;
        let (_, test_accuracy) = self.evaluate(&split.test)?;
        let rec = EpochRecord {
            epoch: self.epoch,
            train_loss: total / batches.max(1) as f64,
            val_loss,
            val_accuracy,
            test_accuracy,
            seconds,
        };
        self.history.push(rec.clone());
        Ok(rec)
    }
}

/// Fraction of rows whose largest logit is at the label.
pub fn accuracy<T: Real>(logits: &Array2<T>, y: &[usize]) -> f64 {
    let hits = logits
        .rows()
        .into_iter()
        .zip(y)
        .filter(|(r, &l)| {
            let best =
                r.iter().enumerate().fold(
                    (0, T::neg_infinity()),
                    |a, (j, &v)| if v > a.1 { (j, v) } else { a },
                );
            best.0 == l
        })
        .count();
    hits as f64 / y.len().max(1) as f64
}

/// One training step's worth of work on random data, for throughput measurements: the network,
/// a random batch (inputs in `[0, 1]`, random labels) and buffers.
pub struct StepCase<T: Real> {
    net: Sequential<T>,
    params: Vec<T>,
    x: Array2<T>,
    y: Vec<usize>,
    ids: Vec<usize>,
    empty: Array2<T>,
    gp: Vec<T>,
    g: Array2<T>,
    loss: CrossEntropy,
}

impl<T: Real> StepCase<T> {
    /// The case for an architecture, input shape, class count and minibatch size.
    pub fn new(
        arch: &Arch,
        input: ImageShape,
        classes: usize,
        batch: usize,
        seed: u64,
    ) -> Result<Self> {
        if batch == 0 || classes == 0 {
            return Err(Error::param(
                "batch and classes",
                format!("{batch}, {classes}"),
                "both must be at least 1",
            ));
        }
        let control = DropoutControl::new(seed);
        let net = arch.build::<T>(input, classes, 0.0, &control)?;
        let params = net.init(seed);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let x = Array2::from_shape_fn((batch, input.len()), |_| {
            T::c(rand::Rng::random::<f64>(&mut rng))
        });
        let y = (0..batch)
            .map(|_| rand::Rng::random_range(&mut rng, 0..classes))
            .collect();
        Ok(Self {
            gp: vec![T::zero(); params.len()],
            net,
            params,
            x,
            y,
            ids: (0..batch).collect(),
            empty: Array2::zeros((batch, 0)),
            g: Array2::zeros((batch, classes)),
            loss: CrossEntropy { smoothing: 0.0 },
        })
    }

    /// Forward pass, cross-entropy and backward pass (parameter and input gradients); returns
    /// the loss.
    pub fn step(&mut self) -> Result<T> {
        let (logits, saved) =
            self.net
                .forward_save(&self.params, self.x.view(), self.empty.view())?;
        let l = self
            .loss
            .value_grad(logits.view(), &self.y, &self.ids, self.g.view_mut())?;
        self.gp.iter_mut().for_each(|v| *v = T::zero());
        self.net.vjp_saved(
            &self.params,
            self.x.view(),
            self.empty.view(),
            &saved,
            self.g.view(),
            &mut self.gp,
        )?;
        Ok(l)
    }
}

/// Training throughput of an architecture: samples per second of [`StepCase::step`] (forward
/// pass, cross-entropy, backward pass; no optimizer step, as PyTorch's `loss.backward()` loop)
/// at a fixed minibatch size, over at least `min_seconds` after two warm-up steps, on rayon's
/// pool. Returns `(samples per second, steps timed)`.
pub fn throughput<T: Real>(
    arch: &Arch,
    input: ImageShape,
    classes: usize,
    batch: usize,
    min_seconds: f64,
    seed: u64,
) -> Result<(f64, u64)> {
    let mut case = StepCase::<T>::new(arch, input, classes, batch, seed)?;
    // Inside the thread pool, so that the row-split products fork with work stealing instead
    // of a hand-off to the pool per call.
    in_pool(|| {
        case.step()?;
        case.step()?;
        let t0 = std::time::Instant::now();
        let mut steps = 0u64;
        while steps < 3 || t0.elapsed().as_secs_f64() < min_seconds {
            case.step()?;
            steps += 1;
        }
        let secs = t0.elapsed().as_secs_f64();
        Ok((steps as f64 * batch as f64 / secs, steps))
    })
}

/// Runs `f` on a worker of rayon's pool (directly if already on one): the parallel kernels it
/// calls then split work by work stealing, not by a cross-thread hand-off per call.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        let mut out = None;
        rayon::scope(|_| out = Some(f()));
        out.expect("the scope ran the closure")
    }
}

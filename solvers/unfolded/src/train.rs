//! Training of unfolded models: supervised (`(1/B)Σ‖x_T − x‖²`) or unsupervised (the original
//! objective `(1/B)Σ ½‖y − Ax_T‖² + λ‖x_T‖₁`, or `‖x_T‖₀` for IHT) on freshly sampled
//! minibatches, with Adam (default) or SGD with momentum.
//!
//! **Incremental (layer-wise) training** (TISTA's "generations", ALISTA's stages): stage
//! `t = 1, …, T` trains all parameters of the first `t` layers on the loss at layer `t` for
//! `steps_per_layer` minibatches; a final stage trains the whole network at layer T for
//! `final_steps` minibatches at `lr·final_lr_factor`. Without incremental training one stage
//! trains layer T for `T·steps_per_layer + final_steps` minibatches. Adam restarts at each stage.
//!
//! Minibatch `k` is drawn with the seed `batch_seed(seed, k)`, so a run resumed from a
//! [`TrainState`] checkpoint continues bit-identically. A minibatch whose gradient is not finite
//! is skipped and counted (as in the TISTA code).
//!
//! The ℓ0 objective is piecewise constant in `x_T`'s support, so the unsupervised IHT loss
//! trains through its data-fit term only.

use crate::baselines::Curves;
use crate::data::{sample, Batch, Problem, Signal};
use crate::layers::Penalty;
use crate::model::UnfoldedModel;
use hyperprox_core::comm::{balanced_shards, sum_checked, Communicator, SelfComm};
use hyperprox_core::device::Device;
use hyperprox_core::diff::{
    batch_seed, check_batch, matmul, residual, Adam, BatchLoss, Optimizer, Sgd, SquaredError,
    UnrolledWorkspace,
};
use hyperprox_core::error::{Error, Result};
use ndarray::{Array2, ArrayView2, Zip};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

/// Supervised or unsupervised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum LossKind {
    /// Mean squared error to the true signal.
    Supervised,
    /// The original objective at the output.
    Unsupervised,
}

impl LossKind {
    /// `supervised` / `unsupervised`.
    pub fn as_str(&self) -> &'static str {
        match self {
            LossKind::Supervised => "supervised",
            LossKind::Unsupervised => "unsupervised",
        }
    }
}

/// The original objective as a loss: `(1/B) Σ_b ½‖y_b − A x_b‖² + λ·penalty(x_b)`, with
/// gradient `(1/B)(−Aᵀr_b + λ·sign(x_b))` for ℓ1 (the subgradient with `sign(0) = 0`) and
/// `(1/B)(−Aᵀr_b)` for ℓ0.
#[derive(Clone, Debug)]
pub struct Objective {
    a: Arc<Array2<f64>>,
    lambda: f64,
    penalty: Penalty,
}

impl Objective {
    /// The objective on `problem`.
    pub fn new(problem: &Problem, lambda: f64, penalty: Penalty) -> Self {
        Self {
            a: problem.a.clone(),
            lambda,
            penalty,
        }
    }
}

impl BatchLoss for Objective {
    fn name(&self) -> String {
        format!(
            "½‖y − Ax‖² + λ‖x‖_{}",
            if self.penalty == Penalty::L1 { 1 } else { 0 }
        )
    }
    fn value_grad(
        &self,
        x: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
        _t: ArrayView2<'_, f64>,
    ) -> Result<(f64, Array2<f64>)> {
        check_batch("Objective", "y", x.nrows(), self.a.nrows(), y)?;
        let b = x.nrows().max(1) as f64;
        let r = residual(self.a.view(), x, y);
        let mut v = 0.5 * r.iter().map(|e| e * e).sum::<f64>();
        let mut g = matmul(r.view(), self.a.view());
        g.mapv_inplace(|e| -e / b);
        match self.penalty {
            Penalty::L1 => {
                v += self.lambda * x.iter().map(|e| e.abs()).sum::<f64>();
                Zip::from(&mut g).and(&x).for_each(|gv, xv| {
                    if *xv != 0.0 {
                        *gv += self.lambda * xv.signum() / b
                    }
                });
            }
            Penalty::L0 => v += self.lambda * x.iter().filter(|e| **e != 0.0).count() as f64,
        }
        Ok((v / b, g))
    }
}

/// The objective on device batches: `r = y − XAᵀ` (GEMM), `½‖r‖²` (a device dot product),
/// the gradient `−RA/B` (GEMM) and the penalty term (one kernel with its reduction).
#[cfg(feature = "cuda")]
impl hyperprox_core::diff::BatchLossOn<hyperprox_core::cuda::GpuMat<f64>> for Objective {
    fn name_on(&self) -> String {
        hyperprox_core::diff::BatchLoss::name(self)
    }
    fn value_grad_on(
        &self,
        x: &hyperprox_core::cuda::GpuMat<f64>,
        y: &hyperprox_core::cuda::GpuMat<f64>,
        _t: &hyperprox_core::cuda::GpuMat<f64>,
        out: &mut hyperprox_core::cuda::GpuMat<f64>,
    ) -> Result<f64> {
        use hyperprox_core::cuda::{batch::penalty_grad, cached_matrix, gemm_rows_on, GpuMat};
        use hyperprox_core::diff::BatchMat;
        use hyperprox_core::linalg::Vector;
        let (b, m, n) = (x.rows(), self.a.nrows(), self.a.ncols());
        if (y.rows(), y.cols()) != (b, m) || x.cols() != n {
            return Err(Error::shape(
                "Objective",
                "x, y",
                format!("{b} × {n}, {b} × {m}"),
                format!("{} × {}, {} × {}", x.rows(), x.cols(), y.rows(), y.cols()),
            ));
        }
        let a = cached_matrix(x.gpu(), &self.a)?;
        let bf = b.max(1) as f64;
        let mut r = GpuMat::zeros(x.gpu(), b, m)?;
        r.assign_from(y)?;
        gemm_rows_on(&mut r, x, false, &a, true, -1.0, 1.0)?;
        let mut v = 0.5 * r.data().dot(r.data());
        out.ensure_shape(b, n)?;
        gemm_rows_on(out, &r, false, &a, false, -1.0 / bf, 0.0)?;
        let l1 = self.penalty == Penalty::L1;
        v += self.lambda * penalty_grad(out, x, self.lambda / bf, l1)?;
        Ok(v / bf)
    }
}

/// Where training, validation and test minibatches come from: a pure function of the size and
/// the seed, so a resumed run draws the same data. [`SparseSource`] (sparse signals measured by a
/// [`Problem`]) feeds the built-in models; any other data (image pairs, another forward model)
/// implements this and trains with [`train_on`], unchanged.
pub trait BatchSource {
    /// `size` samples drawn with `seed` (true signals in `x`, what the network sees in `y`).
    fn draw(&self, size: usize, seed: u64) -> Result<Batch>;
    /// What identifies the data in a checkpoint beside the configuration (`Null`: nothing).
    fn fingerprint(&self) -> Value {
        Value::Null
    }
    /// The unsupervised loss (the original objective of a model with λ and `penalty`), if this
    /// data defines one (default: none, so only supervised training).
    fn objective(&self, lambda: f64, penalty: Penalty) -> Option<Box<dyn BatchLoss>> {
        let _ = (lambda, penalty);
        None
    }
    /// [`BatchSource::objective`] on GPU batches (default: none, so unsupervised training on
    /// the GPU needs a source that defines it).
    #[cfg(feature = "cuda")]
    fn gpu_objective(&self, lambda: f64, penalty: Penalty) -> Option<Box<dyn GpuLoss>> {
        let _ = (lambda, penalty);
        None
    }
}

/// A loss on GPU batches.
#[cfg(feature = "cuda")]
pub trait GpuLoss: hyperprox_core::diff::BatchLossOn<hyperprox_core::cuda::GpuMat<f64>> {}
#[cfg(feature = "cuda")]
impl<L: hyperprox_core::diff::BatchLossOn<hyperprox_core::cuda::GpuMat<f64>>> GpuLoss for L {}

/// Sparse signals drawn from `signal` and measured by `problem`'s matrix ([`sample`]).
#[derive(Clone, Copy, Debug)]
pub struct SparseSource<'a> {
    /// The measurement problem.
    pub problem: &'a Problem,
    /// The signal distribution.
    pub signal: Signal,
}

impl BatchSource for SparseSource<'_> {
    fn draw(&self, size: usize, seed: u64) -> Result<Batch> {
        sample(self.problem, &self.signal, size, seed)
    }
    fn objective(&self, lambda: f64, penalty: Penalty) -> Option<Box<dyn BatchLoss>> {
        Some(Box::new(Objective::new(self.problem, lambda, penalty)))
    }
    #[cfg(feature = "cuda")]
    fn gpu_objective(&self, lambda: f64, penalty: Penalty) -> Option<Box<dyn GpuLoss>> {
        Some(Box::new(Objective::new(self.problem, lambda, penalty)))
    }
}

/// Training settings. Defaults: supervised, training signal p = 0.1 at 40 dB, batch 100,
/// incremental with 200 minibatches per layer (the TISTA script's generation length),
/// 200 final minibatches at lr/10, Adam lr 1e-2, validation set of 1000, seed 1.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// The loss.
    pub loss: LossKind,
    /// Training distribution of [`train`] (other [`BatchSource`]s ignore it).
    pub signal: Signal,
    /// Minibatch size.
    pub batch: usize,
    /// Minibatches per incremental stage.
    pub steps_per_layer: usize,
    /// Minibatches of the final whole-network stage.
    pub final_steps: usize,
    /// Layer-wise training.
    pub incremental: bool,
    /// Learning rate.
    pub lr: f64,
    /// `None`: Adam; `Some(μ)`: SGD with heavy-ball momentum `μ`.
    pub sgd_momentum: Option<f64>,
    /// Learning-rate factor of the final stage.
    pub final_lr_factor: f64,
    /// Seed of the minibatches and the validation set.
    pub seed: u64,
    /// Validation samples.
    pub val_size: usize,
    /// Where the minibatches' forward and backward passes run ([`Device::Cuda`]: on a GPU, for
    /// the models with device layers, DU-ISTA and DU-IHT; the optimizer, the parameters, the
    /// data and the validation stay on the host). Not part of a checkpoint's configuration: a
    /// run resumes on either device.
    pub device: Device,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            loss: LossKind::Supervised,
            signal: Signal::default(),
            batch: 100,
            steps_per_layer: 200,
            final_steps: 200,
            incremental: true,
            lr: 1e-2,
            sgd_momentum: None,
            final_lr_factor: 0.1,
            seed: 1,
            val_size: 1000,
            device: Device::Cpu,
        }
    }
}

impl TrainConfig {
    /// The default Adam learning rate of a model: 1e-2 for the models with a few scalars per
    /// layer, 1e-3 for those that learn matrices (LISTA, LISTA-CP, LISTA-CPSS), where 1e-2
    /// diverges on the default setting.
    pub fn default_lr(kind: crate::model::ModelKind) -> f64 {
        kind.info().default_lr
    }

    /// `Err` on an empty batch, no steps, more than `2³²` minibatches per stage, or a bad
    /// learning rate.
    pub fn check(&self) -> Result<()> {
        self.signal.check()?;
        if self.batch == 0 || self.val_size == 0 {
            return Err(Error::param(
                "batch / validation size",
                0,
                "must be at least 1",
            ));
        }
        if self.steps_per_layer == 0 && self.final_steps == 0 {
            return Err(Error::param("steps", 0, "train for at least one minibatch"));
        }
        // With at most 2²⁰ layers (`ModelSpec::check`) the schedule's total stays below 2⁵³.
        for (n, v) in [
            ("steps_per_layer", self.steps_per_layer),
            ("final_steps", self.final_steps),
        ] {
            if v > MAX_STEPS {
                return Err(Error::param(
                    n,
                    v,
                    format!("at most {MAX_STEPS} minibatches"),
                ));
            }
        }
        if let Some(mu) = self.sgd_momentum {
            if !(0.0..1.0).contains(&mu) {
                return Err(Error::param(
                    "sgd momentum",
                    mu,
                    "must lie in [0, 1) (e.g. 0.9)",
                ));
            }
        }
        for (n, v) in [("lr", self.lr), ("final_lr_factor", self.final_lr_factor)] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(Error::param(n, v, "must be positive (e.g. lr 1e-2)"));
            }
        }
        Ok(())
    }

    /// The stages `(depth, minibatches, learning rate)` for a network of `t_max` layers.
    pub fn stages(&self, t_max: usize) -> Vec<(usize, usize, f64)> {
        let mut s = Vec::new();
        if self.incremental {
            for t in 1..=t_max {
                s.push((t, self.steps_per_layer, self.lr));
            }
        } else {
            s.push((t_max, self.steps_per_layer * t_max, self.lr));
        }
        if self.final_steps > 0 {
            s.push((t_max, self.final_steps, self.lr * self.final_lr_factor));
        }
        s.retain(|st| st.1 > 0);
        s
    }

    fn fingerprint(&self) -> Value {
        json!({
            "loss": self.loss.as_str(), "p": self.signal.p, "snr_db": self.signal.snr_db,
            "batch": self.batch, "steps_per_layer": self.steps_per_layer,
            "final_steps": self.final_steps, "incremental": self.incremental, "lr": self.lr,
            "sgd_momentum": self.sgd_momentum,
            "final_lr_factor": self.final_lr_factor, "seed": self.seed, "val_size": self.val_size,
        })
    }
}

/// One finished stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// Depth trained.
    pub depth: usize,
    /// Minibatches.
    pub steps: usize,
    /// Mean training loss over the stage's last 20 % of minibatches.
    #[serde(with = "hyperprox_core::figure::serde_num")]
    pub train_loss: f64,
    /// Validation loss at the end of the stage (at this depth).
    #[serde(with = "hyperprox_core::figure::serde_num")]
    pub val_loss: f64,
}

/// Training progress, and the checkpoint: parameters, optimizer state, position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Parameters.
    pub params: Vec<f64>,
    /// Minibatches done (over all stages).
    pub step: u64,
    /// Index of the current stage.
    pub stage: usize,
    /// Optimizer state: Adam's first moments, second moments and step count, or SGD's
    /// momentum buffer, nothing and the steps of the stage.
    pub adam: (Vec<f64>, Vec<f64>, u64),
    /// Finished stages.
    pub history: Vec<StageRecord>,
    /// Losses of the current stage's minibatches so far.
    pub stage_losses: Vec<f64>,
    /// Minibatches skipped for a non-finite gradient.
    pub skipped: u64,
    /// The configuration it was trained with.
    pub config: Value,
}

const CHECKPOINT_FORMAT: &str = "hyperprox-unfolded-checkpoint-v2";

impl TrainState {
    /// JSON checkpoint (format `hyperprox-unfolded-checkpoint-v2`; non-finite losses as `null`).
    pub fn to_json(&self) -> Value {
        // Numbers, strings, lists and the stored configuration always serialize.
        hyperprox_core::io::to_tagged_json(CHECKPOINT_FORMAT, self).unwrap_or(Value::Null)
    }

    /// Reads [`TrainState::to_json`].
    pub fn from_json(v: &Value) -> Result<Self> {
        hyperprox_core::io::from_tagged_json(
            CHECKPOINT_FORMAT,
            "checkpoint",
            "not a hyperprox unfolded checkpoint of this version; train without --resume",
            v.clone(),
        )
    }
}

/// The most minibatches per layer (and in the final stage): `2³²`.
const MAX_STEPS: usize = 1 << 32;

/// What the progress callback sees after each minibatch.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Minibatches done.
    pub step: u64,
    /// Total minibatches of the run.
    pub total: u64,
    /// Depth of the current stage.
    pub depth: usize,
    /// This minibatch's loss.
    pub loss: f64,
}

/// The training loss for a model.
pub fn loss_for(
    model: &dyn UnfoldedModel,
    problem: &Problem,
    kind: LossKind,
) -> Box<dyn BatchLoss> {
    match kind {
        LossKind::Supervised => Box::new(SquaredError),
        LossKind::Unsupervised => {
            let (lambda, penalty) = model.objective();
            Box::new(Objective::new(problem, lambda, penalty))
        }
    }
}

/// `(loss, ∂loss/∂params)` of `model` on `batch` after `depth` layers (allocates a fresh
/// workspace; training reuses one through [`loss_and_grad_ws`]).
pub fn loss_and_grad(
    model: &dyn UnfoldedModel,
    loss: &dyn BatchLoss,
    batch: &Batch,
    depth: usize,
) -> Result<(f64, Vec<f64>)> {
    let mut ws = TrainWorkspace::default();
    let (v, g) = loss_and_grad_ws(model, loss, batch, depth, &mut ws)?;
    Ok((v, g.to_vec()))
}

/// Buffers that [`loss_and_grad_ws`] reuses from minibatch to minibatch.
#[derive(Debug, Default)]
pub struct TrainWorkspace {
    net: UnrolledWorkspace<f64>,
    x0: Array2<f64>,
    /// The gradient of the general (allocating) path.
    grad: Vec<f64>,
    /// The GPU engine when training on a device.
    #[cfg(feature = "cuda")]
    gpu: Option<GpuEngine>,
}

impl TrainWorkspace {
    /// A workspace whose [`loss_and_grad_ws`] runs on `device`: the host's buffers for
    /// [`Device::Cpu`]; for [`Device::Cuda`], the model's device network
    /// ([`UnfoldedModel::gpu_net`], DU-ISTA and DU-IHT) and the loss `kind` on device batches.
    /// `Err` where the device cannot be used (no `cuda` feature, no driver or GPU) or the model
    /// or the data has no device version.
    pub fn for_device(
        device: Device,
        model: &dyn UnfoldedModel,
        kind: LossKind,
        source: &dyn BatchSource,
    ) -> Result<Self> {
        #[allow(unused_mut)]
        let mut work = TrainWorkspace::default();
        #[cfg(feature = "cuda")]
        if let Some(gpu) = device.gpu()? {
            work.gpu = Some(GpuEngine::new(gpu, model, kind, source)?);
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (model, kind, source);
            device.check()?;
        }
        Ok(work)
    }
}

/// The minibatch pass on a GPU: the model's device network, its workspace and the device
/// copies of the minibatch; the pass itself is the core's
/// [`value_and_grad_on`](hyperprox_core::diff::value_and_grad_on), as on the host.
#[cfg(feature = "cuda")]
struct GpuEngine {
    gpu: hyperprox_core::cuda::Gpu,
    net: hyperprox_core::diff::UnrolledOn<hyperprox_core::cuda::GpuMat<f64>>,
    ws: hyperprox_core::diff::UnrolledWorkspaceOn<hyperprox_core::cuda::GpuMat<f64>>,
    loss: Box<dyn GpuLoss>,
    x0: Option<hyperprox_core::cuda::GpuMat<f64>>,
    y: Option<hyperprox_core::cuda::GpuMat<f64>>,
    target: Option<hyperprox_core::cuda::GpuMat<f64>>,
}

#[cfg(feature = "cuda")]
impl std::fmt::Debug for GpuEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuEngine({:?})", self.gpu)
    }
}

#[cfg(feature = "cuda")]
impl GpuEngine {
    fn new(
        gpu: hyperprox_core::cuda::Gpu,
        model: &dyn UnfoldedModel,
        kind: LossKind,
        source: &dyn BatchSource,
    ) -> Result<Self> {
        if !model.plain_state() {
            return Err(Error::unsupported("training on the GPU", model.name()));
        }
        let net = model.gpu_net()?;
        let loss: Box<dyn GpuLoss> = match kind {
            LossKind::Supervised => Box::new(SquaredError),
            LossKind::Unsupervised => {
                let (lambda, penalty) = model.objective();
                source.gpu_objective(lambda, penalty).ok_or_else(|| {
                    Error::param(
                        "loss",
                        "unsupervised",
                        "this data defines no objective on the GPU; train supervised or with --device cpu",
                    )
                })?
            }
        };
        Ok(Self {
            gpu,
            net,
            ws: Default::default(),
            loss,
            x0: None,
            y: None,
            target: None,
        })
    }

    fn loss_and_grad(&mut self, p: &[f64], batch: &Batch, depth: usize) -> Result<(f64, &[f64])> {
        use hyperprox_core::cuda::GpuMat;
        let put = |slot: &mut Option<GpuMat<f64>>, a: ArrayView2<'_, f64>| -> Result<()> {
            match slot {
                Some(m) if (m.rows(), m.cols()) == a.dim() => m.upload_from(a),
                _ => {
                    *slot = Some(GpuMat::from_array(&self.gpu, a)?);
                    Ok(())
                }
            }
        };
        put(&mut self.y, batch.y.view())?;
        put(&mut self.target, batch.x.view())?;
        let shape = (batch.y.nrows(), self.net.in_dim());
        if self
            .x0
            .as_ref()
            .is_none_or(|m| (m.rows(), m.cols()) != shape)
        {
            self.x0 = Some(GpuMat::zeros(&self.gpu, shape.0, shape.1)?);
        }
        let (x0, y, t) = (
            self.x0.as_ref().expect("set above"),
            self.y.as_ref().expect("set above"),
            self.target.as_ref().expect("set above"),
        );
        self.net
            .value_and_grad(&mut self.ws, p, x0, y, depth, self.loss.as_ref(), t)
    }
}

/// [`loss_and_grad`] through the network's workspace path: for a model with a
/// [plain state](UnfoldedModel::plain_state) whose layers implement the `_ws` methods
/// (DU-ISTA, DU-IHT) and an allocation-free loss (supervised), no allocation after the first
/// call with a given batch shape. Returns the gradient as a slice of `ws`.
pub fn loss_and_grad_ws<'w>(
    model: &dyn UnfoldedModel,
    loss: &dyn BatchLoss,
    batch: &Batch,
    depth: usize,
    ws: &'w mut TrainWorkspace,
) -> Result<(f64, &'w [f64])> {
    #[cfg(feature = "cuda")]
    if let Some(g) = ws.gpu.as_mut() {
        return g.loss_and_grad(model.params(), batch, depth);
    }
    let (net, p, y, x) = (model.net(), model.params(), batch.y.view(), batch.x.view());
    if model.plain_state() {
        let shape = (y.nrows(), net.in_dim());
        if ws.x0.dim() != shape {
            ws.x0 = Array2::zeros(shape);
        }
        net.value_and_grad_ws(&mut ws.net, p, ws.x0.view(), y, depth, loss, x)
    } else {
        // A state with its own start and readout (e.g. extra momentum variables).
        let x0 = model.initial_state(y);
        let traj = net.forward_for_backward(p, x0.view(), y, depth)?;
        let est = model.readout(traj.last().view());
        let (v, g) = loss.value_grad(est.view(), y, x)?;
        let g = model.readout_vjp(traj.last().view(), g);
        ws.grad = net.backward(p, &traj, y, g)?.0;
        Ok((v, &ws.grad))
    }
}

/// Loss of `model` on `batch` at `depth` layers.
pub fn loss_value(
    model: &dyn UnfoldedModel,
    loss: &dyn BatchLoss,
    batch: &Batch,
    depth: usize,
) -> Result<f64> {
    let x0 = model.initial_state(batch.y.view());
    let traj = model
        .net()
        .forward(model.params(), x0.view(), batch.y.view(), depth)?;
    let est = model.readout(traj.last().view());
    Ok(loss
        .value_grad(est.view(), batch.y.view(), batch.x.view())?
        .0)
}

/// Trains `model` (see the module docs). Starts from `resume` if given (its configuration must
/// match), stops after at most `max_steps` more minibatches (`None`: to the end) and returns the
/// state to checkpoint; the model holds the parameters reached.
pub fn train(
    model: &mut dyn UnfoldedModel,
    problem: &Problem,
    cfg: &TrainConfig,
    resume: Option<TrainState>,
    max_steps: Option<u64>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainState> {
    train_ranks(
        &SelfComm::new(),
        model,
        problem,
        cfg,
        resume,
        max_steps,
        progress,
    )
}

/// [`train`] data parallel over the ranks of `comm` (see [`train_on_ranks`]).
pub fn train_ranks(
    comm: &dyn Communicator,
    model: &mut dyn UnfoldedModel,
    problem: &Problem,
    cfg: &TrainConfig,
    resume: Option<TrainState>,
    max_steps: Option<u64>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainState> {
    let source = SparseSource {
        problem,
        signal: cfg.signal,
    };
    train_on_ranks(comm, model, &source, cfg, resume, max_steps, progress)
}

/// [`train`] on any [`BatchSource`]: the same stages, optimizer, skipping of non-finite
/// minibatches and checkpoints (which also record the source's fingerprint). Unsupervised
/// training needs a source that defines the objective.
pub fn train_on(
    model: &mut dyn UnfoldedModel,
    source: &dyn BatchSource,
    cfg: &TrainConfig,
    resume: Option<TrainState>,
    max_steps: Option<u64>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainState> {
    train_on_ranks(
        &SelfComm::new(),
        model,
        source,
        cfg,
        resume,
        max_steps,
        progress,
    )
}

/// [`train_on`] data parallel over the ranks of `comm` (threads or MPI processes, see
/// [`hyperprox_core::comm`]): every rank draws the same seeded minibatch and takes its
/// contiguous share of the samples (balanced, [`balanced_shards`]); the loss and the gradient
/// are the ranks' means weighted by their shares `b_r/b`, summed in rank order, so every rank
/// holds the same bits and takes the same optimizer step. The result is the one-process
/// run's up to the rounding of the sums (the tests: 1e-10 relative). Validation losses are
/// evaluated on every rank (the whole validation set). With one rank it is [`train_on`],
/// bit for bit. A rank whose gradient fails stops every rank with its error.
pub fn train_on_ranks(
    comm: &dyn Communicator,
    model: &mut dyn UnfoldedModel,
    source: &dyn BatchSource,
    cfg: &TrainConfig,
    resume: Option<TrainState>,
    max_steps: Option<u64>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainState> {
    cfg.check()?;
    let ranks = comm.size();
    // This rank's rows of every minibatch.
    let rows = if ranks > 1 {
        let b = balanced_shards(&vec![1; cfg.batch], ranks)?;
        b[comm.rank()]..b[comm.rank() + 1]
    } else {
        0..cfg.batch
    };
    let share = rows.len() as f64 / cfg.batch as f64;
    let mut fingerprint = cfg.fingerprint();
    let data = source.fingerprint();
    if !data.is_null() {
        fingerprint["data"] = data;
    }
    let stages = cfg.stages(model.depth());
    let total: u64 = stages.iter().map(|s| s.1 as u64).sum();
    let np = model.params().len();
    let mut st = match resume {
        Some(s) => {
            if s.config != fingerprint {
                return Err(Error::param(
                    "resume",
                    "configuration differs",
                    "resume with the same training options as the checkpointed run",
                ));
            }
            hyperprox_core::linalg::check_len("resume", "parameters", np, s.params.len())?;
            hyperprox_core::linalg::check_len("resume", "optimizer moments", np, s.adam.0.len())?;
            model.params_mut().copy_from_slice(&s.params);
            s
        }
        None => TrainState {
            params: model.params().to_vec(),
            step: 0,
            stage: 0,
            adam: (vec![0.0; np], vec![0.0; np], 0),
            history: vec![],
            stage_losses: vec![],
            skipped: 0,
            config: fingerprint,
        },
    };
    let loss: Box<dyn BatchLoss> = match cfg.loss {
        LossKind::Supervised => Box::new(SquaredError),
        LossKind::Unsupervised => {
            let (lambda, penalty) = model.objective();
            source.objective(lambda, penalty).ok_or_else(|| {
                Error::param(
                    "loss",
                    "unsupervised",
                    "this data defines no objective to train on; train supervised",
                )
            })?
        }
    };
    let mut work = TrainWorkspace::for_device(cfg.device, model, cfg.loss, source)?;
    let val = source.draw(cfg.val_size, batch_seed(cfg.seed, u64::MAX))?;
    let stop_at = max_steps.map_or(u64::MAX, |m| st.step.saturating_add(m));
    while st.stage < stages.len() && st.step < stop_at {
        let (depth, steps, lr) = stages[st.stage];
        let (m, v, t) = std::mem::take(&mut st.adam);
        // A stage starts from zero moments (a fresh optimizer), a resumed one from its own.
        let mut opt = match cfg.sgd_momentum {
            None => Optimizer::Adam(Adam::from_state(lr, m, v, t)?),
            Some(mu) => Optimizer::Sgd(Sgd::from_state(lr, mu, m)?),
        };
        let done_before: u64 = stages[..st.stage].iter().map(|s| s.1 as u64).sum();
        while ((st.step - done_before) as usize) < steps && st.step < stop_at {
            let batch = source.draw(cfg.batch, batch_seed(cfg.seed, st.step))?;
            let reduced;
            let batch = if ranks > 1 {
                Batch {
                    x: batch.x.slice(ndarray::s![rows.clone(), ..]).to_owned(),
                    y: batch.y.slice(ndarray::s![rows.clone(), ..]).to_owned(),
                }
            } else {
                batch
            };
            let local_lg = loss_and_grad_ws(model, loss.as_ref(), &batch, depth, &mut work)
                .map_err(|e| match e {
                    Error::Diverged { detail, .. } => Error::Diverged {
                        method: format!("training ({} layers)", depth),
                        iteration: st.step as usize + 1,
                        detail: format!("{detail}; lower the learning rate (now {lr:e})"),
                    },
                    e => e,
                });
            let (lv, g): (f64, &[f64]) = if ranks > 1 {
                // [loss, gradient] weighted by this rank's share, summed over the ranks.
                let local = local_lg.map(|(v, g)| {
                    std::iter::once(v * share)
                        .chain(g.iter().map(|e| e * share))
                        .collect()
                });
                reduced = sum_checked(comm, local, 1 + np)?;
                (reduced[0], &reduced[1..])
            } else {
                local_lg?
            };
            if lv.is_finite() && g.iter().all(|e| e.is_finite()) {
                opt.step(model.params_mut(), g)?;
                st.stage_losses.push(lv);
            } else {
                st.skipped += 1;
            }
            st.step += 1;
            progress(&Progress {
                step: st.step,
                total,
                depth,
                loss: lv,
            });
        }
        if ((st.step - done_before) as usize) >= steps {
            let tail = (st.stage_losses.len() / 5)
                .max(1)
                .min(st.stage_losses.len());
            let tl = &st.stage_losses[st.stage_losses.len() - tail..];
            st.history.push(StageRecord {
                depth,
                steps,
                train_loss: tl.iter().sum::<f64>() / tl.len().max(1) as f64,
                val_loss: loss_value(model, loss.as_ref(), &val, depth)?,
            });
            st.stage += 1;
            st.stage_losses.clear();
            st.adam = (vec![0.0; np], vec![0.0; np], 0);
        } else {
            let done = st.step - done_before;
            st.adam = match &opt {
                Optimizer::Adam(a) => {
                    let (m, v, t) = a.state();
                    (m.to_vec(), v.to_vec(), t)
                }
                Optimizer::Sgd(s) => (s.state().to_vec(), vec![], done),
            };
        }
    }
    st.params = model.params().to_vec();
    Ok(st)
}

/// The estimates of `model` for the measurements `y` (one per row) after all its layers.
pub fn estimate(model: &dyn UnfoldedModel, y: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
    let x0 = model.initial_state(y);
    let traj = model
        .net()
        .forward(model.params(), x0.view(), y, model.depth())?;
    Ok(model.readout(traj.last().view()))
}

/// Test curves of `model` on `batch`: NMSE (dB) and mean objective after 0, 1, …, T layers.
pub fn evaluate(model: &dyn UnfoldedModel, problem: &Problem, batch: &Batch) -> Result<Curves> {
    let x0 = model.initial_state(batch.y.view());
    let traj = model
        .net()
        .forward(model.params(), x0.view(), batch.y.view(), model.depth())?;
    let xs: Vec<Array2<f64>> = traj.xs.iter().map(|s| model.readout(s.view())).collect();
    let (lambda, penalty) = model.objective();
    Ok(Curves::of(problem, batch, &xs, lambda, penalty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_with_non_finite_losses() {
        let st = TrainState {
            params: vec![0.5, -1.25],
            step: 17,
            stage: 2,
            adam: (vec![0.1, 0.2], vec![0.3, 0.4], 9),
            history: vec![StageRecord {
                depth: 1,
                steps: 10,
                train_loss: f64::NAN,
                val_loss: 0.75,
            }],
            stage_losses: vec![1.0, 2.0],
            skipped: 1,
            config: json!({"lr": 0.01}),
        };
        let back = TrainState::from_json(&st.to_json()).unwrap();
        assert!(back.history[0].train_loss.is_nan());
        assert_eq!(
            (back.params, back.adam, back.step),
            (st.params.clone(), st.adam.clone(), 17)
        );
        assert_eq!(back.config, st.config);
        let mut wrong = st.to_json();
        wrong["format"] = json!("hyperprox-unfolded-checkpoint-v1");
        assert!(
            TrainState::from_json(&wrong).is_err(),
            "older formats are refused"
        );
    }
}

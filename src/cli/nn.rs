//! `hyperprox nn`: train small classifiers built from the neural blocks.

use super::common::{
    check_out_dir, create_dir, print_line, progress, read_text, usage, write_json, write_outputs,
    CliResult,
};
use clap::{Args, Subcommand, ValueEnum};
use hyperprox::core::figure::{Figure, LinePlot, Series};
use hyperprox::core::linalg::Real;
use hyperprox::core::nn::loss::LossSpec;
use hyperprox::core::nn::optim::Method;
use hyperprox::core::nn::train::{
    digits_split, throughput, Arch, EpochRecord, TrainConfig, TrainState, Trainer, DIGITS_TRAIN,
};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// `hyperprox nn …`
#[derive(Subcommand, Debug)]
pub enum NnCommand {
    /// Train a classifier on the shipped digits (8×8, fixed split 1297/200/300). Writes
    /// OUT/model.json, OUT/checkpoint.json (every epoch; `--resume` continues it),
    /// OUT/report.json (train_loss, val_loss, test_accuracy per epoch, timings) and
    /// OUT/figure.png (the curves).
    Train(TrainArgs),
    /// Training throughput (samples/s of forward, cross-entropy and backward at a fixed
    /// minibatch, random data) of an architecture on 8×8 single-channel inputs and 10
    /// classes; prints one JSON line (`benches/peers_nn.py` compares it with PyTorch).
    Bench(BenchArgs),
}

/// Arguments of `nn bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Architecture, as for `nn train` (the benchmark's MLP: mlp:256,256; CNN: cnn:16,32).
    #[arg(long, default_value = "mlp:256,256")]
    arch: String,
    /// Minibatch size.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Precision.
    #[arg(long, value_enum, default_value = "f32")]
    precision: PrecisionArg,
    /// Minimum seconds timed.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
}

/// The data sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataArg {
    /// The shipped handwritten digits.
    Digits,
}

/// Floating-point precision of the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    /// Single precision (the default, as in deep-learning frameworks).
    F32,
    /// Double precision.
    F64,
}

/// Arguments of `nn train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Data set.
    #[arg(long, value_enum, default_value = "digits")]
    data: DataArg,
    /// Architecture: `mlp:W1,W2,…` (dense + ReLU layers) or `cnn:C1,C2,…` (3×3 convolution +
    /// ReLU + 2×2 max pooling per entry), then a dense output layer.
    #[arg(long, default_value = "mlp:128,128")]
    arch: String,
    /// Dropout rate after each hidden layer (MLP) or before the output layer (CNN).
    #[arg(long, default_value_t = 0.0)]
    dropout: f64,
    /// Loss: ce (cross-entropy), ls (label smoothing 0.1), stablemax, zloss (a = 1, b = 2),
    /// elr (λ = 3, β = 0.7), pskd (α_T = 0.8).
    #[arg(long, default_value = "ce")]
    loss: String,
    /// Optimizer: adam, adamw, sgd (momentum 0.9), rmsprop, adabelief.
    #[arg(long, default_value = "adam")]
    optimizer: String,
    /// Learning rate (default: 1e-3, or 0.05 for sgd).
    #[arg(long)]
    lr: Option<f64>,
    /// Weight decay on the weights (not on biases).
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// ⊥Grad: remove the component of each gradient along its weights.
    #[arg(long)]
    orthogonal: bool,
    /// Cosine decay of the learning rate to 0 over the run.
    #[arg(long)]
    cosine: bool,
    /// ISS-P pruning of this fraction of every weight matrix (shrink factor 0.95 per step for
    /// the first two thirds of the run, then the pruned set is frozen at zero).
    #[arg(long)]
    prune: Option<f64>,
    /// Epochs (default 60; 10 with --quick).
    #[arg(long)]
    epochs: Option<usize>,
    /// Ten epochs.
    #[arg(long)]
    quick: bool,
    /// Minibatch size.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Seed of the initialization, the minibatches and the dropout masks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Precision.
    #[arg(long, value_enum, default_value = "f32")]
    precision: PrecisionArg,
    /// Continue from OUT/checkpoint.json (the other options must match the checkpoint's,
    /// except --epochs, which may extend the run only if the loss and schedule do not depend
    /// on it).
    #[arg(long)]
    resume: bool,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `nn`.
pub fn run(cmd: NnCommand) -> CliResult<()> {
    match cmd {
        NnCommand::Train(a) => train(a),
        NnCommand::Bench(a) => bench(a),
    }
}

fn bench(a: BenchArgs) -> CliResult<()> {
    let arch = Arch::parse(&a.arch)?;
    if a.batch == 0 || a.batch > 1 << 16 {
        return usage(format!("--batch {}: use 1 to 65536", a.batch));
    }
    if !(a.seconds > 0.0 && a.seconds <= 600.0) {
        return usage(format!("--seconds {}: use (0, 600]", a.seconds));
    }
    let input = hyperprox::core::nn::ImageShape::new(1, 8, 8);
    let (sps, steps) = match a.precision {
        PrecisionArg::F32 => throughput::<f32>(&arch, input, 10, a.batch, a.seconds, 0)?,
        PrecisionArg::F64 => throughput::<f64>(&arch, input, 10, a.batch, a.seconds, 0)?,
    };
    print_line(&serde_json::json!({
        "arch": a.arch,
        "batch": a.batch,
        "precision": match a.precision { PrecisionArg::F32 => "f32", PrecisionArg::F64 => "f64" },
        "threads": rayon::current_num_threads(),
        "steps": steps,
        "samples_per_second": sps,
    }));
    Ok(())
}

/// `report.json`.
#[derive(Serialize)]
struct Report<'a> {
    data: DataArg,
    precision: &'static str,
    loss: String,
    config: &'a TrainConfig,
    parameters: usize,
    epochs: &'a [EpochRecord],
    final_test_accuracy: f64,
    best_val_accuracy: f64,
    train_seconds: f64,
    samples_per_second: f64,
    total_seconds: f64,
    model: String,
}

/// `model.json`.
#[derive(Serialize)]
struct Model<'a> {
    config: &'a TrainConfig,
    precision: &'static str,
    params: Vec<f64>,
    test_accuracy: f64,
}

fn config_of(a: &TrainArgs) -> CliResult<TrainConfig> {
    let arch = Arch::parse(&a.arch)?;
    let mut cfg = TrainConfig::digits(arch);
    cfg.loss = LossSpec::by_name(&a.loss)?;
    cfg.method = Method::by_name(&a.optimizer)?;
    cfg.lr =
        a.lr.unwrap_or(if a.optimizer == "sgd" { 0.05 } else { 1e-3 });
    if !(cfg.lr > 0.0 && cfg.lr.is_finite()) {
        return usage(format!("--lr {}: use a positive learning rate", cfg.lr));
    }
    if !(a.weight_decay >= 0.0) {
        return usage(format!("--weight-decay {}: must be ≥ 0", a.weight_decay));
    }
    if !(0.0..1.0).contains(&a.dropout) {
        return usage(format!("--dropout {}: use a rate in [0, 1)", a.dropout));
    }
    if a.batch == 0 || a.batch > 1 << 20 {
        return usage(format!("--batch {}: use 1 to 1048576", a.batch));
    }
    let epochs = a.epochs.unwrap_or(if a.quick { 10 } else { 60 });
    if epochs == 0 || epochs > 100_000 {
        return usage(format!("--epochs {epochs}: use 1 to 100000"));
    }
    if let Some(r) = a.prune {
        if !(0.0..1.0).contains(&r) {
            return usage(format!("--prune {r}: use a fraction in [0, 1)"));
        }
        let steps = epochs as u64 * (DIGITS_TRAIN as u64).div_ceil(a.batch as u64);
        cfg.prune = Some(hyperprox::core::nn::optim::IssP {
            ratio: r,
            shrink: 0.95,
            prune_steps: steps * 2 / 3,
        });
    }
    cfg.weight_decay = a.weight_decay;
    cfg.orthogonal = a.orthogonal;
    cfg.cosine = a.cosine;
    cfg.dropout = a.dropout;
    cfg.epochs = epochs;
    cfg.batch = a.batch;
    cfg.seed = a.seed;
    Ok(cfg)
}

fn train(a: TrainArgs) -> CliResult<()> {
    check_out_dir(&a.out)?;
    let cfg = config_of(&a)?;
    match a.precision {
        PrecisionArg::F32 => train_in::<f32>(&a, cfg),
        PrecisionArg::F64 => train_in::<f64>(&a, cfg),
    }
}

/// Whether a run may be extended to more epochs (nothing in it depends on the total).
fn extensible(c: &TrainConfig) -> bool {
    !c.cosine && !matches!(c.loss, LossSpec::Pskd { .. })
}

fn train_in<T: Real>(a: &TrainArgs, cfg: TrainConfig) -> CliResult<()> {
    let t0 = Instant::now();
    let split = digits_split::<T>()?;
    let n = split.train.len();
    let ckpt = a.out.join("checkpoint.json");
    let mut trainer = if a.resume {
        let text = read_text(&ckpt, "run without --resume first")?;
        let st: TrainState = serde_json::from_str(&text)
            .map_err(|e| super::common::CliError::Usage(format!("{}: {e}", ckpt.display())))?;
        let mut want = st.config.clone();
        want.epochs = cfg.epochs;
        if want != cfg {
            return usage(format!(
                "{}: the checkpoint was made with other options ({}); use the same options \
                 or another --out",
                ckpt.display(),
                serde_json::to_string(&st.config).unwrap_or_default()
            ));
        }
        if st.config.epochs != cfg.epochs && !extensible(&st.config) {
            return usage(format!(
                "--epochs {}: this run ({} epochs) uses a schedule or loss that depends on the \
                 number of epochs; resume with --epochs {}",
                cfg.epochs, st.config.epochs, st.config.epochs
            ));
        }
        let mut st = st;
        st.config.epochs = cfg.epochs;
        Trainer::<T>::resume(st, n)?
    } else {
        Trainer::<T>::new(cfg.clone(), n)?
    };
    create_dir(&a.out)?;
    let epochs = cfg.epochs;
    let pb = progress(epochs as u64, "epochs");
    pb.set_position(trainer.epoch() as u64);
    let mut train_seconds: f64 = trainer.history().iter().map(|r| r.seconds).sum();
    while trainer.epoch() < epochs {
        let rec = trainer.train_epoch(&split)?;
        train_seconds += rec.seconds;
        pb.set_position(rec.epoch as u64);
        pb.set_message(format!(
            "loss {:.3e}  val acc {:.3}",
            rec.train_loss, rec.val_accuracy
        ));
        write_json(&ckpt, &trainer.state())?;
    }
    pb.finish_and_clear();
    let hist = trainer.history().to_vec();
    let last = hist.last().cloned().ok_or_else(|| {
        super::common::CliError::Usage("no epoch was trained; raise --epochs".into())
    })?;
    let model_path = a.out.join("model.json");
    write_json(
        &model_path,
        &Model {
            config: &cfg,
            precision: T::NAME,
            params: trainer.params.iter().map(|v| v.as_f64()).collect(),
            test_accuracy: last.test_accuracy,
        },
    )?;
    let samples = hist.len() as f64 * n as f64;
    let report = Report {
        data: a.data,
        precision: T::NAME,
        loss: trainer.loss_name(),
        config: &cfg,
        parameters: trainer.params.len(),
        epochs: &hist,
        final_test_accuracy: last.test_accuracy,
        best_val_accuracy: hist.iter().map(|r| r.val_accuracy).fold(0.0, f64::max),
        train_seconds,
        samples_per_second: samples / train_seconds.max(1e-12),
        total_seconds: t0.elapsed().as_secs_f64(),
        model: model_path.display().to_string(),
    };
    let col = |f: fn(&EpochRecord) -> f64| -> Vec<(f64, f64)> {
        hist.iter().map(|r| (r.epoch as f64, f(r))).collect()
    };
    let figure = Figure {
        plots: vec![
            LinePlot::new(format!("{} on digits", a.arch), "epoch", "loss")
                .log(false, true)
                .with(Series::new("train loss", col(|r| r.train_loss)))
                .with(Series::new("validation cross-entropy", col(|r| r.val_loss))),
            LinePlot::new("accuracy", "epoch", "fraction correct")
                .with(Series::new("validation", col(|r| r.val_accuracy)))
                .with(Series::new("test", col(|r| r.test_accuracy))),
        ],
        panels: vec![],
    };
    write_outputs(&a.out, &report, None::<&[()]>, &figure)?;
    print_line(&serde_json::json!({
        "arch": a.arch,
        "loss": report.loss,
        "precision": T::NAME,
        "epochs": hist.len(),
        "final_test_accuracy": last.test_accuracy,
        "train_seconds": train_seconds,
        "samples_per_second": report.samples_per_second,
        "out": a.out.display().to_string(),
    }));
    Ok(())
}

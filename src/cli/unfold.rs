//! `hyperprox unfold …`: deep-unfolded ISTA/IHT and the LISTA family.

use super::common::{
    create_dir, progress, read_json, usage, write_json, write_outputs, CliError, CliResult,
};
use clap::{Args, Subcommand};
use hyperprox::core::device::Device;
use hyperprox::core::diff::checkpointed;
use hyperprox::unfolded::experiments::{compare, Comparison, TrainingSummary};
use hyperprox::unfolded::train::{train_ranks, Progress, TrainConfig, TrainState};
use hyperprox::unfolded::{LossKind, ModelKind, ModelSpec, Problem, Signal, Unfolded};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `hyperprox unfold` subcommands.
#[derive(Subcommand, Debug)]
pub enum UnfoldCommand {
    /// Train an unfolded model on synthetic sparse recovery (default: N = 500, M = 250,
    /// Bernoulli–Gaussian p = 0.1, SNR 40 dB) and evaluate it against ISTA, FISTA and IHT.
    /// Writes OUT/model.json, OUT/checkpoint.json, OUT/report.json and OUT/figure.png.
    Train(TrainArgs),
    /// Evaluate a trained model (OUT/model.json of `train`) on a fresh test set, optionally
    /// from another distribution (--test-p, --test-snr). Writes OUT/report.json, OUT/figure.png.
    Eval(EvalArgs),
}

/// Test-set options shared by `train` and `eval`.
#[derive(Args, Debug, Clone)]
pub struct TestArgs {
    /// Test sparsity (default: the training p); a different value is a mismatch experiment.
    #[arg(long)]
    test_p: Option<f64>,
    /// Test SNR in dB (default: the training SNR).
    #[arg(long)]
    test_snr: Option<f64>,
    /// Noiseless test set.
    #[arg(long)]
    test_noiseless: bool,
    /// Test samples.
    #[arg(long, default_value_t = 500)]
    test_size: usize,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

/// `unfold train` options.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The model: du-ista, du-iht (learned steps), lista (W₁, W₂, θ per layer), lista-cp
    /// (W, θ), lista-cpss (with support selection), alista (analytic W; γ, θ), tista (γ, MMSE
    /// shrinkage).
    #[arg(long, value_enum)]
    model: ModelKind,
    /// The training loss: supervised (‖x_T − x‖²) or unsupervised (the original objective
    /// ½‖y − Ax_T‖² + λ‖x_T‖₁, ‖x_T‖₀ for DU-IHT).
    #[arg(long, value_enum, default_value = "supervised")]
    loss: LossKind,
    /// Number of layers T.
    #[arg(long, default_value_t = 16)]
    layers: usize,
    /// λ of the original problem ½‖y − Ax‖² + λ‖x‖₁ (or λ‖x‖₀).
    #[arg(long, default_value_t = 0.1)]
    lambda: f64,
    /// Signal length N.
    #[arg(long, default_value_t = 500)]
    n: usize,
    /// Measurements M.
    #[arg(long, default_value_t = 250)]
    m: usize,
    /// Training sparsity (Bernoulli probability).
    #[arg(long, default_value_t = 0.1)]
    p: f64,
    /// Training SNR in dB.
    #[arg(long, default_value_t = 40.0)]
    snr: f64,
    /// Noiseless training data (ignores --snr).
    #[arg(long)]
    noiseless: bool,
    /// Minibatch size.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Minibatches per incremental stage.
    #[arg(long, default_value_t = 200)]
    steps_per_layer: usize,
    /// Minibatches of the final whole-network stage (at lr/10).
    #[arg(long, default_value_t = 200)]
    final_steps: usize,
    /// Train the whole network from the start instead of layer by layer.
    #[arg(long)]
    no_incremental: bool,
    /// Adam learning rate (default: 1e-2, or 1e-3 for the LISTA models that learn matrices).
    #[arg(long)]
    lr: Option<f64>,
    /// Use SGD with this heavy-ball momentum (e.g. 0.9) instead of Adam.
    #[arg(long)]
    sgd_momentum: Option<f64>,
    /// Seed of the sensing matrix.
    #[arg(long, default_value_t = 1)]
    matrix_seed: u64,
    /// Seed of the minibatches, validation and test sets.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Validation samples.
    #[arg(long, default_value_t = 1000)]
    val_size: usize,
    /// Resume from OUT/checkpoint.json.
    #[arg(long)]
    resume: bool,
    /// Stop after this many minibatches (a checkpoint is written; continue with --resume).
    #[arg(long)]
    max_steps: Option<u64>,
    /// Reduced size for a quick check: N = 100, M = 50, 50 minibatches per layer.
    #[arg(long)]
    quick: bool,
    /// Where the minibatches' forward and backward passes run: cpu, or cuda / cuda:N (an
    /// NVIDIA GPU; DU-ISTA and DU-IHT; needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu", value_parser = super::solve::parse_device)]
    device: Device,
    #[command(flatten)]
    test: TestArgs,
}

/// `unfold eval` options.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A model.json written by `unfold train`.
    #[arg(long)]
    model: PathBuf,
    /// Seed of the test set.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    test: TestArgs,
}

/// Runs a subcommand.
pub fn run(cmd: UnfoldCommand) -> CliResult<()> {
    match cmd {
        UnfoldCommand::Train(a) => train_cmd(a),
        UnfoldCommand::Eval(a) => eval_cmd(a),
    }
}

fn test_signal(t: &TestArgs, train: Signal) -> CliResult<Signal> {
    let s = Signal {
        p: t.test_p.unwrap_or(train.p),
        snr_db: if t.test_noiseless {
            None
        } else {
            t.test_snr.or(train.snr_db)
        },
    };
    s.check()?;
    if t.test_size == 0 {
        return usage("--test-size must be at least 1");
    }
    Ok(s)
}

impl TrainArgs {
    /// The problem, the model and the training configuration.
    fn setup(&self) -> CliResult<(Problem, Unfolded, TrainConfig)> {
        let (n, m, spl, fin) = if self.quick {
            (
                100,
                50,
                self.steps_per_layer.min(50),
                self.final_steps.min(50),
            )
        } else {
            (self.n, self.m, self.steps_per_layer, self.final_steps)
        };
        if m > n {
            return usage(format!(
                "M = {m} > N = {n}: use fewer measurements than unknowns (--m < --n)"
            ));
        }
        let signal = Signal {
            p: self.p,
            snr_db: (!self.noiseless).then_some(self.snr),
        };
        let problem = Problem::gaussian(m, n, self.matrix_seed)?;
        let mut spec = ModelSpec::new(self.model, self.layers);
        spec.lambda = self.lambda;
        spec.signal = signal;
        let model = Unfolded::new(spec, &problem)?;
        let cfg = TrainConfig {
            loss: self.loss,
            signal,
            batch: self.batch,
            steps_per_layer: spl,
            final_steps: fin,
            incremental: !self.no_incremental,
            lr: self.lr.unwrap_or(TrainConfig::default_lr(self.model)),
            sgd_momentum: self.sgd_momentum,
            seed: self.seed,
            val_size: self.val_size,
            device: self.device,
            ..Default::default()
        };
        cfg.check()?;
        if !self.device.is_cpu() && !matches!(self.model, ModelKind::DuIsta | ModelKind::DuIht) {
            return usage(format!(
                "--device {}: only du-ista and du-iht train on the GPU; use --device cpu for {}",
                self.device,
                self.model.as_str()
            ));
        }
        Ok((problem, model, cfg))
    }
}

fn train_cmd(a: TrainArgs) -> CliResult<()> {
    let (problem, mut model, cfg) = a.setup()?;
    let test_sig = test_signal(&a.test, cfg.signal)?;
    // Every batch size against the problem, before the output folder is created.
    for (b, what) in [
        (cfg.batch, "--batch"),
        (cfg.val_size, "--val-size"),
        (a.test.test_size, "--test-size"),
    ] {
        hyperprox::unfolded::data::check_batch_size(&problem, b, what)?;
    }
    // A GPU that cannot be used is an error before anything is written.
    cfg.device.check()?;
    let comm = super::parallel::comm();
    let root = comm.rank() == 0;
    super::parallel::root_writes(|| create_dir(&a.test.out))?;
    let ckpt_path = a.test.out.join("checkpoint.json");
    let resume = a.resume.then(|| read_checkpoint(&ckpt_path)).transpose()?;
    let total: u64 = cfg.stages(a.layers).iter().map(|s| s.1 as u64).sum();
    let pb = if root {
        progress(total, "minibatches")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let t0 = Instant::now();
    let mut on_batch = |p: &Progress| {
        pb.set_position(p.step);
        if p.step % 10 == 0 {
            pb.set_message(format!("layer {:>2}  loss {:.4e}", p.depth, p.loss));
        }
    };
    // Zero minibatches: a fresh state, or the checkpoint checked against the options.
    let mut state = train_ranks(
        comm.as_ref(),
        &mut model,
        &problem,
        &cfg,
        resume,
        Some(0),
        &mut on_batch,
    )?;
    pb.set_position(state.step);
    let stop = a.max_steps.map_or(total, |m| (state.step + m).min(total));
    let advance = |st: &mut TrainState, target: u64| {
        let chunk = Some(target - st.step);
        *st = train_ranks(
            comm.as_ref(),
            &mut model,
            &problem,
            &cfg,
            Some(st.clone()),
            chunk,
            &mut on_batch,
        )?;
        Ok(())
    };
    // Rank 0 writes; every rank learns whether any rank failed.
    let save = |st: &TrainState| {
        let local = super::parallel::injected_failure(st.step)
            .map_err(CliError::from)
            .and_then(|_| {
                if root {
                    write_json(&ckpt_path, &st.to_json())
                } else {
                    Ok(())
                }
            });
        super::parallel::agreed(local)
    };
    checkpointed(&mut state, stop, 200, |s| s.step, advance, save)?;
    pb.finish_and_clear();
    let mut training = summary(&state, total, t0.elapsed().as_secs_f64());
    training.config["device"] = cfg.device.to_string().into();
    let mut c = compare(
        &model,
        (cfg.signal, test_sig),
        a.test.test_size,
        a.seed,
        cfg.loss.as_str(),
    )?;
    c.training = Some(training);
    super::parallel::root_writes(|| {
        write_json(&a.test.out.join("model.json"), &model.to_json())?;
        write_comparison(&c, &a.test.out)
    })?;
    if state.step < total {
        eprintln!(
            "stopped after {} of {total} minibatches; continue with --resume",
            state.step
        );
    }
    Ok(())
}

fn read_checkpoint(path: &Path) -> CliResult<TrainState> {
    let v = read_json(path, "train without --resume first")?;
    Ok(TrainState::from_json(&v)?)
}

fn summary(state: &TrainState, total: u64, time_s: f64) -> TrainingSummary {
    TrainingSummary {
        finished: state.step >= total,
        minibatches: state.step,
        total_minibatches: total,
        time_s,
        skipped_minibatches: state.skipped,
        config: state.config.clone(),
        stages: state.history.clone(),
    }
}

fn write_comparison(c: &Comparison, out: &Path) -> CliResult<()> {
    write_outputs(out, c, None::<&[()]>, &c.figure())?;
    println!(
        "{}; wrote {}",
        c.summary(),
        out.join("report.json").display()
    );
    Ok(())
}

fn eval_cmd(a: EvalArgs) -> CliResult<()> {
    let v = read_json(&a.model, "train a model with `hyperprox unfold train`")?;
    let model = Unfolded::from_json(&v)?;
    let train_sig = model.spec().signal;
    let test_sig = test_signal(&a.test, train_sig)?;
    hyperprox::unfolded::data::check_batch_size(model.problem(), a.test.test_size, "--test-size")?;
    create_dir(&a.test.out)?;
    // The training loss, from the report next to the model if there is one.
    let loss = a
        .model
        .parent()
        .map(|d| d.join("report.json"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|r| r["loss"].as_str().map(String::from))
        .unwrap_or_else(|| "unknown".into());
    let c = compare(
        &model,
        (train_sig, test_sig),
        a.test.test_size,
        a.seed,
        &loss,
    )?;
    write_comparison(&c, &a.test.out)
}

//! `hyperprox lpn …`: learned proximal networks.

use super::common::{
    check_out_dir, create_dir, print_line, progress, read_text, usage, write_outputs, write_text,
    CliError, CliResult,
};
use clap::{Args, Subcommand, ValueEnum};
use hyperprox::core::diff::checkpointed;
use hyperprox::core::figure::Figure;
use hyperprox::core::io::{read_npy, write_npy};
use hyperprox::lpn::experiments::{self, loss_plot, LaplacianLoss, TrainingInfo};
use hyperprox::lpn::train::{dataset_sampler, image_schedule, laplacian_schedule, total_steps};
use hyperprox::lpn::{
    digits, laplace, regularizer_rows, Icnn, IcnnConfig, InvertParams, Stage, TrainState,
};
use ndarray::{Array2, Ix2};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `hyperprox lpn` subcommands.
#[derive(Subcommand, Debug)]
pub enum LpnCommand {
    /// Train an LPN: `--data laplacian` (the paper's 1-D experiment) or `--data digits` (an
    /// 8×8 image prior). Writes OUT/model.json, OUT/checkpoint.json, OUT/report.json,
    /// OUT/figure.png.
    Train(TrainArgs),
    /// Apply f_θ to each row of a 2-D .npy array (or each entry of a 1-D array for a 1-D model).
    Apply(IoArgs),
    /// Evaluate the learned regularizer R_θ (f_θ = prox of R_θ) at each row / entry.
    Prior(IoArgs),
    /// Plug-and-play deblurring of test digits with a digits model: PnP-PGD and PnP-ADMM
    /// against TV; writes OUT/report.json and OUT/figure.png.
    Pnp(PnpArgs),
}

/// Data sets for training.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataSet {
    /// x ~ Laplace(0, 1), y = x + N(0, 1).
    Laplacian,
    /// The shipped handwritten digits (8×8), σ = 0.1.
    Digits,
}

/// Layer types of the digits network.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchArg {
    /// Fully connected.
    Dense,
    /// Convolutional (images).
    Conv,
}

/// Options of `lpn train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Data set.
    #[arg(long, value_enum)]
    data: DataSet,
    /// Loss of the Laplacian experiment: l2 (MMSE), l1 (posterior median) or prox-matching
    /// (after ℓ1 pre-training; the MAP denoiser). Digits always use ℓ1 then proximal matching.
    #[arg(long, value_enum, default_value_t = LaplacianLoss::ProxMatching)]
    loss: LaplacianLoss,
    /// A shortened run (about a minute on 2 cores). Laplacian: the expected loss by quadrature
    /// (noise-free full-batch gradients, 2000–4500 steps, down to γ = 0.05) instead of the
    /// paper's 48 000 minibatch steps; digits: 600 + 4×150 steps instead of 4000 + 4×1000.
    #[arg(long)]
    quick: bool,
    /// Layers of the digits network: dense (3 × 128 units) or conv (3 × 16 channels, 3×3).
    #[arg(long, value_enum, default_value_t = ArchArg::Dense)]
    arch: ArchArg,
    /// Minibatch size (default: 2000 for laplacian as in the paper, 64 for digits).
    #[arg(long)]
    batch: Option<usize>,
    /// Seed of the initialization and the minibatches.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Continue from OUT/checkpoint.json.
    #[arg(long)]
    resume: bool,
    /// Stop after this many steps in total (resume later with --resume).
    #[arg(long)]
    max_steps: Option<u64>,
    /// Test digits on which the prior curves (R under noise and blur) are averaged.
    #[arg(long, default_value_t = 100)]
    prior_samples: usize,
    /// Write OUT/checkpoint.json every this many steps.
    #[arg(long, default_value_t = 1000)]
    checkpoint_every: u64,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

/// Options of `lpn apply` and `lpn prior`.
#[derive(Args, Debug)]
pub struct IoArgs {
    /// A model written by `lpn train` (model.json).
    #[arg(long)]
    model: PathBuf,
    /// Input .npy (2-D: one sample per row; 1-D: entries, for a 1-D model).
    #[arg(long)]
    input: PathBuf,
    /// Output .npy.
    #[arg(long)]
    out: PathBuf,
}

/// Options of `lpn pnp`.
#[derive(Args, Debug)]
pub struct PnpArgs {
    /// A digits model (model.json from `lpn train --data digits`).
    #[arg(long)]
    model: PathBuf,
    /// Number of test digits.
    #[arg(long, default_value_t = 20)]
    images: usize,
    /// Width of the Gaussian blur (5×5 kernel).
    #[arg(long, default_value_t = 1.0)]
    blur: f64,
    /// Noise level after blurring.
    #[arg(long, default_value_t = 0.02)]
    noise: f64,
    /// Iterations of PnP-PGD and PnP-ADMM.
    #[arg(long, default_value_t = 100)]
    iters: usize,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `hyperprox lpn …`.
pub fn run(cmd: LpnCommand) -> CliResult<()> {
    match cmd {
        LpnCommand::Train(a) => train_cmd(a),
        LpnCommand::Apply(a) => apply_or_prior(a, false),
        LpnCommand::Prior(a) => apply_or_prior(a, true),
        LpnCommand::Pnp(a) => pnp_cmd(a),
    }
}

fn load_model(p: &Path) -> CliResult<Icnn> {
    let text = read_text(p, "pass a model.json written by `hyperprox lpn train`")?;
    Icnn::from_json(&text).map_err(|e| CliError::Usage(format!("{}: {e}", p.display())))
}

/// The rows of a 1-D (for a 1-D model) or 2-D input; `true` if it was 1-D.
fn read_rows(net: &Icnn, p: &Path) -> CliResult<(Array2<f64>, bool)> {
    let a = read_npy(p)?;
    let d = net.config().dim;
    let shape_err = |e: ndarray::ShapeError| CliError::Usage(format!("{}: {e}", p.display()));
    match a.ndim() {
        1 if d == 1 => {
            let n = a.len();
            Ok((a.into_shape_with_order((n, 1)).map_err(shape_err)?, true))
        }
        1 => usage(format!(
            "{}: a 1-D array needs a 1-D model (this model has dim {d}); pass one sample per row",
            p.display()
        )),
        2 => {
            let a = a.into_dimensionality::<Ix2>().map_err(shape_err)?;
            if a.ncols() != d {
                return usage(format!(
                    "{}: {} columns, but the model expects {d}",
                    p.display(),
                    a.ncols()
                ));
            }
            Ok((a, false))
        }
        k => usage(format!(
            "{}: {k}-D array; pass a 1-D or 2-D array",
            p.display()
        )),
    }
}

fn apply_or_prior(a: IoArgs, prior: bool) -> CliResult<()> {
    if a.out.extension().and_then(|e| e.to_str()) != Some("npy") {
        return usage(format!("{}: the output must end in .npy", a.out.display()));
    }
    let net = load_model(&a.model)?;
    let (rows, flat) = read_rows(&net, &a.input)?;
    let t0 = Instant::now();
    if prior {
        let (r, res) = regularizer_rows(&net, rows.view(), InvertParams::default())?;
        write_npy(&a.out, &r)?;
        let worst = res.iter().cloned().fold(0.0, f64::max);
        println!(
            "{}",
            serde_json::json!({"command": "lpn prior", "n": r.len(), "max_inversion_residual": worst, "time_s": t0.elapsed().as_secs_f64()})
        );
    } else {
        let f = net.prox(rows.view())?;
        if flat {
            write_npy(&a.out, &f.column(0).to_owned())?;
        } else {
            write_npy(&a.out, &f)?;
        }
        println!(
            "{}",
            serde_json::json!({"command": "lpn apply", "n": f.nrows(), "time_s": t0.elapsed().as_secs_f64()})
        );
    }
    Ok(())
}

/// The report of `lpn train`: the run, the evaluation and where the model is.
#[derive(Serialize)]
struct TrainReport<E: Serialize> {
    data: DataSet,
    #[serde(skip_serializing_if = "Option::is_none")]
    arch: Option<ArchArg>,
    loss: &'static str,
    quick: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    estimator: Option<&'static str>,
    #[serde(flatten)]
    training: TrainingInfo,
    #[serde(flatten)]
    evaluation: E,
    model: String,
}

/// Advances a state towards a target step, reporting `(step, loss)`.
type Segment<'a> = dyn FnMut(&mut TrainState, &mut dyn FnMut(u64, f64) -> bool) -> hyperprox::core::Result<()>
    + 'a;

/// Trains with checkpoints every `a.checkpoint_every` steps and a progress bar.
fn run_training(
    state: &mut TrainState,
    schedule: &[Stage],
    seg: &mut Segment<'_>,
    a: &TrainArgs,
) -> CliResult<()> {
    let end = total_steps(schedule).min(a.max_steps.unwrap_or(u64::MAX));
    let pb = progress(end, "steps");
    pb.set_position(state.step);
    let advance = |st: &mut TrainState, target: u64| {
        seg(st, &mut |step, loss| {
            if step % 20 == 0 {
                pb.set_position(step);
                pb.set_message(format!("loss {loss:.4e}"));
            }
            step < target
        })
    };
    // The inputs are validated (data, schedule, a checkpoint to resume): from here on there
    // is something to write.
    create_dir(&a.out)?;
    let ckpt = a.out.join("checkpoint.json");
    let save = |st: &TrainState| write_text(&ckpt, &st.to_json());
    let r = checkpointed(state, end, a.checkpoint_every, |s| s.step, advance, save);
    pb.finish_and_clear();
    r
}

fn train_cmd(a: TrainArgs) -> CliResult<()> {
    check_out_dir(&a.out)?;
    match a.data {
        DataSet::Laplacian => train_laplacian(&a),
        DataSet::Digits => train_digits(&a),
    }
}

/// `--batch` in 1..=2²⁰ (a larger minibatch would not fit in memory with its activations).
fn check_lpn_batch(batch: usize) -> CliResult<()> {
    if batch == 0 || batch > 1 << 20 {
        return usage(format!(
            "--batch {batch}: use 1 to 1048576 samples per minibatch"
        ));
    }
    Ok(())
}

fn train_laplacian(a: &TrainArgs) -> CliResult<()> {
    if a.arch == ArchArg::Conv {
        return usage("--arch conv applies to images (--data digits); the 1-D model is dense");
    }
    let t0 = Instant::now();
    let loss = a.loss.as_str();
    let schedule = match a.quick {
        true => laplace::population_schedule(loss)?,
        false => laplacian_schedule(loss, 1.0)?,
    };
    let batch = a.batch.unwrap_or(2000);
    check_lpn_batch(batch)?;
    let mut state = start_state(a, IcnnConfig::paper_1d())?;
    if a.quick {
        let pop = laplace::Population::new(400, 561);
        let mut seg = |st: &mut TrainState, obs: &mut dyn FnMut(u64, f64) -> bool| {
            laplace::train_population(st, &schedule, &pop, 50, obs)
        };
        run_training(&mut state, &schedule, &mut seg, a)?;
    } else {
        let sampler = laplace::sampler(batch, a.seed);
        let mut seg = |st: &mut TrainState, obs: &mut dyn FnMut(u64, f64) -> bool| {
            hyperprox::lpn::train(st, &schedule, &sampler, 50, obs)
        };
        run_training(&mut state, &schedule, &mut seg, a)?;
    }
    let training = TrainingInfo::of(&state, &schedule, batch, t0.elapsed().as_secs_f64());
    let last = schedule.last().map(|s| s.loss.name()).unwrap_or_default();
    let (evaluation, mut plots) = experiments::laplacian_eval(&state.net, &last)?;
    plots.push(loss_plot(&state));
    let report = TrainReport {
        data: DataSet::Laplacian,
        arch: None,
        loss,
        quick: a.quick,
        estimator: Some(if a.quick {
            "population (quadrature)"
        } else {
            "minibatch"
        }),
        training,
        evaluation,
        model: save_model(a, &state)?,
    };
    let figure = Figure {
        plots,
        panels: vec![],
    };
    write_outputs(&a.out, &report, None::<&[()]>, &figure)?;
    print_line(&report);
    Ok(())
}

fn train_digits(a: &TrainArgs) -> CliResult<()> {
    let t0 = Instant::now();
    let (train, test) = experiments::digits_split()?;
    let schedule = image_schedule(64, if a.quick { 600 } else { 4000 });
    let batch = a.batch.unwrap_or(64);
    check_lpn_batch(batch)?;
    let cfg = match a.arch {
        ArchArg::Conv => digits::conv_config(),
        ArchArg::Dense => digits::config(),
    };
    let mut state = start_state(a, cfg)?;
    let sampler = dataset_sampler(train, batch, 0.1, a.seed);
    let mut seg = |st: &mut TrainState, obs: &mut dyn FnMut(u64, f64) -> bool| {
        hyperprox::lpn::train(st, &schedule, &sampler, 50, obs)
    };
    run_training(&mut state, &schedule, &mut seg, a)?;
    let training = TrainingInfo::of(&state, &schedule, batch, t0.elapsed().as_secs_f64());
    let (evaluation, mut figure) = experiments::digits_eval(&state.net, &test, a.prior_samples)?;
    figure.plots.push(loss_plot(&state));
    let report = TrainReport {
        data: DataSet::Digits,
        arch: Some(a.arch),
        loss: "l1 then prox-matching",
        quick: a.quick,
        estimator: None,
        training,
        evaluation,
        model: save_model(a, &state)?,
    };
    write_outputs(&a.out, &report, None::<&[()]>, &figure)?;
    print_line(&report);
    Ok(())
}

/// Writes OUT/model.json and returns its path.
fn save_model(a: &TrainArgs, state: &TrainState) -> CliResult<String> {
    let path = a.out.join("model.json");
    write_text(&path, &state.net.to_json())?;
    Ok(path.display().to_string())
}

fn start_state(a: &TrainArgs, cfg: IcnnConfig) -> CliResult<TrainState> {
    if !a.resume {
        return Ok(TrainState::new(Icnn::new(cfg, a.seed)?)?);
    }
    let p = a.out.join("checkpoint.json");
    let st = TrainState::from_json(&read_text(&p, "run without --resume first")?)?;
    if st.net.config() != &cfg {
        return usage(format!(
            "{}: the checkpoint's architecture differs from --data {:?}",
            p.display(),
            a.data
        ));
    }
    Ok(st)
}

fn pnp_cmd(a: PnpArgs) -> CliResult<()> {
    let net = load_model(&a.model)?;
    if net.config().dim != 64 {
        return usage(format!(
            "{}: pnp needs a digits model (dim 64), this one has dim {}",
            a.model.display(),
            net.config().dim
        ));
    }
    if a.images == 0 || !(a.blur >= 0.0) || !(a.noise >= 0.0) || a.iters == 0 {
        return usage("--images and --iters must be positive, --blur and --noise non-negative");
    }
    create_dir(&a.out)?;
    let (report, figure) = experiments::pnp(&net, a.images, (a.blur, a.noise), a.iters)?;
    write_outputs(&a.out, &report, None::<&[()]>, &figure)?;
    print_line(&report);
    Ok(())
}

//! `hyperprox stn`: self-tuning networks.

use super::common::{
    check_out_dir, create_dir, print_line, progress, read_text, usage, write_json, write_outputs,
    CliError, CliResult,
};
use clap::{Args, Subcommand};
use hyperprox::core::diff::Differentiable;
use hyperprox::core::figure::{Figure, LinePlot, Series};
use hyperprox::core::io::{read_npy_1d, read_npy_2d};
use hyperprox::core::nn::train::digits_split;
use hyperprox::stn::digits::{
    best_run, grid_search, random_search, DigitsConfig, DigitsState, DigitsStn,
};
use hyperprox::stn::ridge::{RidgeData, RidgeStn, StnConfig, StnState, TrajectoryPoint};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `hyperprox stn …`
#[derive(Subcommand, Debug)]
pub enum StnCommand {
    /// Tune the ridge penalty λ of ½‖Xw − y‖²/n + ½λ‖w‖² for the validation loss
    /// ½‖X_v w − y_v‖²/n_v with an STN, in one training run. Data: the four .npy files, or a
    /// seeded synthetic problem. Writes OUT/report.json (the tuned `lambda`, the validation
    /// loss, the closed-form optimum for comparison, the trajectory), OUT/history.json,
    /// OUT/checkpoint.json (`--resume` continues it) and OUT/figure.png.
    Ridge(RidgeArgs),
    /// Tune the digits MLP (128-128; a dropout rate per hidden layer, input noise, label
    /// smoothing, weight decay) with an STN, against a 10-point dropout grid and 10 random
    /// configurations that share the same total number of training steps. Writes
    /// OUT/checkpoint.json (the STN run, after every evaluation; `--resume` continues it),
    /// OUT/report.json (one row per method: val_loss, test_loss, test_accuracy,
    /// train_steps_total, time_s, the hyperparameters), OUT/history.json (the STN's
    /// evaluations) and OUT/figure.png (the hyperparameter trajectories and the validation loss
    /// against training steps for every method).
    Digits(DigitsArgs),
}

/// Arguments of `stn digits`.
#[derive(Args, Debug)]
pub struct DigitsArgs {
    /// CI-sized: 1500 training steps in all per method (default 3000).
    #[arg(long)]
    quick: bool,
    /// Training steps per method (overrides --quick).
    #[arg(long)]
    steps: Option<u64>,
    /// Entropy weight τ.
    #[arg(long, default_value_t = 1e-3)]
    tau: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Continue the STN run of OUT/checkpoint.json (and with --delta the Delta-STN run of
    /// OUT/checkpoint-delta.json; same options; the baselines run again).
    #[arg(long)]
    resume: bool,
    /// Also run Delta-STN (centered gates, the linearized response step; Bae & Grosse 2020):
    /// a `delta_stn` row in report.json and its trajectories in figure.png.
    #[arg(long)]
    delta: bool,
    /// Also tune early-learning regularization's weight λ (from 3, in (0, 10); β = 0.7).
    #[arg(long)]
    elr: bool,
    /// Replace this fraction of the training labels by another class (seeded; validation and
    /// test labels stay clean), e.g. 0.4 to try --elr.
    #[arg(long, default_value_t = 0.0)]
    label_noise: f64,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

/// Arguments of `stn ridge`.
#[derive(Args, Debug)]
pub struct RidgeArgs {
    /// Training design (n × d, .npy).
    #[arg(long, requires_all = ["y_train", "x_val", "y_val"])]
    x_train: Option<PathBuf>,
    /// Training targets (n, .npy).
    #[arg(long)]
    y_train: Option<PathBuf>,
    /// Validation design (n_v × d, .npy).
    #[arg(long)]
    x_val: Option<PathBuf>,
    /// Validation targets (n_v, .npy).
    #[arg(long)]
    y_val: Option<PathBuf>,
    /// Synthetic problem (without the .npy files): training samples.
    #[arg(long, default_value_t = 60)]
    n_train: usize,
    /// Synthetic problem: validation samples.
    #[arg(long, default_value_t = 200)]
    n_val: usize,
    /// Synthetic problem: features.
    #[arg(long, default_value_t = 30)]
    dim: usize,
    /// Synthetic problem: noise standard deviation.
    #[arg(long, default_value_t = 1.0)]
    noise: f64,
    /// Synthetic problem: seed.
    #[arg(long, default_value_t = 5)]
    data_seed: u64,
    /// Training steps in all.
    #[arg(long, default_value_t = 6000)]
    steps: u64,
    /// Training steps before the first hyper step.
    #[arg(long, default_value_t = 200)]
    warmup: u64,
    /// Entropy weight τ.
    #[arg(long, default_value_t = 1e-3)]
    tau: f64,
    /// Initial λ.
    #[arg(long, default_value_t = 1.0)]
    lambda0: f64,
    /// Initial perturbation scale (in ln λ).
    #[arg(long, default_value_t = 1.0)]
    scale0: f64,
    /// Minibatch size.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Keep the perturbation scale fixed (validation without perturbation).
    #[arg(long)]
    fixed_scale: bool,
    /// Delta-STN: the centered parameterization (exact linearization for this linear model).
    #[arg(long)]
    delta: bool,
    /// Seed of the initialization and the draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Continue OUT/checkpoint.json (same options).
    #[arg(long)]
    resume: bool,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

/// Runs a `stn` command.
pub fn run(cmd: StnCommand) -> CliResult<()> {
    match cmd {
        StnCommand::Ridge(a) => ridge(a),
        StnCommand::Digits(a) => digits(a),
    }
}

#[derive(Serialize)]
struct Exact {
    lambda: f64,
    val_loss: f64,
}

#[derive(Serialize)]
struct RidgeReport<'a> {
    data: String,
    /// The tuned λ, in the penalty's own scale.
    lambda: f64,
    sigma: f64,
    /// `L_V` of the STN's weights ŵ(λ) on the whole validation set.
    val_loss: f64,
    /// `L_V` of the exact ridge solution at the tuned λ.
    val_loss_exact_weights: f64,
    /// The closed-form optimum over λ (for comparison).
    exact_optimum: Exact,
    log10_error: f64,
    steps: u64,
    hyper_steps: usize,
    time_s: f64,
    config: &'a StnConfig,
    trajectory: &'a [TrajectoryPoint],
}

fn load(a: &RidgeArgs) -> CliResult<(RidgeData, String)> {
    match (&a.x_train, &a.y_train, &a.x_val, &a.y_val) {
        (Some(xt), Some(yt), Some(xv), Some(yv)) => Ok((
            RidgeData::new(
                read_npy_2d(xt)?,
                read_npy_1d(yt)?,
                read_npy_2d(xv)?,
                read_npy_1d(yv)?,
            )?,
            format!("{}", xt.display()),
        )),
        (None, None, None, None) => {
            if a.n_train == 0 || a.n_val == 0 || a.dim == 0 {
                return usage("--n-train, --n-val and --dim must be at least 1");
            }
            if a.n_train.saturating_mul(a.dim) > 1 << 26 || a.n_val.saturating_mul(a.dim) > 1 << 26
            {
                return usage("the synthetic problem is limited to 2^26 entries per design");
            }
            if !(a.noise >= 0.0 && a.noise.is_finite()) {
                return usage(format!("--noise {}: use a standard deviation ≥ 0", a.noise));
            }
            Ok((
                RidgeData::synthetic(a.n_train, a.n_val, a.dim, a.noise, a.data_seed)?,
                format!(
                    "synthetic n={} n_val={} d={} noise={} seed={}",
                    a.n_train, a.n_val, a.dim, a.noise, a.data_seed
                ),
            ))
        }
        _ => usage("give all four of --x-train --y-train --x-val --y-val, or none"),
    }
}

fn ridge(a: RidgeArgs) -> CliResult<()> {
    check_out_dir(&a.out)?;
    let t0 = Instant::now();
    let (data, label) = load(&a)?;
    if data.dim() > 4096 {
        return usage(format!(
            "{} features: the closed-form reference is limited to 4096",
            data.dim()
        ));
    }
    let cfg = StnConfig {
        steps: a.steps,
        warmup: a.warmup,
        batch: a.batch,
        tau: a.tau,
        tune_scales: !a.fixed_scale,
        initial_lambda: a.lambda0,
        initial_scale: a.scale0,
        seed: a.seed,
        centered: a.delta,
        ..Default::default()
    };
    if a.steps == 0 || a.steps > 1 << 32 {
        return usage(format!("--steps {}: use 1 to 2^32", a.steps));
    }
    let stn = RidgeStn::new(&data);
    let ckpt = a.out.join("checkpoint.json");
    let mut st: StnState = if a.resume {
        let text = read_text(&ckpt, "run without --resume first")?;
        let st: StnState = serde_json::from_str(&text)
            .map_err(|e| CliError::Usage(format!("{}: {e}", ckpt.display())))?;
        if st.config != cfg {
            return usage(format!(
                "{}: the checkpoint was made with other options; use the same options or \
                 another --out",
                ckpt.display()
            ));
        }
        if st.params.len() != Differentiable::<f64>::num_params(stn.layer()) {
            return usage(format!(
                "{}: the checkpoint is for another number of features",
                ckpt.display()
            ));
        }
        st
    } else {
        stn.init(&cfg)?
    };
    create_dir(&a.out)?;
    let pb = progress(cfg.steps, "steps");
    pb.set_position(st.step);
    while st.step < cfg.steps {
        let until = (st.step / 1000 + 1) * 1000;
        stn.run(&mut st, until, &mut |k| {
            if k % 100 == 0 {
                pb.set_position(k);
            }
        })?;
        if let Some(p) = st.trajectory.last() {
            pb.set_message(format!("λ {:.4e}  σ {:.3}", p.lambda, p.sigma));
        }
        write_json(&ckpt, &st)?;
    }
    pb.finish_and_clear();
    let h = &st.hypers.hypers[0];
    let lambda = h.value();
    let (lstar, vstar) = data.exact_optimum()?;
    let report = RidgeReport {
        data: label,
        lambda,
        sigma: h.sigma(),
        val_loss: data.val_loss(stn.model_weights(&st)?.view()),
        val_loss_exact_weights: data.val_loss(data.exact_weights(lambda)?.view()),
        exact_optimum: Exact {
            lambda: lstar,
            val_loss: vstar,
        },
        log10_error: lambda.log10() - lstar.log10(),
        steps: st.step,
        hyper_steps: st.trajectory.len(),
        time_s: t0.elapsed().as_secs_f64(),
        config: &cfg,
        trajectory: &st.trajectory,
    };
    let pts = |f: fn(&TrajectoryPoint) -> f64| -> Vec<(f64, f64)> {
        st.trajectory
            .iter()
            .map(|p| (p.step as f64, f(p)))
            .collect()
    };
    let ends = |v: f64| vec![(0.0, v), (st.step as f64, v)];
    let figure = Figure {
        plots: vec![
            LinePlot::new("STN on ridge: λ", "training step", "λ")
                .with(Series::new("STN λ", pts(|p| p.lambda)))
                .with(Series::new("exact optimum λ*", ends(lstar))),
            LinePlot::new("perturbation scale", "training step", "σ (in ln λ)")
                .with(Series::new("σ", pts(|p| p.sigma))),
            LinePlot::new("validation loss", "training step", "L_V")
                .with(Series::new("L_V(ŵ(λ))", pts(|p| p.val_loss)))
                .with(Series::new("optimum", ends(vstar))),
        ],
        panels: vec![],
    };
    write_outputs(&a.out, &report, Some(&st.trajectory), &figure)?;
    print_line(&serde_json::json!({
        "lambda": report.lambda, "exact_lambda": lstar, "log10_error": report.log10_error,
        "val_loss": report.val_loss, "exact_val_loss": vstar, "steps": st.step,
        "time_s": report.time_s, "out": a.out.display().to_string(),
    }));
    Ok(())
}

#[derive(Serialize)]
struct MethodRow {
    method: String,
    val_loss: f64,
    test_loss: f64,
    test_accuracy: f64,
    train_steps_total: u64,
    runs: usize,
    time_s: f64,
    hyperparameters: Vec<(String, f64)>,
}

fn digits(a: DigitsArgs) -> CliResult<()> {
    check_out_dir(&a.out)?;
    let steps = a.steps.unwrap_or(if a.quick { 1500 } else { 3000 });
    if !(10..=1 << 24).contains(&steps) {
        return usage(format!("--steps {steps}: use 10 to 2^24"));
    }
    let mut data = digits_split::<f64>()?;
    let flipped = data.train.corrupt_labels(a.label_noise, 10, a.seed + 7)?;
    let cfg = DigitsConfig {
        steps,
        tau: a.tau,
        seed: a.seed,
        eval_every: (steps / 30).max(1),
        elr: a.elr.then_some(3.0),
        ..Default::default()
    };
    let stn = DigitsStn::for_config(&data, &cfg)?;
    let names: Vec<String> = stn
        .hypers(&cfg)?
        .hypers
        .iter()
        .map(|h| h.name.clone())
        .collect();
    let named = |v: &[f64]| {
        names
            .iter()
            .cloned()
            .zip(v.iter().copied())
            .collect::<Vec<_>>()
    };
    create_dir(&a.out)?;
    let mut rows = vec![];
    let mut curves = vec![];
    let mut runs = vec![];
    let variants: &[(&str, &str, bool)] = if a.delta {
        &[("stn", "STN", false), ("delta_stn", "Delta-STN", true)]
    } else {
        &[("stn", "STN", false)]
    };
    for &(method, label, delta) in variants {
        let c = DigitsConfig {
            delta,
            ..cfg.clone()
        };
        let file = if delta {
            "checkpoint-delta.json"
        } else {
            "checkpoint.json"
        };
        let (st, secs) = run_stn(&stn, &c, &a.out.join(file), a.resume, label)?;
        let best = st
            .best
            .clone()
            .ok_or_else(|| CliError::Usage("no evaluation ran".into()))?;
        rows.push(MethodRow {
            method: method.into(),
            val_loss: best.2.val_loss,
            test_loss: best.2.test_loss,
            test_accuracy: best.2.test_accuracy,
            train_steps_total: st.step,
            runs: 1,
            time_s: secs,
            hyperparameters: named(&best.2.values),
        });
        curves.push(Series::new(
            label,
            st.evals
                .iter()
                .map(|e| (e.step as f64, e.val_loss))
                .collect(),
        ));
        runs.push((label, st));
    }
    for (name, runs) in [("grid", 0u8), ("random", 1u8)] {
        let t = Instant::now();
        let out = if runs == 0 {
            grid_search(&stn, &cfg, 10, steps)?
        } else {
            random_search(&stn, &cfg, 10, steps, a.seed + 1)?
        };
        let secs = t.elapsed().as_secs_f64();
        let b = best_run(&out).and_then(|r| r.state.best.clone().map(|b| (r, b)));
        let Some((run, (_, _, e))) = b else {
            return usage("a baseline run made no evaluation; raise --steps");
        };
        // Best validation loss so far against the cumulative training steps.
        let (mut done, mut best_so_far, mut pts) = (0u64, f64::INFINITY, vec![]);
        for r in &out {
            for ev in &r.state.evals {
                best_so_far = best_so_far.min(ev.val_loss);
                pts.push(((done + ev.step) as f64, best_so_far));
            }
            done += r.state.step;
        }
        curves.push(Series::new(format!("{name} (best so far)"), pts));
        rows.push(MethodRow {
            method: name.into(),
            val_loss: e.val_loss,
            test_loss: e.test_loss,
            test_accuracy: e.test_accuracy,
            train_steps_total: done,
            runs: out.len(),
            time_s: secs,
            hyperparameters: named(&run.values),
        });
    }
    let mut plots = vec![];
    for (label, st) in &runs {
        let title = format!("{label} hyperparameters");
        let mut traj = LinePlot::new(&title, "training step", "value").log(false, true);
        for (j, n) in names.iter().enumerate() {
            traj = traj.with(Series::new(
                n.clone(),
                st.evals
                    .iter()
                    .map(|e| (e.step as f64, e.values[j]))
                    .collect(),
            ));
        }
        plots.push(traj);
    }
    let mut val =
        LinePlot::new("validation cross-entropy", "training steps", "loss").log(false, true);
    for c in curves {
        val = val.with(c);
    }
    plots.push(val);
    let figure = Figure {
        plots,
        panels: vec![],
    };
    let report = serde_json::json!({
        "data": "digits (1297 train / 200 validation / 300 test)",
        "label_noise": a.label_noise,
        "labels_flipped": flipped,
        "network": "mlp 64-128-128-10, STN dense layers",
        "methods": rows,
        "config": cfg,
    });
    write_outputs(&a.out, &report, Some(&runs[0].1.evals), &figure)?;
    print_line(&rows);
    Ok(())
}

/// Runs (or with `resume` continues) the STN of `cfg`, checkpointing to `ckpt` after every
/// evaluation; returns the state and the seconds spent.
fn run_stn(
    stn: &DigitsStn<'_>,
    cfg: &DigitsConfig,
    ckpt: &Path,
    resume: bool,
    label: &str,
) -> CliResult<(DigitsState, f64)> {
    let mut st = if resume {
        let text = read_text(ckpt, "run without --resume first")?;
        let st: DigitsState = serde_json::from_str(&text)
            .map_err(|e| CliError::Usage(format!("{}: {e}", ckpt.display())))?;
        if &st.config != cfg || st.params.len() != stn.num_params() {
            return usage(format!(
                "{}: the checkpoint was made with other options; use the same options or \
                 another --out",
                ckpt.display()
            ));
        }
        st
    } else {
        stn.init(cfg)?
    };
    let t0 = Instant::now();
    let pb = progress(cfg.steps, &format!("{label} steps"));
    pb.set_position(st.step);
    // A checkpoint after every evaluation: an interrupted run loses at most `eval_every` steps.
    let mut saved: CliResult<()> = Ok(());
    stn.run(&mut st, u64::MAX, &mut |s| {
        pb.set_position(s.step);
        if let Some(e) = s.evals.last() {
            pb.set_message(format!("val {:.4}", e.val_loss));
        }
        if saved.is_ok() {
            saved = write_json(ckpt, s);
        }
    })?;
    saved?;
    write_json(ckpt, &st)?;
    pb.finish_and_clear();
    Ok((st, t0.elapsed().as_secs_f64()))
}

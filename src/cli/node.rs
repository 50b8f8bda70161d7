//! `hyperprox node`: neural ODEs with regularized solver heuristics.

use super::common::{
    check_out_dir, create_dir, print_line, progress, resume_checkpoint, usage, write_json,
    write_outputs, CliResult,
};
use clap::{Args, Subcommand};
use hyperprox::core::figure::{Figure, LinePlot, Series};
use hyperprox::core::nn::train::digits_split;
use hyperprox::node::digits::{DigitsConfig, DigitsState, EpochRecord, OdeClassifier};
use hyperprox::node::reg::{Kind, Regularizer, Schedule};
use hyperprox::node::spiral::{Spiral, SpiralConfig, SpiralData, SpiralState};
use serde::Serialize;
use std::path::PathBuf;

/// Subcommands of `node`.
#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// The spiral u' = A u³ (A = [[−0.1, 2], [−2, −0.1]], u₀ = (2, 0), 30 points on [0, 1.5])
    /// fitted by a neural ODE u' = Dense(50→2)(tanh(Dense(2→50)(u³))) solved by Tsit5, with or
    /// without a regularizer of the solver's heuristics. Writes OUT/report.json
    /// (`train_loss`, `test_loss` on the 29 midpoints, `nfe_test` of the final forward solve,
    /// `train_time_s`, per-iteration curves), OUT/history.json, OUT/checkpoint.json (every 50
    /// iterations; `--resume` continues it exactly) and OUT/figure.png (the data and the fit,
    /// the loss and the NFE against iterations).
    Spiral(SpiralArgs),
    /// A classifier with an ODE block on the shipped digits: 64 → ODE(64→100→64, tanh) on
    /// [0, 1] → Dense(64→10), cross-entropy, Adam 1e-2, minibatches of 128, with or without a
    /// regularizer. Writes OUT/report.json (`train_loss`, `test_accuracy`, `test_loss`,
    /// `nfe_test` the mean NFE of a forward solve of a test minibatch, `train_time_s`,
    /// `predict_time_s`), OUT/history.json (per epoch), OUT/checkpoint.json (every epoch;
    /// `--resume` continues it exactly) and OUT/figure.png.
    Digits(DigitsArgs),
}

/// Arguments of `node digits`.
#[derive(Args, Debug)]
pub struct DigitsArgs {
    #[command(flatten)]
    reg: RegArgs,
    /// Epochs (default 20).
    #[arg(long)]
    epochs: Option<u64>,
    /// Smoke-test size: 3 epochs.
    #[arg(long)]
    quick: bool,
    /// Adam's learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Relative and absolute tolerance of Tsit5.
    #[arg(long, default_value_t = 1e-6)]
    tol: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Continue OUT/checkpoint.json (same options).
    #[arg(long)]
    resume: bool,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

/// The regularizer options shared by `node spiral` and `node digits`.
#[derive(Args, Debug)]
pub struct RegArgs {
    /// Regularizer: none, error (ERNODE: mean of EEst·h over the accepted steps) or stiffness
    /// (SRNODE: max of the stiffness estimate / 3.5068).
    #[arg(long, default_value = "none")]
    reg: String,
    /// Regularize one Tsit5 step at a random time instead of every step (Pal et al. 2023).
    #[arg(long)]
    local: bool,
    /// The regularizer's weight.
    #[arg(long, default_value_t = 1.0)]
    weight: f64,
    /// Decay the weight exponentially from --weight to this value over training (ERNODE's
    /// schedule, 100 → 10 in its MNIST run).
    #[arg(long)]
    weight_end: Option<f64>,
}

impl RegArgs {
    /// The regularizer over `steps` optimizer steps.
    fn build(&self, steps: u64) -> CliResult<Regularizer> {
        let kind = Kind::by_name(&self.reg)?;
        if self.local && kind == Kind::None {
            return usage("--local needs --reg error or --reg stiffness");
        }
        let mut reg = if kind == Kind::None {
            Regularizer::none()
        } else {
            Regularizer::new(kind, self.local, self.weight)
        };
        if let (Some(to), true) = (self.weight_end, kind != Kind::None) {
            reg.weight = Schedule::Exponential {
                from: self.weight,
                to,
                iters: steps,
            };
        }
        reg.check()?;
        Ok(reg)
    }
}

/// Arguments of `node spiral`.
#[derive(Args, Debug)]
pub struct SpiralArgs {
    #[command(flatten)]
    reg: RegArgs,
    /// Training iterations (default 1000: about 2 s).
    #[arg(long)]
    iters: Option<u64>,
    /// Smoke-test size: 300 iterations.
    #[arg(long)]
    quick: bool,
    /// Relative and absolute tolerance of Tsit5.
    #[arg(long, default_value_t = 1e-6)]
    tol: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Continue OUT/checkpoint.json (same options).
    #[arg(long)]
    resume: bool,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

/// Runs a `node` subcommand.
pub fn run(cmd: NodeCommand) -> CliResult<()> {
    match cmd {
        NodeCommand::Spiral(a) => spiral(a),
        NodeCommand::Digits(a) => digits(a),
    }
}

#[derive(Serialize)]
struct SpiralReport {
    reg: String,
    train_loss: f64,
    test_loss: f64,
    nfe_test: usize,
    steps_test: usize,
    train_time_s: f64,
    iterations: u64,
    mean_nfe_train: f64,
    config: SpiralConfig,
}

fn spiral(a: SpiralArgs) -> CliResult<()> {
    check_out_dir(&a.out)?;
    let iters = a.iters.unwrap_or(if a.quick { 300 } else { 1000 });
    if !(1..=1_000_000).contains(&iters) {
        return usage(format!("--iters {iters}: use 1 to 10^6"));
    }
    let reg = a.reg.build(iters)?;
    let mut cfg = SpiralConfig {
        iters,
        reg,
        seed: a.seed,
        ..Default::default()
    };
    cfg.solver.rtol = a.tol;
    cfg.solver.atol = a.tol;
    let data = SpiralData::generate(30, 1.5)?;
    let model = Spiral::new(&data, cfg.hidden)?;
    let ckpt = a.out.join("checkpoint.json");
    let mut st = if a.resume {
        resume_checkpoint(&ckpt, &cfg, |s: &SpiralState| &s.config)?
    } else {
        model.init(&cfg)?
    };
    create_dir(&a.out)?;
    let pb = progress(iters, "iterations");
    pb.set_position(st.iter);
    let mut saved: CliResult<()> = Ok(());
    model.run(&mut st, u64::MAX, &mut |s| {
        pb.set_position(s.iter);
        if let Some(r) = s.history.last() {
            pb.set_message(format!("mse {:.2e} nfe {}", r.train_loss, r.nfe));
        }
        if s.iter % 50 == 0 && saved.is_ok() {
            saved = write_json(&ckpt, s);
        }
    })?;
    saved?;
    write_json(&ckpt, &st)?;
    pb.finish_and_clear();
    let ev = model.evaluate(&st.params, &cfg.solver)?;
    let fit = model.predict(&st.params, &data.train_t, &cfg.solver)?;
    let train_loss = data
        .train_u
        .rows()
        .into_iter()
        .zip(&fit.states)
        .map(|(t, s)| (&s.row(0) - &t).iter().map(|v| v * v).sum::<f64>())
        .sum::<f64>()
        / data.train_u.len() as f64;
    let n = st.history.len().max(1) as f64;
    let report = SpiralReport {
        reg: cfg.reg.label(),
        train_loss,
        test_loss: ev.test_loss,
        nfe_test: ev.nfe,
        steps_test: ev.steps,
        train_time_s: st.train_time_s,
        iterations: st.iter,
        mean_nfe_train: st.history.iter().map(|r| r.nfe as f64).sum::<f64>() / n,
        config: cfg.clone(),
    };
    // The fit on a fine grid.
    let fine: Vec<f64> = (0..=150).map(|i| 1.5 * i as f64 / 150.0).collect();
    let curve = model.predict(&st.params, &fine, &cfg.solver)?;
    let points = |m: &ndarray::Array2<f64>| -> Vec<(f64, f64)> {
        m.rows().into_iter().map(|r| (r[0], r[1])).collect()
    };
    let fitted: Vec<(f64, f64)> = curve
        .states
        .iter()
        .map(|s| (s[[0, 0]], s[[0, 1]]))
        .collect();
    let figure = Figure {
        plots: vec![
            LinePlot::new("spiral: data and fit", "u₁", "u₂")
                .with(Series::new("training data", points(&data.train_u)))
                .with(Series::new("test data", points(&data.test_u)))
                .with(Series::new("neural ODE", fitted)),
            LinePlot::new("training MSE", "iteration", "mse")
                .log(false, true)
                .with(Series::new(
                    cfg.reg.label(),
                    st.history
                        .iter()
                        .map(|r| (r.iter as f64, r.train_loss))
                        .collect(),
                )),
            LinePlot::new("NFE of the training solve", "iteration", "NFE").with(Series::new(
                cfg.reg.label(),
                st.history
                    .iter()
                    .map(|r| (r.iter as f64, r.nfe as f64))
                    .collect(),
            )),
        ],
        panels: vec![],
    };
    write_outputs(&a.out, &report, Some(&st.history), &figure)?;
    print_line(&report);
    Ok(())
}

#[derive(Serialize)]
struct DigitsReport {
    reg: String,
    train_loss: f64,
    test_loss: f64,
    test_accuracy: f64,
    nfe_test: f64,
    train_time_s: f64,
    predict_time_s: f64,
    epochs: u64,
    config: DigitsConfig,
}

fn digits(a: DigitsArgs) -> CliResult<()> {
    check_out_dir(&a.out)?;
    let epochs = a.epochs.unwrap_or(if a.quick { 3 } else { 20 });
    if !(1..=10_000).contains(&epochs) {
        return usage(format!("--epochs {epochs}: use 1 to 10^4"));
    }
    let split = digits_split::<f64>()?;
    let mut cfg = DigitsConfig {
        epochs,
        seed: a.seed,
        ..Default::default()
    };
    if let Some(lr) = a.lr {
        cfg.lr = lr;
    }
    cfg.reg = a
        .reg
        .build(epochs * cfg.steps_per_epoch(split.train.len()))?;
    cfg.solver.rtol = a.tol;
    cfg.solver.atol = a.tol;
    let model = OdeClassifier::new(64, cfg.hidden, 10)?;
    let ckpt = a.out.join("checkpoint.json");
    let mut st = if a.resume {
        resume_checkpoint(&ckpt, &cfg, |s: &DigitsState| &s.config)?
    } else {
        model.init(&cfg)?
    };
    create_dir(&a.out)?;
    let spe = cfg.steps_per_epoch(split.train.len());
    let pb = progress(epochs * spe, "minibatches");
    pb.set_position(st.epoch * spe);
    let mut saved: CliResult<()> = Ok(());
    model.run(&split, &mut st, u64::MAX, &mut |s, j| {
        pb.set_position(s.epoch * spe + j);
        if j == 0 {
            if let Some(r) = s.history.last() {
                pb.set_message(format!("acc {:.3} nfe {:.0}", r.test_accuracy, r.nfe_test));
            }
            if saved.is_ok() {
                saved = write_json(&ckpt, s);
            }
        }
    })?;
    saved?;
    pb.finish_and_clear();
    let test = model.evaluate(&st.params, &split.test, cfg.batch, &cfg.solver)?;
    let train = model.evaluate(&st.params, &split.train, cfg.batch, &cfg.solver)?;
    let report = DigitsReport {
        reg: cfg.reg.label(),
        train_loss: train.loss,
        test_loss: test.loss,
        test_accuracy: test.accuracy,
        nfe_test: test.nfe,
        train_time_s: st.train_time_s,
        predict_time_s: test.time_s,
        epochs: st.epoch,
        config: cfg.clone(),
    };
    let curve = |f: &dyn Fn(&EpochRecord) -> f64| -> Vec<(f64, f64)> {
        st.history.iter().map(|r| (r.epoch as f64, f(r))).collect()
    };
    let label = cfg.reg.label();
    let figure = Figure {
        plots: vec![
            LinePlot::new("training cross-entropy", "epoch", "CE")
                .log(false, true)
                .with(Series::new(label.clone(), curve(&|r| r.train_loss))),
            LinePlot::new("test accuracy", "epoch", "accuracy")
                .with(Series::new(label.clone(), curve(&|r| r.test_accuracy))),
            LinePlot::new("NFE of a forward solve", "epoch", "NFE")
                .with(Series::new(
                    format!("{label} train"),
                    curve(&|r| r.nfe_train),
                ))
                .with(Series::new(format!("{label} test"), curve(&|r| r.nfe_test))),
        ],
        panels: vec![],
    };
    write_outputs(&a.out, &report, Some(&st.history), &figure)?;
    print_line(&report);
    Ok(())
}

//! `hyperprox node`: neural ODEs with regularized solver heuristics.

use super::common::{
    check_out_dir, create_dir, print_line, progress, read_text, usage, write_json, write_outputs,
    CliError, CliResult,
};
use clap::{Args, Subcommand};
use hyperprox::core::figure::{Figure, LinePlot, Series};
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
}

/// Arguments of `node spiral`.
#[derive(Args, Debug)]
pub struct SpiralArgs {
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
    /// Decay the weight exponentially from --weight to this value over the iterations (ERNODE's
    /// schedule, 100 → 10 in its MNIST run).
    #[arg(long)]
    weight_end: Option<f64>,
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
    let kind = Kind::by_name(&a.reg)?;
    let iters = a.iters.unwrap_or(if a.quick { 300 } else { 1000 });
    if !(1..=1_000_000).contains(&iters) {
        return usage(format!("--iters {iters}: use 1 to 10^6"));
    }
    if a.local && kind == Kind::None {
        return usage("--local needs --reg error or --reg stiffness");
    }
    let mut reg = if kind == Kind::None {
        Regularizer::none()
    } else {
        Regularizer::new(kind, a.local, a.weight)
    };
    if let Some(to) = a.weight_end {
        reg.weight = Schedule::Exponential {
            from: a.weight,
            to,
            iters,
        };
    }
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
        let text = read_text(&ckpt, "run without --resume first")?;
        let st: SpiralState = serde_json::from_str(&text)
            .map_err(|e| CliError::Usage(format!("{}: {e}", ckpt.display())))?;
        if st.config != cfg {
            return usage(format!(
                "{}: the checkpoint was made with other options; use the same options or another --out",
                ckpt.display()
            ));
        }
        st
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

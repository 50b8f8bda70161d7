//! `hyperprox unfold …`: deep-unfolded ISTA/IHT and the LISTA family.

use clap::{Args, Subcommand, ValueEnum};
use hyperprox::report::{write_figure, LinePlot, Series};
use hyperprox::unfolded::baselines::{fista, ista, lasso_optimum, Curves};
use hyperprox::unfolded::train::{train, Progress, TrainConfig, TrainState};
use hyperprox::unfolded::{
    evaluate, sample, LossKind, ModelKind, ModelSpec, Penalty, Problem, Signal, Unfolded,
    UnfoldedModel,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

type CliResult<T> = Result<T, String>;

fn e2s(e: hyperprox::core::Error) -> String {
    e.to_string()
}

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

/// Models.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum ModelArg {
    /// Deep-unfolded ISTA: learned step α_t.
    DuIsta,
    /// Deep-unfolded IHT: learned step α_t.
    DuIht,
    /// LISTA: learned W₁, W₂, θ per layer.
    Lista,
    /// LISTA-CP: learned W, θ per layer.
    ListaCp,
    /// LISTA-CP with support selection.
    ListaCpss,
    /// ALISTA: analytic W, learned γ, θ per layer.
    Alista,
    /// TISTA: learned γ per layer, MMSE shrinkage.
    Tista,
}

impl ModelArg {
    fn kind(self) -> ModelKind {
        match self {
            ModelArg::DuIsta => ModelKind::DuIsta,
            ModelArg::DuIht => ModelKind::DuIht,
            ModelArg::Lista => ModelKind::Lista,
            ModelArg::ListaCp => ModelKind::ListaCp,
            ModelArg::ListaCpss => ModelKind::ListaCpss,
            ModelArg::Alista => ModelKind::Alista,
            ModelArg::Tista => ModelKind::Tista,
        }
    }
}

/// Losses.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum LossArg {
    /// Mean ‖x_T − x‖² to the true signal.
    Supervised,
    /// The original objective ½‖y − Ax_T‖² + λ‖x_T‖₁ (‖x_T‖₀ for DU-IHT).
    Unsupervised,
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
    /// The model.
    #[arg(long, value_enum)]
    model: ModelArg,
    /// The training loss.
    #[arg(long, value_enum, default_value = "supervised")]
    loss: LossArg,
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

fn write_json(path: &Path, v: &Value) -> CliResult<()> {
    std::fs::write(path, serde_json::to_string_pretty(v).expect("json") + "\n")
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn read_json(path: &Path) -> CliResult<Value> {
    let s = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read {}: {e} (train a model with `hyperprox unfold train`)",
            path.display()
        )
    })?;
    serde_json::from_str(&s).map_err(|e| format!("{}: not valid JSON ({e})", path.display()))
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
    s.check().map_err(e2s)?;
    if t.test_size == 0 {
        return Err("--test-size must be at least 1".into());
    }
    Ok(s)
}

fn train_cmd(a: TrainArgs) -> CliResult<()> {
    let (n, m, spl, fin) = if a.quick {
        (100, 50, a.steps_per_layer.min(50), a.final_steps.min(50))
    } else {
        (a.n, a.m, a.steps_per_layer, a.final_steps)
    };
    if m > n {
        return Err(format!(
            "M = {m} > N = {n}: use fewer measurements than unknowns (--m < --n)"
        ));
    }
    let kind = a.model.kind();
    let signal = Signal {
        p: a.p,
        snr_db: if a.noiseless { None } else { Some(a.snr) },
    };
    let test_sig = test_signal(&a.test, signal)?;
    let problem = Problem::gaussian(m, n, a.matrix_seed).map_err(e2s)?;
    let mut spec = ModelSpec::new(kind, a.layers);
    spec.lambda = a.lambda;
    spec.signal = signal;
    let mut model = Unfolded::new(spec, &problem).map_err(e2s)?;
    let cfg = TrainConfig {
        loss: match a.loss {
            LossArg::Supervised => LossKind::Supervised,
            LossArg::Unsupervised => LossKind::Unsupervised,
        },
        signal,
        batch: a.batch,
        steps_per_layer: spl,
        final_steps: fin,
        incremental: !a.no_incremental,
        lr: a.lr.unwrap_or(TrainConfig::default_lr(kind)),
        sgd_momentum: a.sgd_momentum,
        seed: a.seed,
        val_size: a.val_size,
        ..Default::default()
    };
    cfg.check().map_err(e2s)?;
    std::fs::create_dir_all(&a.test.out)
        .map_err(|e| format!("cannot create {}: {e}", a.test.out.display()))?;
    let ckpt_path = a.test.out.join("checkpoint.json");
    let resume = if a.resume {
        let v = read_json(&ckpt_path)?;
        Some(TrainState::from_json(&v).map_err(e2s)?)
    } else {
        None
    };
    let total: u64 = cfg.stages(a.layers).iter().map(|s| s.1 as u64).sum();
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} minibatches  {msg}  [{elapsed}<{eta}]")
            .expect("template"),
    );
    if let Some(r) = &resume {
        pb.set_position(r.step);
    }
    let t0 = Instant::now();
    // Train in chunks of CHECKPOINT_EVERY minibatches and write the checkpoint after each, so
    // an interrupted run loses little; resuming is exact, so chunking changes nothing.
    const CHECKPOINT_EVERY: u64 = 200;
    let start = resume.as_ref().map_or(0, |r| r.step);
    let stop = a.max_steps.map_or(total, |m| (start + m).min(total));
    let mut state = resume;
    loop {
        let done = state.as_ref().map_or(0, |s| s.step);
        let chunk = CHECKPOINT_EVERY.min(stop.saturating_sub(done));
        let st = train(
            &mut model,
            &problem,
            &cfg,
            state.take(),
            Some(chunk),
            &mut |p: &Progress| {
                pb.set_position(p.step);
                if p.step % 10 == 0 {
                    pb.set_message(format!("layer {:>2}  loss {:.4e}", p.depth, p.loss));
                }
            },
        )
        .map_err(e2s)?;
        write_json(&ckpt_path, &st.to_json())?;
        let end = st.step >= stop;
        state = Some(st);
        if end {
            break;
        }
    }
    let state = state.expect("trained at least once");
    pb.finish_and_clear();
    let train_s = t0.elapsed().as_secs_f64();
    write_json(&a.test.out.join("model.json"), &model.to_json())?;
    let finished = state.step >= total;
    let training = json!({
        "finished": finished,
        "minibatches": state.step,
        "total_minibatches": total,
        "time_s": train_s,
        "skipped_minibatches": state.skipped,
        "config": state.config,
        "stages": state.history.iter().map(|h| json!({"depth": h.depth, "steps": h.steps,
            "train_loss": h.train_loss, "val_loss": h.val_loss})).collect::<Vec<_>>(),
    });
    let loss_name = cfg.loss.as_str();
    report(
        &model,
        &problem,
        signal,
        test_sig,
        &a.test,
        a.seed,
        loss_name,
        Some(training),
    )?;
    if !finished {
        eprintln!(
            "stopped after {} of {total} minibatches; continue with --resume",
            state.step
        );
    }
    Ok(())
}

fn eval_cmd(a: EvalArgs) -> CliResult<()> {
    let v = read_json(&a.model)?;
    let model = Unfolded::from_json(&v).map_err(e2s)?;
    let train_sig = model.spec().signal;
    let test_sig = test_signal(&a.test, train_sig)?;
    std::fs::create_dir_all(&a.test.out)
        .map_err(|e| format!("cannot create {}: {e}", a.test.out.display()))?;
    let problem = model.problem().clone();
    let loss = a
        .model
        .parent()
        .map(|d| d.join("report.json"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|r| r["loss"].as_str().map(String::from))
        .unwrap_or_else(|| "unknown".into());
    report(
        &model, &problem, train_sig, test_sig, &a.test, a.seed, &loss, None,
    )
}

fn curves_json(c: &Curves) -> Value {
    json!({"nmse_db": c.nmse_db, "objective": c.objective})
}

#[allow(clippy::too_many_arguments)]
fn report(
    model: &Unfolded,
    problem: &Problem,
    train_sig: Signal,
    test_sig: Signal,
    t: &TestArgs,
    seed: u64,
    loss: &str,
    training: Option<Value>,
) -> CliResult<()> {
    let t0 = Instant::now();
    let test_seed = hyperprox::core::diff::batch_seed(seed, u64::MAX - 1);
    let test = sample(problem, &test_sig, t.test_size, test_seed).map_err(e2s)?;
    let depth = model.depth();
    let (lambda, penalty) = model.objective();
    let curves = evaluate(model, problem, &test).map_err(e2s)?;
    let y = test.y.view();
    let ista_c = Curves::of(
        problem,
        &test,
        &ista(problem, y, lambda, Penalty::L1, depth).map_err(e2s)?,
        lambda,
        Penalty::L1,
    );
    let fista_c = Curves::of(
        problem,
        &test,
        &fista(problem, y, lambda, depth).map_err(e2s)?,
        lambda,
        Penalty::L1,
    );
    let iht_c = Curves::of(
        problem,
        &test,
        &ista(problem, y, lambda, Penalty::L0, depth).map_err(e2s)?,
        lambda,
        Penalty::L0,
    );
    let (xstar, fstar, fista_iters) =
        lasso_optimum(problem, y, lambda, 1e-9, 200_000).map_err(e2s)?;
    let fstar_mean = fstar.iter().sum::<f64>() / fstar.len() as f64;
    let gap = |c: &Curves| -> Vec<f64> {
        c.objective
            .iter()
            .map(|o| (o - fstar_mean) / fstar_mean)
            .collect()
    };
    let params: serde_json::Map<String, Value> = model
        .layer_params()
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    let mut r = json!({
        "model": model.spec().kind.as_str(),
        "loss": loss,
        "layers": depth,
        "lambda": lambda,
        "penalty": penalty.as_str(),
        "nmse_db": curves.nmse_db,
        "objective": curves.objective,
        "lasso_objective_optimum": fstar_mean,
        "lasso_optimum_nmse_db": hyperprox::unfolded::nmse_db(xstar.view(), test.x.view()),
        "lasso_optimum_fista_iterations": fista_iters,
        "params": params,
        "baselines": {
            "ista": curves_json(&ista_c),
            "fista": curves_json(&fista_c),
            "iht": curves_json(&iht_c),
        },
        "setting": {
            "n": problem.n(), "m": problem.m(), "matrix_seed": problem.seed,
            "lipschitz": problem.lipschitz,
            "train_p": train_sig.p, "train_snr_db": train_sig.snr_db,
            "test_p": test_sig.p, "test_snr_db": test_sig.snr_db, "test_size": t.test_size,
        },
        "eval_time_s": t0.elapsed().as_secs_f64(),
    });
    if penalty == Penalty::L1 {
        r["relative_objective_gap"] = json!(gap(&curves));
        r["baselines"]["ista"]["relative_objective_gap"] = json!(gap(&ista_c));
        r["baselines"]["fista"]["relative_objective_gap"] = json!(gap(&fista_c));
    }
    if let Some(tr) = training {
        r["training"] = tr;
    }
    let pts = |v: &[f64]| {
        v.iter()
            .enumerate()
            .map(|(i, y)| (i as f64, *y))
            .collect::<Vec<_>>()
    };
    let name = format!("{} ({loss})", model.spec().kind.as_str());
    let nmse = LinePlot {
        title: "test NMSE per layer".into(),
        x_label: "layer / iteration t".into(),
        y_label: "NMSE (dB)".into(),
        log_x: false,
        log_y: false,
        series: vec![
            Series {
                name: name.clone(),
                points: pts(&curves.nmse_db),
            },
            Series {
                name: "ISTA".into(),
                points: pts(&ista_c.nmse_db),
            },
            Series {
                name: "FISTA".into(),
                points: pts(&fista_c.nmse_db),
            },
            Series {
                name: "IHT".into(),
                points: pts(&iht_c.nmse_db),
            },
        ],
    };
    let mut plots = vec![nmse];
    if penalty == Penalty::L1 {
        plots.push(LinePlot {
            title: "relative LASSO objective gap".into(),
            x_label: "layer / iteration t".into(),
            y_label: "(F − F*)/F*".into(),
            log_x: false,
            log_y: true,
            series: vec![
                Series {
                    name: name.clone(),
                    points: pts(&gap(&curves)),
                },
                Series {
                    name: "ISTA".into(),
                    points: pts(&gap(&ista_c)),
                },
                Series {
                    name: "FISTA".into(),
                    points: pts(&gap(&fista_c)),
                },
            ],
        });
    } else {
        plots.push(LinePlot {
            title: "ℓ0 objective".into(),
            x_label: "layer / iteration t".into(),
            y_label: "½‖y − Ax‖² + λ‖x‖₀".into(),
            log_x: false,
            log_y: true,
            series: vec![
                Series {
                    name: name.clone(),
                    points: pts(&curves.objective),
                },
                Series {
                    name: "IHT".into(),
                    points: pts(&iht_c.objective),
                },
            ],
        });
    }
    let lp = model.layer_params();
    plots.push(LinePlot {
        title: "learned parameters per layer".into(),
        x_label: "layer t".into(),
        y_label: "value".into(),
        log_x: false,
        log_y: false,
        series: lp
            .iter()
            .map(|(k, v)| Series {
                name: if k == "alpha" {
                    format!("α_t (1/L = {:.3})", 1.0 / problem.lipschitz)
                } else {
                    k.clone()
                },
                points: v
                    .iter()
                    .enumerate()
                    .map(|(i, y)| ((i + 1) as f64, *y))
                    .collect(),
            })
            .collect(),
    });
    write_figure(&t.out.join("figure.png"), &plots, &[])?;
    write_json(&t.out.join("report.json"), &r)?;
    println!(
        "{name}, T = {depth}: test NMSE {:.2} dB (ISTA {:.2}, FISTA {:.2}, IHT {:.2}); objective {:.5} (LASSO F* = {:.5}); wrote {}",
        curves.nmse_db[depth],
        ista_c.nmse_db[depth],
        fista_c.nmse_db[depth],
        iht_c.nmse_db[depth],
        curves.objective[depth],
        fstar_mean,
        t.out.join("report.json").display()
    );
    Ok(())
}

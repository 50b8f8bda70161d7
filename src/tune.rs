//! `hyperprox tune …` and `hyperprox demo`: bilevel learning of hyperparameters.

use clap::{Args, Subcommand, ValueEnum};
use hyperprox::bilevel::data::{add_noise, load_images, psnr, unstack};
use hyperprox::bilevel::{
    AccuracySequence, BilevelProblem, FieldOfExperts, Hoag, HoagParams, LassoTuning, Maid,
    MaidParams, MultinomialLogistic, Oracle, OuterRecord, OuterResult, OuterSolver, OuterStop,
    TvDenoising,
};
use hyperprox::core::io::shipped_data_dir;
use hyperprox::report::{write_figure, ImagePanel, LinePlot, Series};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array1, Array2};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

type CliResult<T> = Result<T, String>;
type Images = Vec<Array2<f64>>;

fn e2s(e: hyperprox::core::Error) -> String {
    e.to_string()
}

/// Problems for `hyperprox tune`.
#[derive(Subcommand, Debug)]
pub enum TuneProblem {
    /// TV denoising: learn (log λ, log ν) of ½‖x − y‖² + λ Σ √(|∇x|² + ν²) on Kodak images.
    Tv(ImageArgs),
    /// Field-of-experts denoising: learn filters, weights and smoothings (2449 parameters with
    /// the paper's 48 filters 7×7).
    Foe(FoeArgs),
    /// Multinomial logistic regression on the shipped digits with one weight decay per weight.
    Logreg(LogregArgs),
    /// Lasso λ on held-out data (implicit gradient over the support), against a 50-point grid.
    Lasso(LassoArgs),
}

/// Outer method.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum Method {
    /// MAID (adaptive accuracy, certified descent).
    Maid,
    /// MAID with fixed accuracy (ablation).
    MaidFixed,
    /// HOAG, ε_k = ε₀·0.9ᵏ.
    HoagGeometric,
    /// HOAG, ε_k = ε₀/(k+1)².
    HoagQuadratic,
    /// HOAG, ε_k = ε₀/(k+1)³.
    HoagCubic,
    /// HOAG, ε_k = ε₀.
    HoagFixed,
}

impl Method {
    fn name(&self) -> &'static str {
        match self {
            Method::Maid => "maid",
            Method::MaidFixed => "maid-fixed",
            Method::HoagGeometric => "hoag-geometric",
            Method::HoagQuadratic => "hoag-quadratic",
            Method::HoagCubic => "hoag-cubic",
            Method::HoagFixed => "hoag-fixed",
        }
    }
}

/// Settings of the outer method.
#[derive(Args, Debug, Clone)]
pub struct OuterArgs {
    /// Outer method.
    #[arg(long, value_enum, default_value_t = Method::Maid)]
    method: Method,
    /// Outer-iteration limit.
    #[arg(long, default_value_t = 50)]
    max_iters: usize,
    /// Work budget: total lower-level + CG iterations.
    #[arg(long, default_value_t = 1_000_000)]
    budget: usize,
    /// Initial accuracies ε₀ = δ₀.
    #[arg(long, default_value_t = 0.1)]
    eps0: f64,
    /// MAID's initial step α₀.
    #[arg(long, default_value_t = 0.1)]
    alpha0: f64,
    /// Estimate the error bound's constants online (as the MAID reference code does) instead of
    /// using the problem's proven bounds: tighter, but the bound is no longer certified.
    #[arg(long)]
    estimated_constants: bool,
    /// Output folder (created if missing): report.json, history.json, figure.png.
    #[arg(long)]
    out: PathBuf,
}

/// Image options (TV).
#[derive(Args, Debug, Clone)]
pub struct ImageArgs {
    /// Folder of PNG images (default: the shipped Kodak set at 96×96).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Number of images (sorted by name).
    #[arg(long, default_value_t = 25)]
    images: usize,
    /// Images resized to size × size.
    #[arg(long, default_value_t = 96)]
    size: usize,
    /// Noise level.
    #[arg(long, default_value_t = 0.1)]
    sigma: f64,
    /// Seed of the noise.
    #[arg(long, default_value_t = 19)]
    seed: u64,
    #[command(flatten)]
    outer: OuterArgs,
}

/// Field-of-experts options.
#[derive(Args, Debug, Clone)]
pub struct FoeArgs {
    /// Folder of PNG images (default: the shipped Kodak set at 256×256).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Skip the first images (the paper uses Kodak 6..25).
    #[arg(long, default_value_t = 5)]
    skip: usize,
    /// Number of images.
    #[arg(long, default_value_t = 20)]
    images: usize,
    /// Images resized to size × size.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Noise level.
    #[arg(long, default_value_t = 0.1)]
    sigma: f64,
    /// Seed of the noise and of the filter initialization.
    #[arg(long, default_value_t = 31)]
    seed: u64,
    /// Number of filters.
    #[arg(long, default_value_t = 48)]
    filters: usize,
    /// Filter size.
    #[arg(long, default_value_t = 7)]
    filter_size: usize,
    #[command(flatten)]
    outer: OuterArgs,
}

/// Multinomial-logistic options.
#[derive(Args, Debug, Clone)]
pub struct LogregArgs {
    /// Digits CSV (default: the shipped data/digits/digits.csv).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Training samples (the rest is the validation set).
    #[arg(long, default_value_t = 900)]
    n_train: usize,
    /// Seed of the split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    outer: OuterArgs,
}

/// Lasso options.
#[derive(Args, Debug, Clone)]
pub struct LassoArgs {
    /// Training design matrix (.npy, n × p).
    #[arg(long)]
    a_train: PathBuf,
    /// Training targets (.npy, n).
    #[arg(long)]
    b_train: PathBuf,
    /// Validation design matrix (.npy, n_v × p).
    #[arg(long)]
    a_val: PathBuf,
    /// Validation targets (.npy, n_v).
    #[arg(long)]
    b_val: PathBuf,
    /// Maximum gradient steps on log λ.
    #[arg(long, default_value_t = 50)]
    max_iters: usize,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

fn prepare_out(out: &Path) -> CliResult<()> {
    std::fs::create_dir_all(out)
        .map_err(|e| format!("{}: cannot create the output folder: {e}", out.display()))
}

fn write_json(path: &Path, v: &serde_json::Value) -> CliResult<()> {
    std::fs::write(path, serde_json::to_string_pretty(v).expect("json") + "\n")
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn progress(n: usize) -> ProgressBar {
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} outer its  {msg}  [{elapsed}]")
            .expect("template"),
    );
    pb
}

/// Runs the chosen outer method with a progress bar.
fn run_outer<P: BilevelProblem>(p: &P, o: &OuterArgs) -> CliResult<(OuterResult<()>, f64)> {
    if !(o.eps0 > 0.0 && o.eps0.is_finite() && o.alpha0 > 0.0 && o.alpha0.is_finite()) {
        return Err(format!(
            "--eps0 {} and --alpha0 {} must be positive",
            o.eps0, o.alpha0
        ));
    }
    if o.max_iters == 0 {
        return Err("--max-iters must be at least 1".into());
    }
    let pb = progress(o.max_iters);
    let obs = |r: &OuterRecord| {
        pb.set_position(r.iter as u64);
        pb.set_message(format!(
            "loss {:.5e}  ε {:.2e}  work {}",
            r.upper,
            r.eps,
            r.work()
        ));
        true
    };
    let t0 = Instant::now();
    let res = match o.method {
        Method::Maid | Method::MaidFixed => {
            let params = MaidParams::default()
                .with_accuracies(o.eps0, o.eps0)
                .with_alpha0(o.alpha0)
                .with_max_iters(o.max_iters)
                .with_budget(o.budget)
                .with_fixed_accuracy(o.method == Method::MaidFixed)
                .with_estimated_constants(o.estimated_constants);
            strip(
                Maid::new(p, params)
                    .map_err(e2s)?
                    .run(p.theta_start().view(), obs)
                    .map_err(e2s)?,
            )
        }
        m => {
            let seq = match m {
                Method::HoagGeometric => AccuracySequence::Geometric(0.9),
                Method::HoagQuadratic => AccuracySequence::Quadratic,
                Method::HoagCubic => AccuracySequence::Cubic,
                _ => AccuracySequence::Fixed,
            };
            let params = HoagParams {
                eps0: o.eps0,
                ..HoagParams::default()
            }
            .with_sequence(seq)
            .with_max_iters(o.max_iters)
            .with_budget(o.budget);
            strip(
                Hoag::new(p, params)
                    .map_err(e2s)?
                    .run(p.theta_start().view(), obs)
                    .map_err(e2s)?,
            )
        }
    };
    pb.finish_and_clear();
    Ok((res, t0.elapsed().as_secs_f64()))
}

/// Drops the solver state (the CLI reports only θ and the history).
fn strip<S>(r: OuterResult<S>) -> OuterResult<()> {
    OuterResult {
        theta: r.theta,
        history: r.history,
        stop: r.stop,
        state: (),
    }
}

fn history_json(h: &[OuterRecord]) -> serde_json::Value {
    json!(h
        .iter()
        .map(|r| json!({
            "iter": r.iter, "upper_loss": r.upper, "hypergradient_norm": r.hypergrad_norm,
            "omega": r.omega, "certified": r.certified, "eps": r.eps, "delta": r.delta,
            "step": r.step, "accepted": r.accepted, "ll_iters_total": r.ll_iters_total,
            "cg_iters_total": r.cg_iters_total, "theta": r.theta.to_vec(),
        }))
        .collect::<Vec<_>>())
}

fn stop_name(s: &OuterStop) -> String {
    match s {
        OuterStop::Converged => "converged".into(),
        OuterStop::MaxIters => "max_iters".into(),
        OuterStop::Budget => "budget".into(),
        OuterStop::Observer => "observer".into(),
        OuterStop::Stalled(w) => format!("stalled: {w}"),
    }
}

fn outer_plots(h: &[OuterRecord], method: &str) -> Vec<LinePlot> {
    vec![
        LinePlot {
            title: "upper loss vs work".into(),
            x_label: "lower-level + CG iterations".into(),
            y_label: "upper loss g(x̃)".into(),
            log_x: false,
            log_y: false,
            series: vec![Series {
                name: method.into(),
                points: h.iter().map(|r| (r.work() as f64, r.upper)).collect(),
            }],
        },
        LinePlot {
            title: "accuracy".into(),
            x_label: "outer iteration".into(),
            y_label: "ε".into(),
            log_x: false,
            log_y: true,
            series: vec![Series {
                name: format!("{method} ε"),
                points: h.iter().map(|r| (r.iter as f64, r.eps)).collect(),
            }],
        },
    ]
}

/// Denoises with the learned θ (tight lower-level solve) and returns (denoised, mean PSNR
/// noisy, mean PSNR denoised).
fn tv_eval(p: &TvDenoising, theta: &Array1<f64>) -> CliResult<(Vec<Array2<f64>>, f64, f64)> {
    let (n, h, w) = p.shape();
    let (_, ll) = Oracle::new(p)
        .value(theta.view(), p.noisy().view(), 1e-8)
        .map_err(e2s)?;
    let den = unstack(&ll.x, h, w);
    let clean = unstack(p.clean(), h, w);
    let noisy = unstack(p.noisy(), h, w);
    let pn = clean
        .iter()
        .zip(&noisy)
        .map(|(c, y)| psnr(y, c))
        .sum::<f64>()
        / n as f64;
    let pd = clean.iter().zip(&den).map(|(c, d)| psnr(d, c)).sum::<f64>() / n as f64;
    Ok((den, pn, pd))
}

fn image_panels(noisy: &Array2<f64>, den: &Array2<f64>, clean: &Array2<f64>) -> Vec<ImagePanel> {
    vec![
        ImagePanel {
            caption: format!("noisy, PSNR {:.2} dB", psnr(noisy, clean)),
            image: noisy.clone(),
        },
        ImagePanel {
            caption: format!("denoised, PSNR {:.2} dB", psnr(den, clean)),
            image: den.clone(),
        },
        ImagePanel {
            caption: "clean".into(),
            image: clean.clone(),
        },
    ]
}

fn load_noisy(
    dir: &Path,
    skip: usize,
    count: usize,
    size: usize,
    sigma: f64,
    seed: u64,
) -> CliResult<(Images, Images)> {
    if !(sigma >= 0.0 && sigma.is_finite()) {
        return Err(format!("--sigma {sigma} must be non-negative"));
    }
    if count == 0 {
        return Err("--images must be at least 1".into());
    }
    let all = load_images(dir, skip + count, size).map_err(e2s)?;
    let clean = all[skip..].to_vec();
    let noisy = add_noise(&clean, sigma, seed);
    Ok((clean, noisy))
}

/// Runs `hyperprox tune …`.
pub fn tune(problem: TuneProblem) -> CliResult<()> {
    match problem {
        TuneProblem::Tv(a) => {
            prepare_out(&a.outer.out)?;
            let dir = a
                .data
                .clone()
                .unwrap_or_else(|| shipped_data_dir().join("kodak/gray96"));
            let (clean, noisy) = load_noisy(&dir, 0, a.images, a.size, a.sigma, a.seed)?;
            let p = TvDenoising::new(&clean, &noisy).map_err(e2s)?;
            let (res, time_s) = run_outer(&p, &a.outer)?;
            let (den, pn, pd) = tv_eval(&p, &res.theta)?;
            let report = json!({
                "problem": "tv", "method": a.outer.method.name(), "images": a.images, "size": a.size,
                "sigma": a.sigma, "theta": res.theta.to_vec(),
                "lambda": res.theta[0].exp(), "smoothing": res.theta[1].exp(),
                "upper_loss": res.history.last().map(|r| r.upper),
                "psnr_noisy": pn, "psnr_denoised": pd,
                "iterations_outer": res.history.len(),
                "iterations_total": res.history.last().map(|r| r.work()).unwrap_or(0),
                "certified": res.history.iter().all(|r| r.certified),
                "stop": stop_name(&res.stop), "time_s": time_s,
            });
            let panels = image_panels(&noisy[0], &den[0], &clean[0]);
            finish_outer(&a.outer, &res, report, &panels)
        }
        TuneProblem::Foe(a) => {
            prepare_out(&a.outer.out)?;
            let dir = a
                .data
                .clone()
                .unwrap_or_else(|| shipped_data_dir().join("kodak/gray256"));
            let (clean, noisy) = load_noisy(&dir, a.skip, a.images, a.size, a.sigma, a.seed)?;
            let p = FieldOfExperts::new(&clean, &noisy, a.filters, a.filter_size, a.seed)
                .map_err(e2s)?;
            let (res, time_s) = run_outer(&p, &a.outer)?;
            let (_, ll) = Oracle::new(&p)
                .value(res.theta.view(), p.noisy().view(), 1e-6)
                .map_err(e2s)?;
            let (n, h, w, _, _) = p.shape();
            let den = unstack(&ll.x, h, w);
            let pn = clean
                .iter()
                .zip(&noisy)
                .map(|(c, y)| psnr(y, c))
                .sum::<f64>()
                / n as f64;
            let pd = clean.iter().zip(&den).map(|(c, d)| psnr(d, c)).sum::<f64>() / n as f64;
            let report = json!({
                "problem": "foe", "method": a.outer.method.name(), "images": a.images, "size": a.size,
                "filters": a.filters, "filter_size": a.filter_size, "sigma": a.sigma,
                "theta": res.theta.to_vec(), "n_hyperparameters": res.theta.len(),
                "upper_loss": res.history.last().map(|r| r.upper),
                "psnr_noisy": pn, "psnr_denoised": pd,
                "iterations_outer": res.history.len(),
                "iterations_total": res.history.last().map(|r| r.work()).unwrap_or(0),
                "certified": false, "stop": stop_name(&res.stop), "time_s": time_s,
            });
            let panels = image_panels(&noisy[0], &den[0], &clean[0]);
            finish_outer(&a.outer, &res, report, &panels)
        }
        TuneProblem::Logreg(a) => {
            prepare_out(&a.outer.out)?;
            let path = a
                .data
                .clone()
                .unwrap_or_else(|| shipped_data_dir().join("digits/digits.csv"));
            let p = MultinomialLogistic::from_digits(&path, a.n_train, a.seed).map_err(e2s)?;
            let o = Oracle::new(&p);
            let (g0, ll0) = o
                .value(p.theta_start().view(), p.x_start().view(), 1e-8)
                .map_err(e2s)?;
            let acc0 = p.val_accuracy(ll0.x.view()).map_err(e2s)?;
            let (res, time_s) = run_outer(&p, &a.outer)?;
            let (g, ll) = o
                .value(res.theta.view(), p.x_start().view(), 1e-8)
                .map_err(e2s)?;
            let acc = p.val_accuracy(ll.x.view()).map_err(e2s)?;
            let (ntr, nv, d, k) = p.shape();
            let report = json!({
                "problem": "logreg", "method": a.outer.method.name(),
                "n_train": ntr, "n_val": nv, "features": d, "classes": k,
                "theta": res.theta.to_vec(), "n_hyperparameters": res.theta.len(),
                "upper_loss": g, "upper_loss_start": g0,
                "val_accuracy": acc, "val_accuracy_start": acc0,
                "iterations_outer": res.history.len(),
                "iterations_total": res.history.last().map(|r| r.work()).unwrap_or(0),
                "certified": res.history.iter().all(|r| r.certified),
                "stop": stop_name(&res.stop), "time_s": time_s,
            });
            finish_outer(&a.outer, &res, report, &[])
        }
        TuneProblem::Lasso(a) => tune_lasso(a),
    }
}

fn finish_outer(
    o: &OuterArgs,
    res: &OuterResult<()>,
    report: serde_json::Value,
    panels: &[ImagePanel],
) -> CliResult<()> {
    write_json(&o.out.join("history.json"), &history_json(&res.history))?;
    write_figure(
        &o.out.join("figure.png"),
        &outer_plots(&res.history, o.method.name()),
        panels,
    )?;
    write_json(&o.out.join("report.json"), &report)?;
    println!("{report}");
    Ok(())
}

fn read_mat(p: &Path) -> CliResult<Array2<f64>> {
    hyperprox::core::io::read_npy_2d(p).map_err(e2s)
}

fn read_vec(p: &Path) -> CliResult<Array1<f64>> {
    hyperprox::core::io::read_npy_1d(p).map_err(e2s)
}

fn tune_lasso(a: LassoArgs) -> CliResult<()> {
    let (at, bt, av, bv) = (
        read_mat(&a.a_train)?,
        read_vec(&a.b_train)?,
        read_mat(&a.a_val)?,
        read_vec(&a.b_val)?,
    );
    if at.nrows() != bt.len() {
        return Err(format!(
            "--b-train has length {} but --a-train has {} rows",
            bt.len(),
            at.nrows()
        ));
    }
    prepare_out(&a.out)?;
    let t0 = Instant::now();
    let t = LassoTuning::new(at, bt, av, bv).map_err(e2s)?;
    let pb = progress(a.max_iters);
    pb.set_message("gradient descent on log λ");
    let tuned = t.tune(0.1 * t.lambda_max(), a.max_iters).map_err(e2s)?;
    pb.finish_and_clear();
    let time_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let (grid, grid_epochs) = t.grid(50).map_err(e2s)?;
    let grid_time = t1.elapsed().as_secs_f64();
    let gbest = grid
        .iter()
        .min_by(|x, y| x.val_mse.total_cmp(&y.val_mse))
        .expect("50 points");
    let b = &tuned.best;
    let report = json!({
        "problem": "lasso", "method": "implicit-gradient",
        "lambda": b.lambda, "theta": [b.lambda.ln()], "lambda_max": t.lambda_max(),
        "val_mse": b.val_mse, "upper_loss": b.val_mse, "nnz": b.x.iter().filter(|v| **v != 0.0).count(),
        "iterations_total": tuned.epochs_total, "gradient_steps": tuned.history.len() - 1, "time_s": time_s,
        "grid": {"points": 50, "best_lambda": gbest.lambda, "best_val_mse": gbest.val_mse,
                  "iterations_total": grid_epochs, "time_s": grid_time},
    });
    let history = json!(tuned.history.iter().map(|e| json!({"lambda": e.lambda, "val_mse": e.val_mse, "grad_log_lambda": e.grad, "epochs": e.epochs})).collect::<Vec<_>>());
    write_json(&a.out.join("history.json"), &history)?;
    let plot = LinePlot {
        title: "validation MSE".into(),
        x_label: "λ".into(),
        y_label: "validation MSE".into(),
        log_x: true,
        log_y: false,
        series: vec![
            Series {
                name: "50-point grid".into(),
                points: grid.iter().map(|e| (e.lambda, e.val_mse)).collect(),
            },
            Series {
                name: "implicit gradient path".into(),
                points: tuned
                    .history
                    .iter()
                    .map(|e| (e.lambda, e.val_mse))
                    .collect(),
            },
        ],
    };
    write_figure(&a.out.join("figure.png"), &[plot], &[])?;
    write_json(&a.out.join("report.json"), &report)?;
    println!("{report}");
    Ok(())
}

/// Runs `hyperprox demo`: learns the TV parameters on 6 shipped Kodak images (96×96,
/// σ = 0.1) with MAID and reports the PSNR on 6 other images.
pub fn demo(out: &Path, max_iters: usize) -> CliResult<()> {
    prepare_out(out)?;
    let dir = shipped_data_dir().join("kodak/gray96");
    let all = load_images(&dir, 12, 96).map_err(e2s)?;
    let noisy = add_noise(&all, 0.1, 19);
    let (train_c, test_c) = all.split_at(6);
    let (train_n, test_n) = noisy.split_at(6);
    let train = TvDenoising::new(train_c, train_n).map_err(e2s)?;
    let test = TvDenoising::new(test_c, test_n).map_err(e2s)?;
    println!(
        "Learning TV denoising parameters (λ, ν) with MAID on 6 Kodak images (96×96, σ = 0.1)…"
    );
    let outer = OuterArgs {
        method: Method::Maid,
        max_iters,
        budget: 1_000_000,
        eps0: 0.1,
        alpha0: 0.1,
        estimated_constants: false,
        out: out.to_path_buf(),
    };
    let (res, time_s) = run_outer(&train, &outer)?;
    let (_, pn_tr, pd_tr) = tv_eval(&train, &res.theta)?;
    let (den, pn, pd) = tv_eval(&test, &res.theta)?;
    let (_, h, w) = test.shape();
    let tc = unstack(test.clean(), h, w);
    let tn = unstack(test.noisy(), h, w);
    println!("learned: λ = e^θ₁ = {:.4e}, ν = e^θ₂ = {:.4e} (θ = [{:.4}, {:.4}]) in {} outer iterations, {:.1} s", res.theta[0].exp(), res.theta[1].exp(), res.theta[0], res.theta[1], res.history.len(), time_s);
    println!(
        "test PSNR (6 held-out images): noisy {pn:.2} dB -> denoised {pd:.2} dB (+{:.2} dB)",
        pd - pn
    );
    let report = json!({
        "problem": "tv", "method": "maid", "train_images": 6, "test_images": 6, "size": 96, "sigma": 0.1,
        "theta": res.theta.to_vec(), "lambda": res.theta[0].exp(), "smoothing": res.theta[1].exp(),
        "upper_loss": res.history.last().map(|r| r.upper),
        "psnr_train_noisy": pn_tr, "psnr_train_denoised": pd_tr,
        "psnr_test_noisy": pn, "psnr_test_denoised": pd,
        "iterations_outer": res.history.len(),
        "iterations_total": res.history.last().map(|r| r.work()).unwrap_or(0),
        "certified": res.history.iter().all(|r| r.certified),
        "stop": stop_name(&res.stop), "time_s": time_s,
    });
    let panels = image_panels(&tn[0], &den[0], &tc[0]);
    finish_outer(&outer, &res, report, &panels)?;
    println!("report: {}", out.join("report.json").display());
    Ok(())
}

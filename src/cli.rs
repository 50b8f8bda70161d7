//! Subcommands of the `hyperprox` tool.

use clap::{Args, Parser, Subcommand, ValueEnum};
use hyperprox::core::io;
use hyperprox::prelude::*;
use ndarray::{Array1, Array2};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// hyperprox: proximal solvers, bilevel hyperparameter learning and learned (unfolded)
/// algorithms for inverse problems.
#[derive(Parser, Debug)]
#[command(name = "hyperprox", version, about, long_about = None, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Solve a penalized least-squares problem ½/n‖Ax − b‖² + λΩ(x) to a certified duality gap.
    Solve {
        #[command(subcommand)]
        problem: SolveProblem,
    },
    /// Denoise an image: ½‖x − y‖² + λ·TV(x) (forward differences, Neumann boundary).
    Denoise {
        #[command(subcommand)]
        model: DenoiseModel,
    },
    /// Deblur an image: min over x in [0, 1] of ½‖k ∗ x − y‖² + λ·TV(x), by PDHG.
    Deblur {
        #[command(subcommand)]
        model: DeblurModel,
    },
    /// Run the benchmark cases (Lasso 500×2000, ROF 256² and 512², bilevel TV denoising on 25
    /// Kodak images, deep-unfolding training throughput) with every applicable solver and print
    /// one JSON line per case and solver.
    Bench {
        /// Smaller cases (ROF 256², bilevel TV on 6 images) for a quick check.
        #[arg(long)]
        quick: bool,
    },
    /// Learn hyperparameters by bilevel optimization (MAID or HOAG; Lasso: implicit gradient).
    /// Writes OUT/report.json, OUT/history.json and OUT/figure.png.
    Tune {
        #[command(subcommand)]
        problem: crate::tune::TuneProblem,
    },
    /// Learned proximal networks: train (1-D Laplacian experiment, digits prior), apply, the
    /// recovered prior, and plug-and-play deblurring.
    Lpn {
        #[command(subcommand)]
        command: crate::lpn_cli::LpnCommand,
    },
    /// Deep-unfolded ISTA/IHT and the LISTA family: train (supervised or unsupervised) and
    /// evaluate against ISTA, FISTA and IHT.
    Unfold {
        #[command(subcommand)]
        command: crate::unfold_cli::UnfoldCommand,
    },
    /// The main job: learn TV denoising parameters on 6 shipped Kodak images with MAID (under a
    /// minute on 2 cores), print them and the PSNR on 6 held-out images, write a report.
    Demo {
        /// Output folder.
        #[arg(long, default_value = "demo-out")]
        out: PathBuf,
        /// Outer iterations of MAID.
        #[arg(long, default_value_t = 40)]
        max_iters: usize,
    },
    /// Estimate the operator norm of the 2-D finite-difference gradient on an h × w grid
    /// (power iteration) and compare it with its limit √8.
    Opnorm {
        /// Grid height.
        #[arg(long, default_value_t = 256)]
        height: usize,
        /// Grid width.
        #[arg(long, default_value_t = 256)]
        width: usize,
    },
}

#[derive(Subcommand, Debug)]
enum SolveProblem {
    /// Ω = ‖x‖₁.
    Lasso(SolveArgs),
    /// Ω = α‖x‖₁ + (1 − α)/2‖x‖² (set α with --alpha).
    ElasticNet(SolveArgs),
    /// Ω = Σ_g √|g|·‖x_g‖ over consecutive groups (set sizes with --groups).
    GroupLasso(SolveArgs),
    /// (1/n)Σ log(1 + exp(−bᵢ aᵢᵀx)) + λ‖x‖₁ with labels b in {−1, +1} (or {0, 1}, mapped).
    LogisticL1(SolveArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Solver {
    /// Coordinate descent with gap-safe screening.
    Cd,
    /// FISTA with the duality gap as stopping certificate.
    Fista,
    /// ADMM (Cholesky of AᵀA + ρI or its Woodbury form), gap-certified (least squares only).
    Admm,
}

#[derive(Args, Debug)]
struct SolveArgs {
    /// Design matrix A (n × p, .npy float64).
    #[arg(long)]
    a: PathBuf,
    /// Response b (length n, .npy).
    #[arg(long)]
    b: PathBuf,
    /// Regularization λ.
    #[arg(
        long,
        conflicts_with = "lambda_ratio",
        required_unless_present = "lambda_ratio",
        allow_negative_numbers = true
    )]
    lambda: Option<f64>,
    /// λ as a fraction of λ_max (the smallest λ with solution 0).
    #[arg(long, allow_negative_numbers = true)]
    lambda_ratio: Option<f64>,
    /// ℓ1 ratio α of the elastic net.
    #[arg(long, default_value_t = 0.5)]
    alpha: f64,
    /// Group sizes for the group lasso, e.g. --groups 5,5,10 (must add up to p).
    #[arg(long, value_delimiter = ',')]
    groups: Vec<usize>,
    /// Absolute duality-gap tolerance.
    #[arg(long, default_value_t = 1e-8)]
    tol: f64,
    /// Algorithm.
    #[arg(long, value_enum, default_value_t = Solver::Cd)]
    solver: Solver,
    /// Iteration (epoch) cap.
    #[arg(long, default_value_t = 100_000)]
    max_iters: usize,
    /// Coordinate descent: use celer-style working sets (ℓ1 and elastic net) on top of
    /// gap-safe screening.
    #[arg(long)]
    working_sets: bool,
    /// Output solution x (.npy).
    #[arg(long)]
    out: PathBuf,
    /// JSON report.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum DeblurModel {
    /// Total-variation deblurring by PDHG, certified by the primal–dual gap.
    Tv(DeblurArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum BoundaryArg {
    /// Symmetric reflection.
    Reflect,
    /// Zeros outside the image.
    Zero,
    /// Periodic.
    Periodic,
}

#[derive(Args, Debug)]
struct DeblurArgs {
    /// Blurred image (.png or 2-D .npy).
    #[arg(long)]
    input: PathBuf,
    /// Blur kernel (2-D .npy).
    #[arg(long)]
    kernel: PathBuf,
    /// Regularization λ.
    #[arg(long, allow_negative_numbers = true)]
    lambda: f64,
    /// Boundary handling of the blur.
    #[arg(long, value_enum, default_value_t = BoundaryArg::Reflect)]
    boundary: BoundaryArg,
    /// Certified relative primal–dual gap.
    #[arg(long, default_value_t = 1e-5)]
    tol: f64,
    /// Iteration cap.
    #[arg(long, default_value_t = 20_000)]
    max_iters: usize,
    /// Output image (.png or .npy).
    #[arg(long)]
    out: PathBuf,
    /// JSON report.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum DenoiseModel {
    /// Total-variation (ROF) denoising by the dual FGP method, certified by the duality gap.
    Tv(TvArgs),
}

#[derive(Args, Debug)]
struct TvArgs {
    /// Noisy image (.png, read as grayscale in [0, 1], or 2-D .npy).
    #[arg(long)]
    input: PathBuf,
    /// Regularization λ.
    #[arg(long, allow_negative_numbers = true)]
    lambda: f64,
    /// Anisotropic TV (ℓ1 of the differences) instead of isotropic.
    #[arg(long)]
    aniso: bool,
    /// Certified relative objective error.
    #[arg(long, default_value_t = 1e-6)]
    tol: f64,
    /// Iteration cap of the FGP solver.
    #[arg(long, default_value_t = 100_000)]
    max_iters: usize,
    /// Output image (.png or .npy).
    #[arg(long)]
    out: PathBuf,
    /// JSON report.
    #[arg(long)]
    report: Option<PathBuf>,
}

type CliResult<T> = Result<T, String>;

fn e2s(e: hyperprox::core::Error) -> String {
    e.to_string()
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> CliResult<()> {
    match cli.command {
        Command::Solve { problem } => solve(problem),
        Command::Denoise {
            model: DenoiseModel::Tv(a),
        } => denoise_tv(a),
        Command::Deblur {
            model: DeblurModel::Tv(a),
        } => deblur_tv(a),
        Command::Opnorm { height, width } => opnorm(height, width),
        Command::Bench { quick } => bench(quick),
        Command::Tune { problem } => crate::tune::tune(problem),
        Command::Demo { out, max_iters } => crate::tune::demo(&out, max_iters),
        Command::Lpn { command } => crate::lpn_cli::run(command),
        Command::Unfold { command } => crate::unfold_cli::run(command),
    }
}

fn check_output_path(p: &Path, exts: &[&str]) -> CliResult<()> {
    let ok = p
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| exts.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false);
    if !ok {
        return Err(format!(
            "{}: the output must end in {}",
            p.display(),
            exts.join(" or .")
        ));
    }
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(format!(
                "{}: the output folder {} does not exist",
                p.display(),
                dir.display()
            ));
        }
    }
    Ok(())
}

/// Checks the output file's extension and folder, and the report's, before any work is done.
fn check_outputs(out: &Path, report: &Option<PathBuf>, exts: &[&str]) -> CliResult<()> {
    check_output_path(out, exts)?;
    if let Some(r) = report {
        check_output_path(r, &["json"])?;
    }
    Ok(())
}

/// Writes the JSON report (if asked) and prints it on one line.
fn finish(path: &Option<PathBuf>, report: &serde_json::Value) -> CliResult<()> {
    if let Some(p) = path {
        std::fs::write(
            p,
            serde_json::to_string_pretty(report).expect("json") + "\n",
        )
        .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    println!("{report}");
    Ok(())
}

fn solve(problem: SolveProblem) -> CliResult<()> {
    let (name, args) = match &problem {
        SolveProblem::Lasso(a) => ("lasso", a),
        SolveProblem::ElasticNet(a) => ("elastic-net", a),
        SolveProblem::GroupLasso(a) => ("group-lasso", a),
        SolveProblem::LogisticL1(a) => ("logistic-l1", a),
    };
    if let SolveProblem::LogisticL1(args) = &problem {
        return solve_logistic(args);
    }
    check_outputs(&args.out, &args.report, &["npy"])?;
    let a: Array2<f64> = io::read_npy_2d(&args.a).map_err(e2s)?;
    let b: Array1<f64> = io::read_npy_1d(&args.b).map_err(e2s)?;
    let penalty = match &problem {
        SolveProblem::Lasso(_) => LassoPenalty::L1 { weights: None },
        SolveProblem::ElasticNet(_) => LassoPenalty::ElasticNet { alpha: args.alpha },
        SolveProblem::LogisticL1(_) => unreachable!("handled above"),
        SolveProblem::GroupLasso(_) => {
            if args.groups.is_empty() {
                return Err("group-lasso needs --groups, e.g. --groups 5,5,10 (sizes adding up to the number of columns of A)".into());
            }
            LassoPenalty::Group {
                groups: Groups::contiguous(&args.groups).map_err(e2s)?,
                weights: None,
            }
        }
    };
    let lambda = match (args.lambda, args.lambda_ratio) {
        (Some(l), _) => l,
        (None, Some(r)) => {
            if !(r >= 0.0) {
                return Err(format!("--lambda-ratio {r}: must be >= 0"));
            }
            r * LassoProblem::lambda_max(a.view(), b.view(), &penalty).map_err(e2s)?
        }
        (None, None) => return Err("give --lambda or --lambda-ratio".into()),
    };
    if !(lambda > 0.0) || !lambda.is_finite() {
        return Err(format!("lambda = {lambda}: must be finite and > 0"));
    }
    let prob = LassoProblem::new(a, b, lambda, penalty).map_err(e2s)?;
    let p = prob.n_features();
    let t0 = Instant::now();
    let sol = match args.solver {
        Solver::Cd => {
            let params = CoordinateDescentParams::default()
                .with_tol(args.tol)
                .with_max_epochs(args.max_iters)
                .with_working_sets(args.working_sets);
            let s = CoordinateDescent::new(&prob, params)
                .map_err(e2s)?
                .run(Array1::zeros(p).view(), NoObserver)
                .map_err(e2s)?;
            (s.x, s.iterations, s.objective, s.certificate, s.reason)
        }
        Solver::Admm => {
            // n·P(x) = ½‖Ax − b‖² + nλΩ(x): ADMM on the unscaled problem, certified by P's gap.
            let n = prob.n_samples() as f64;
            let a_op = DenseMatrix::new(prob.a().to_owned()).map_err(e2s)?;
            let scaled = LassoProblem::new(
                prob.a().to_owned(),
                prob.b().to_owned(),
                n * lambda,
                prob.penalty().clone(),
            )
            .map_err(e2s)?;
            let g = scaled.penalty_function().map_err(e2s)?;
            let params = AdmmParams::default()
                .with_tol(args.tol)
                .with_max_iters(args.max_iters);
            let s = Admm::dense(&a_op, prob.b().to_owned(), &*g, params)
                .map_err(e2s)?
                .with_certificate(CertificateKind::DualityGap, |x| prob.duality_gap(x))
                .run(Array1::zeros(p).view(), NoObserver)
                .map_err(e2s)?;
            let obj = prob.objective(s.x.view()).map_err(e2s)?;
            (s.x, s.iterations, obj, s.certificate, s.reason)
        }
        Solver::Fista => {
            let f = prob.smooth_part().map_err(e2s)?;
            let g = prob.penalty_function().map_err(e2s)?;
            let params = FistaParams::default()
                .with_tol(args.tol)
                .with_max_iters(args.max_iters)
                .with_certificate_every(10);
            let s = Fista::new(&f, &*g, params)
                .with_certificate(CertificateKind::DualityGap, |x| prob.duality_gap(x))
                .run(Array1::zeros(p).view(), NoObserver)
                .map_err(e2s)?;
            (s.x, s.iterations, s.objective, s.certificate, s.reason)
        }
    };
    let time_s = t0.elapsed().as_secs_f64();
    let (x, iterations, objective, gap, reason) = sol;
    let nnz = x.iter().filter(|&&v| v != 0.0).count();
    io::write_npy(&args.out, &x).map_err(e2s)?;
    let report = json!({
        "problem": name,
        "solver": format!("{:?}", args.solver).to_lowercase(),
        "objective": objective,
        "gap": gap,
        "certificate": "duality_gap",
        "iterations": iterations,
        "time_s": time_s,
        "converged": reason == TerminationReason::Converged,
        "nnz": nnz,
        "lambda": lambda,
        "n_samples": prob.n_samples(),
        "n_features": p,
    });
    finish(&args.report, &report)
}

fn denoise_tv(args: TvArgs) -> CliResult<()> {
    check_outputs(&args.out, &args.report, &["npy", "png"])?;
    if !(args.lambda >= 0.0) || !args.lambda.is_finite() {
        return Err(format!("lambda = {}: must be finite and >= 0", args.lambda));
    }
    let y = io::read_image(&args.input).map_err(e2s)?;
    let (h, w) = y.dim();
    let kind = if args.aniso {
        TvKind::Anisotropic
    } else {
        TvKind::Isotropic
    };
    let tv = TotalVariation::new(h, w, args.lambda, kind)
        .map_err(e2s)?
        .with_tolerance(1e-6, args.max_iters)
        .map_err(e2s)?;
    let flat = Array1::from_iter(y.iter().copied());
    let t0 = Instant::now();
    let r = tv.solve_rof(flat.view(), args.tol).map_err(e2s)?;
    let time_s = t0.elapsed().as_secs_f64();
    let objective =
        0.5 * (&r.x - &flat).mapv(|v| v * v).sum() + tv.value(r.x.view()).map_err(e2s)?;
    let x = Array2::from_shape_vec((h, w), r.x.to_vec()).expect("shape");
    io::write_image(&args.out, &x).map_err(e2s)?;
    let report = json!({
        "problem": "rof",
        "tv": if args.aniso { "anisotropic" } else { "isotropic" },
        "solver": "fgp",
        "objective": objective,
        "gap": r.gap,
        "relative_gap": r.gap / (objective - r.gap),
        "certificate": "duality_gap",
        "iterations": r.iterations,
        "time_s": time_s,
        "converged": true,
        "lambda": args.lambda,
        "height": h,
        "width": w,
    });
    finish(&args.report, &report)
}

fn opnorm(h: usize, w: usize) -> CliResult<()> {
    let grad = Gradient2d::new(h, w).map_err(e2s)?;
    let est: f64 = grad
        .opnorm_estimate(PowerIteration::default())
        .map_err(e2s)?;
    println!(
        "{{\"operator\": \"Gradient2d({h}x{w})\", \"opnorm_estimate\": {est:.9}, \"sqrt8\": {:.9}}}",
        8f64.sqrt()
    );
    Ok(())
}

fn solve_logistic(args: &SolveArgs) -> CliResult<()> {
    check_outputs(&args.out, &args.report, &["npy"])?;
    let a: Array2<f64> = io::read_npy_2d(&args.a).map_err(e2s)?;
    let mut y: Array1<f64> = io::read_npy_1d(&args.b).map_err(e2s)?;
    let mapped = y.iter().all(|&v| v == 0.0 || v == 1.0);
    if mapped {
        y.mapv_inplace(|v| 2.0 * v - 1.0);
    }
    if y.len() != a.nrows() {
        return Err(format!(
            "labels: expected {} entries (rows of A), got {}",
            a.nrows(),
            y.len()
        ));
    }
    let lambda = match (args.lambda, args.lambda_ratio) {
        (Some(l), _) => l,
        (None, Some(r)) if r >= 0.0 => r * LogisticL1Problem::lambda_max(a.view(), y.view()),
        (None, Some(r)) => return Err(format!("--lambda-ratio {r}: must be >= 0")),
        (None, None) => return Err("give --lambda or --lambda-ratio".into()),
    };
    if !(lambda > 0.0) || !lambda.is_finite() {
        return Err(format!("lambda = {lambda}: must be finite and > 0"));
    }
    let n = a.nrows();
    let p = a.ncols();
    let prob = LogisticL1Problem::new(a.clone(), y.clone(), lambda).map_err(e2s)?;
    let t0 = Instant::now();
    let (x, iterations, gap, reason) =
        match args.solver {
            Solver::Cd => {
                let params = CoordinateDescentParams::default()
                    .with_tol(args.tol)
                    .with_max_epochs(args.max_iters);
                let s = LogisticCd::new(&prob, params)
                    .map_err(e2s)?
                    .run(Array1::zeros(p).view(), NoObserver)
                    .map_err(e2s)?;
                (s.x, s.iterations, s.certificate, s.reason)
            }
            Solver::Fista => {
                let f = Logistic::new(DenseMatrix::new(a).map_err(e2s)?, y).map_err(e2s)?;
                let g = NormL1::new(n as f64 * lambda).map_err(e2s)?;
                let s = Fista::new(
                    &f,
                    &g,
                    FistaParams::default()
                        .with_tol(args.tol)
                        .with_max_iters(args.max_iters)
                        .with_certificate_every(10),
                )
                .with_certificate(CertificateKind::DualityGap, |x| prob.duality_gap(x))
                .run(Array1::zeros(p).view(), NoObserver)
                .map_err(e2s)?;
                (s.x, s.iterations, s.certificate, s.reason)
            }
            Solver::Admm => return Err(
                "--solver admm applies to least-squares problems; use cd or fista for logistic-l1"
                    .into(),
            ),
        };
    let time_s = t0.elapsed().as_secs_f64();
    let objective = prob.objective(x.view()).map_err(e2s)?;
    let nnz = x.iter().filter(|&&v| v != 0.0).count();
    io::write_npy(&args.out, &x).map_err(e2s)?;
    let report = json!({
        "problem": "logistic-l1",
        "solver": format!("{:?}", args.solver).to_lowercase(),
        "objective": objective,
        "gap": gap,
        "certificate": "duality_gap",
        "iterations": iterations,
        "time_s": time_s,
        "converged": reason == TerminationReason::Converged,
        "nnz": nnz,
        "lambda": lambda,
        "labels_mapped_from_01": mapped,
        "n_samples": n,
        "n_features": p,
    });
    finish(&args.report, &report)
}

fn deblur_tv(args: DeblurArgs) -> CliResult<()> {
    check_outputs(&args.out, &args.report, &["npy", "png"])?;
    if !(args.lambda >= 0.0) || !args.lambda.is_finite() {
        return Err(format!("lambda = {}: must be finite and >= 0", args.lambda));
    }
    if !(args.tol > 0.0) {
        return Err(format!("tol = {}: must be > 0", args.tol));
    }
    let y = io::read_image(&args.input).map_err(e2s)?;
    let k = io::read_npy_2d(&args.kernel).map_err(e2s)?;
    let (h, w) = y.dim();
    let n = h * w;
    let boundary = match args.boundary {
        BoundaryArg::Reflect => Boundary::Reflect,
        BoundaryArg::Zero => Boundary::Zero,
        BoundaryArg::Periodic => Boundary::Periodic,
    };
    let blur = Conv2d::new(h, w, k, boundary, ConvMethod::Auto).map_err(e2s)?;
    let yv = Array1::from_iter(y.iter().copied());
    let kop = Stack::new(&blur, Gradient2d::new(h, w).map_err(e2s)?).map_err(e2s)?;
    let pairs: Vec<Vec<usize>> = (0..n).map(|p| vec![p, n + p]).collect();
    let g = SeparableSum::new(vec![
        (
            n,
            Box::new(Translate::new(SqrNormL2::new(1.0).map_err(e2s)?, yv.clone()).map_err(e2s)?)
                as Box<dyn Prox<f64>>,
        ),
        (
            2 * n,
            Box::new(
                NormL21::new(Groups::new(2 * n, pairs).map_err(e2s)?, args.lambda).map_err(e2s)?,
            ),
        ),
    ])
    .map_err(e2s)?;
    let f = IndBox::new(0.0, 1.0).map_err(e2s)?;
    let x0 = yv.mapv(|v| v.clamp(0.0, 1.0));
    let t0 = Instant::now();
    let sol = Pdhg::new(
        &f,
        &g,
        &kop,
        PdhgParams::default()
            .with_tol(args.tol)
            .relative(true)
            .with_max_iters(args.max_iters),
    )
    .run(x0.view(), NoObserver)
    .map_err(e2s)?;
    let time_s = t0.elapsed().as_secs_f64();
    let x = Array2::from_shape_vec((h, w), sol.x.to_vec()).expect("shape");
    io::write_image(&args.out, &x).map_err(e2s)?;
    let report = json!({
        "problem": "tv-deblur",
        "solver": "pdhg",
        "objective": sol.objective,
        "gap": sol.certificate,
        "relative_gap": sol.certificate / sol.objective.abs(),
        "certificate": sol.kind.name(),
        "iterations": sol.iterations,
        "time_s": time_s,
        "converged": sol.reason == TerminationReason::Converged,
        "lambda": args.lambda,
        "height": h,
        "width": w,
    });
    finish(&args.report, &report)
}

/// One JSON line of the bench report.
#[allow(clippy::too_many_arguments)]
fn bench_line(
    case: &str,
    solver: &str,
    time_s: f64,
    iterations: usize,
    objective: f64,
    certificate: f64,
    kind: &str,
    bytes_per_iter: f64,
) {
    println!(
        "{}",
        json!({
            "case": case,
            "solver": solver,
            "time_s": time_s,
            "iterations": iterations,
            "time_per_iter_s": time_s / iterations.max(1) as f64,
            "objective": objective,
            "certificate": certificate,
            "certificate_kind": kind,
            "bytes_per_iter_estimate": bytes_per_iter,
            "gbytes_per_s_estimate": bytes_per_iter * iterations as f64 / time_s / 1e9,
        })
    );
}

fn bench(quick: bool) -> CliResult<()> {
    use hyperprox::bench_cases::{lasso_case, rof_case};
    if !quick {
        let prob = lasso_case(0).map_err(e2s)?;
        let (n, p) = (prob.n_samples(), prob.n_features());
        let mat = (n * p * 8) as f64;
        let x0 = Array1::zeros(p);
        let t = Instant::now();
        let s = CoordinateDescent::new(&prob, CoordinateDescentParams::default().with_tol(1e-8))
            .map_err(e2s)?
            .run(x0.view(), NoObserver)
            .map_err(e2s)?;
        // An epoch reads the active columns once (gap checks every 5 epochs read A twice more).
        let active = s.state.active.len() as f64 / p as f64;
        bench_line(
            "lasso-500x2000",
            "cd",
            t.elapsed().as_secs_f64(),
            s.iterations,
            s.objective,
            s.certificate,
            "duality_gap",
            mat * (active + 0.4),
        );
        let f = prob.smooth_part().map_err(e2s)?;
        let g = prob.penalty_function().map_err(e2s)?;
        let t = Instant::now();
        let s = Fista::new(
            &f,
            &*g,
            FistaParams::default()
                .with_tol(1e-8)
                .with_certificate_every(10),
        )
        .with_certificate(CertificateKind::DualityGap, |x| prob.duality_gap(x))
        .run(x0.view(), NoObserver)
        .map_err(e2s)?;
        // Gradient (A and Aᵀ) and objective (A) each iteration, the gap (A, Aᵀ) every 10th.
        bench_line(
            "lasso-500x2000",
            "fista",
            t.elapsed().as_secs_f64(),
            s.iterations,
            s.objective,
            s.certificate,
            "duality_gap",
            3.2 * mat,
        );
        let a_op = DenseMatrix::new(prob.a().to_owned()).map_err(e2s)?;
        let scaled = LassoProblem::new(
            prob.a().to_owned(),
            prob.b().to_owned(),
            n as f64 * prob.lambda(),
            prob.penalty().clone(),
        )
        .map_err(e2s)?;
        let g2 = scaled.penalty_function().map_err(e2s)?;
        let t = Instant::now();
        let s = Admm::dense(
            &a_op,
            prob.b().to_owned(),
            &*g2,
            AdmmParams::default().with_tol(1e-8),
        )
        .map_err(e2s)?
        .with_certificate(CertificateKind::DualityGap, |x| prob.duality_gap(x))
        .run(x0.view(), NoObserver)
        .map_err(e2s)?;
        let obj = prob.objective(s.x.view()).map_err(e2s)?;
        // Woodbury x-update (A, Aᵀ, n² triangular solves), objective (A) and gap (A, Aᵀ).
        bench_line(
            "lasso-500x2000",
            "admm",
            t.elapsed().as_secs_f64(),
            s.iterations,
            obj,
            s.certificate,
            "duality_gap",
            5.0 * mat + (2 * n * n * 8) as f64,
        );
    }
    let sizes: &[usize] = if quick { &[256] } else { &[256, 512] };
    for &size in sizes {
        let (noisy, _) = rof_case(size, 0).map_err(e2s)?;
        let y = Array1::from_iter(noisy.iter().copied());
        let npx = (size * size) as f64;
        let case = format!("rof-{size}");
        let tv = TotalVariation::new(size, size, 0.1, TvKind::Isotropic).map_err(e2s)?;
        let t = Instant::now();
        let r = tv.solve_rof(y.view(), 1e-4).map_err(e2s)?;
        let time = t.elapsed().as_secs_f64();
        let obj = 0.5 * (&r.x - &y).mapv(|v| v * v).sum() + tv.value(r.x.view()).map_err(e2s)?;
        // Fused sweep: read v, r, q, write q, r (9 numbers per pixel); certificate every 5th
        // iteration (∇ᵀq, ∇x, norms: about 10 more).
        bench_line(
            &case,
            "fgp",
            time,
            r.iterations,
            obj,
            r.gap / (obj - r.gap),
            "relative_duality_gap",
            8.0 * npx * (9.0 + 10.0 / 5.0),
        );
        let grad = Gradient2d::new(size, size).map_err(e2s)?;
        let fq = Translate::new(SqrNormL2::new(1.0).map_err(e2s)?, y.clone()).map_err(e2s)?;
        let n = size * size;
        let pairs: Vec<Vec<usize>> = (0..n).map(|p| vec![p, n + p]).collect();
        let gl = NormL21::new(Groups::new(2 * n, pairs).map_err(e2s)?, 0.1).map_err(e2s)?;
        let t = Instant::now();
        let s = Pdhg::new(
            &fq,
            &gl,
            &grad,
            PdhgParams::default()
                .with_tol(1e-4)
                .relative(true)
                .with_max_iters(20_000),
        )
        .run(y.view(), NoObserver)
        .map_err(e2s)?;
        bench_line(
            &case,
            "pdhg",
            t.elapsed().as_secs_f64(),
            s.iterations,
            s.objective,
            s.certificate / s.objective,
            "relative_duality_gap",
            8.0 * npx * 25.0,
        );
    }
    bench_bilevel(if quick { 6 } else { 25 })?;
    bench_unfolded(if quick { 3 } else { 10 })?;
    Ok(())
}

/// Deep-unfolding training throughput (samples/s of one forward + backward pass of T = 16
/// layers, N = 500, M = 250, batch 64), with 16 forward-only ISTA iterations on the same batch
/// as the baseline of the same run (`ratio_to_ista_forward`).
fn bench_unfolded(reps: usize) -> CliResult<()> {
    use hyperprox::unfolded::baselines::ista;
    use hyperprox::unfolded::train::{loss_and_grad, loss_for};
    use hyperprox::unfolded::{LossKind, Penalty, UnfoldedModel};
    let (problem, batch, models) = hyperprox::bench_cases::unfolded_case().map_err(e2s)?;
    let b = batch.len() as f64;
    let time = |f: &mut dyn FnMut() -> CliResult<()>| -> CliResult<f64> {
        f()?; // warm-up
        let t = Instant::now();
        for _ in 0..reps {
            f()?;
        }
        Ok(t.elapsed().as_secs_f64() / reps as f64)
    };
    let base = time(&mut || {
        ista(&problem, batch.y.view(), 0.1, Penalty::L1, 16).map_err(e2s)?;
        Ok(())
    })?;
    let line = |solver: &str, dt: f64| {
        println!(
            "{}",
            json!({"case": "unfolded-T16-500x250-batch64", "solver": solver, "time_s": dt,
                   "samples_per_s": b / dt, "ratio_to_ista_forward": dt / base, "reps": reps})
        )
    };
    line("ista-16-forward-only", base);
    for m in &models {
        let loss = loss_for(m, &problem, LossKind::Supervised);
        let dt = time(&mut || {
            loss_and_grad(m, loss.as_ref(), &batch, 16).map_err(e2s)?;
            Ok(())
        })?;
        line(&format!("{}-forward-backward", m.name()), dt);
    }
    Ok(())
}

/// The bilevel TV case: one implicit hypergradient (ε = δ = 1e-6, certified bound) against the
/// unrolled hypergradient through 200 gradient steps, both compared with a tight (1e-10)
/// implicit one; then 20 outer iterations of MAID and of HOAG (geometric).
fn bench_bilevel(images: usize) -> CliResult<()> {
    use hyperprox::bilevel::{
        BilevelProblem, Estimates, Hoag, HoagParams, Maid, MaidParams, Oracle, OuterSolver,
    };
    let p = hyperprox::bench_cases::tv_bilevel_case(images, 96).map_err(e2s)?;
    let case = format!("bilevel-tv-{images}x96");
    let o = Oracle::new(&p);
    let theta = p.theta_start();
    let x0 = p.x_start();
    let exact = o.exact(theta.view(), x0.view(), 1e-10).map_err(e2s)?;
    let err = |z: &Array1<f64>| (z - &exact.z).mapv(|v| v * v).sum().sqrt();
    let t = Instant::now();
    let hg = o
        .hypergradient(
            theta.view(),
            x0.view(),
            1e-6,
            1e-6,
            &mut Estimates::default(),
        )
        .map_err(e2s)?;
    let dt = t.elapsed().as_secs_f64();
    let bytes = (p.dim_x() * 8 * 4) as f64;
    bench_line(
        &case,
        "implicit-eps1e-6",
        dt,
        hg.ll_iters + hg.cg_iters,
        err(&hg.z),
        hg.omega,
        "hypergradient_error_vs_certified_bound",
        bytes,
    );
    let t = Instant::now();
    let (_, gu) = o.unrolled(theta.view(), x0.view(), 200).map_err(e2s)?;
    let dt = t.elapsed().as_secs_f64();
    bench_line(
        &case,
        "unrolled-200",
        dt,
        400,
        err(&gu),
        f64::NAN,
        "hypergradient_error",
        bytes,
    );
    let t = Instant::now();
    let r = Maid::new(&p, MaidParams::default().with_max_iters(20))
        .map_err(e2s)?
        .run(theta.view(), |_| true)
        .map_err(e2s)?;
    let last = r.history.last().cloned();
    bench_line(
        &case,
        "maid-20-outer",
        t.elapsed().as_secs_f64(),
        last.as_ref().map_or(0, |l| l.work()),
        last.as_ref().map_or(f64::NAN, |l| l.upper),
        last.as_ref().map_or(f64::NAN, |l| l.hypergrad_norm),
        "upper_loss_and_hypergradient_norm",
        bytes,
    );
    let t = Instant::now();
    let r = Hoag::new(&p, HoagParams::default().with_max_iters(20))
        .map_err(e2s)?
        .run(theta.view(), |_| true)
        .map_err(e2s)?;
    let last = r.history.last().cloned();
    bench_line(
        &case,
        "hoag-geometric-20-outer",
        t.elapsed().as_secs_f64(),
        last.as_ref().map_or(0, |l| l.work()),
        last.as_ref().map_or(f64::NAN, |l| l.upper),
        last.as_ref().map_or(f64::NAN, |l| l.hypergrad_norm),
        "upper_loss_and_hypergradient_norm",
        bytes,
    );
    Ok(())
}

//! `hyperprox solve …`, `denoise tv`, `deblur tv` and `opnorm`.

use super::common::{check_outputs, finish, read_json, usage, CliResult};
use clap::{Args, Subcommand};
use hyperprox::bilevel::experiments::denoise_learned_tv;
use hyperprox::core::device::Device;
use hyperprox::core::experiments::{
    deblur_tv, denoise_tv_on, solve_logistic, solve_path, solve_penalized, LambdaChoice,
    SolveSettings, SparseSolver,
};
use hyperprox::core::io;
use hyperprox::prelude::*;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum SolveProblem {
    /// Ω = ‖x‖₁.
    Lasso(SolveArgs),
    /// Ω = α‖x‖₁ + (1 − α)/2‖x‖² (set α with --alpha).
    ElasticNet(SolveArgs),
    /// Ω = Σ_g √|g|·‖x_g‖ over consecutive groups (set sizes with --groups).
    GroupLasso(SolveArgs),
    /// (1/n)Σ log(1 + exp(−bᵢ aᵢᵀx)) + λ‖x‖₁ with labels b in {−1, +1} (or {0, 1}, mapped).
    LogisticL1(SolveArgs),
}

#[derive(Args, Debug)]
pub struct SolveArgs {
    /// Design matrix A (n × p): a .npy (dense, float64 or float32) or a sparse matrix saved by
    /// scipy.sparse.save_npz (.npz, CSR or CSC; coordinate descent and FISTA run on its
    /// nonzeros, ADMM needs a dense A).
    #[arg(long)]
    a: PathBuf,
    /// Response b (length n, .npy).
    #[arg(long)]
    b: PathBuf,
    /// Regularization λ.
    #[arg(
        long,
        conflicts_with_all = ["lambda_ratio", "path"],
        required_unless_present_any = ["lambda_ratio", "path"],
        allow_negative_numbers = true
    )]
    lambda: Option<f64>,
    /// λ as a fraction of λ_max (the smallest λ with solution 0).
    #[arg(long, allow_negative_numbers = true, conflicts_with = "path")]
    lambda_ratio: Option<f64>,
    /// Solve a path of N values of λ, from λ_max down to --lambda-min-ratio·λ_max evenly in
    /// log λ, with warm starts and the strong rule (coordinate descent; not logistic-l1). The
    /// output holds one row of x per λ (N × p) and the report one entry per λ.
    #[arg(long)]
    path: Option<usize>,
    /// Smallest λ of --path as a fraction of λ_max.
    #[arg(
        long,
        default_value_t = 1e-3,
        allow_negative_numbers = true,
        requires = "path"
    )]
    lambda_min_ratio: f64,
    /// ℓ1 ratio α of the elastic net.
    #[arg(long, default_value_t = 0.5)]
    alpha: f64,
    /// Group sizes for the group lasso, e.g. --groups 5,5,10 (must add up to p).
    #[arg(long, value_delimiter = ',')]
    groups: Vec<usize>,
    /// Duality-gap tolerance (absolute; relative to P(0) with --relative). Finite and > 0.
    #[arg(long, default_value_t = 1e-8, allow_negative_numbers = true)]
    tol: f64,
    /// Stop at a gap ≤ tol·P(0) (P(0) = ‖b‖²/2n, or log 2 for logistic-l1): the same
    /// stopping point whatever the scale of b.
    #[arg(long)]
    relative: bool,
    /// Algorithm: cd (coordinate descent with gap-safe screening), fista (gap-certified) or
    /// admm (least squares only).
    #[arg(long, value_enum, default_value_t = SparseSolver::Cd)]
    solver: SparseSolver,
    /// Iteration (epoch) cap.
    #[arg(long, default_value_t = 100_000)]
    max_iters: usize,
    /// Coordinate descent: plain screened epochs over all features instead of working sets
    /// (the default: with Anderson and dual extrapolation for ℓ1, elastic net and the group
    /// lasso, prox-Newton for logistic-l1).
    #[arg(long)]
    no_working_sets: bool,
    /// Where the solve runs: cpu, or cuda / cuda:N (lasso with --solver fista and a dense
    /// .npy design; a build with `--features cuda`, on a machine with an NVIDIA driver).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: Device,
    /// Output solution x (.npy).
    #[arg(long)]
    out: PathBuf,
    /// JSON report.
    #[arg(long)]
    report: Option<PathBuf>,
}

impl SolveArgs {
    fn lambda(&self) -> CliResult<LambdaChoice> {
        match (self.lambda, self.lambda_ratio) {
            (Some(l), _) => Ok(LambdaChoice::Value(l)),
            (None, Some(r)) => Ok(LambdaChoice::Ratio(r)),
            (None, None) => usage("give --lambda or --lambda-ratio"),
        }
    }

    fn settings(&self) -> SolveSettings {
        SolveSettings {
            solver: self.solver,
            tol: self.tol,
            max_iters: self.max_iters,
            working_sets: !self.no_working_sets,
            relative: self.relative,
            device: self.device,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum DeblurModel {
    /// Total-variation deblurring by PDHG, certified by the primal–dual gap.
    Tv(DeblurArgs),
}

#[derive(Args, Debug)]
pub struct DeblurArgs {
    /// Blurred image (.png or 2-D .npy).
    #[arg(long)]
    input: PathBuf,
    /// Blur kernel (2-D .npy).
    #[arg(long)]
    kernel: PathBuf,
    /// Regularization λ.
    #[arg(long, allow_negative_numbers = true)]
    lambda: f64,
    /// Boundary handling of the blur: reflect (symmetric), zero or periodic.
    #[arg(long, value_enum, default_value_t = Boundary::Reflect)]
    boundary: Boundary,
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
pub enum DenoiseModel {
    /// Total-variation (ROF) denoising by the dual FGP method, certified by the duality gap; or,
    /// with --params, the smoothed TV model learned by `hyperprox tune tv`.
    Tv(TvArgs),
}

#[derive(Args, Debug)]
pub struct TvArgs {
    /// Noisy image (.png, read as grayscale in [0, 1], or 2-D .npy).
    #[arg(long)]
    input: PathBuf,
    /// Regularization λ.
    #[arg(
        long,
        allow_negative_numbers = true,
        required_unless_present = "params",
        conflicts_with = "params"
    )]
    lambda: Option<f64>,
    /// Anisotropic TV (ℓ1 of the differences) instead of isotropic.
    #[arg(long, conflicts_with = "params")]
    aniso: bool,
    /// Apply learned parameters: the report.json of `hyperprox tune tv` (its λ, ν and TV), i.e.
    /// solve ½‖x − y‖² + λ·TV_ν(x) to a certified ‖x − x̂‖ ≤ --tol.
    #[arg(long)]
    params: Option<PathBuf>,
    /// Certified relative objective error (with --params: certified distance ‖x − x̂‖).
    #[arg(long, default_value_t = 1e-6, allow_negative_numbers = true)]
    tol: f64,
    /// Iteration cap of the FGP solver.
    #[arg(long, default_value_t = 100_000)]
    max_iters: usize,
    /// Where the FGP iterations run: cpu, cuda (the first GPU) or cuda:N (a build with
    /// `--features cuda`, on a machine with an NVIDIA driver).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: Device,
    /// Output image (.png or .npy).
    #[arg(long)]
    out: PathBuf,
    /// JSON report.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// `hyperprox solve …`.
pub fn solve(problem: SolveProblem) -> CliResult<()> {
    let (name, args) = match &problem {
        SolveProblem::Lasso(a) => ("lasso", a),
        SolveProblem::ElasticNet(a) => ("elastic-net", a),
        SolveProblem::GroupLasso(a) => ("group-lasso", a),
        SolveProblem::LogisticL1(a) => ("logistic-l1", a),
    };
    check_outputs(&args.out, &args.report, &["npy"])?;
    let logistic = matches!(problem, SolveProblem::LogisticL1(_));
    if !args.device.is_cpu() {
        if !matches!(problem, SolveProblem::Lasso(_)) || args.path.is_some() {
            return usage("--device cuda solves one lasso (--lambda or --lambda-ratio); use --device cpu for the others and for --path");
        }
        if args.solver != SparseSolver::Fista {
            return usage("on the GPU the lasso runs FISTA: add --solver fista");
        }
        args.device.check()?;
    }
    if logistic && args.path.is_some() {
        return usage("--path is for lasso, elastic-net and group-lasso (coordinate descent); logistic-l1 solves one λ");
    }
    // A float32 .npy design runs a single-λ Lasso-type solve in float32 (half the bytes);
    // paths and logistic-l1 run in float64.
    let is_npy = args
        .a
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let a = if is_npy {
        match io::read_npy_native(&args.a)? {
            io::NpyData::F32(a32) if !logistic && args.path.is_none() => {
                let a = io::as_2d(&args.a, a32)?;
                let b = io::as_1d(&args.b, io::read_npy_native(&args.b)?.into_f32())?;
                return solve_single::<f32>(&problem, name, args, Design::from(a), b);
            }
            data => Design::from(io::as_2d(&args.a, data.into_f64())?),
        }
    } else {
        io::read_design(&args.a)?
    };
    let b = io::read_npy_1d(&args.b)?;
    if logistic {
        let (x, report) = solve_logistic(a, b, args.lambda()?, &args.settings())?;
        io::write_npy(&args.out, &x)?;
        return finish(&args.report, &report);
    }
    if let Some(n) = args.path {
        let (xs, report) = solve_path(
            a,
            b,
            penalty(&problem, args)?,
            n,
            args.lambda_min_ratio,
            name,
            &args.settings(),
        )?;
        io::write_npy(&args.out, &xs)?;
        return finish(&args.report, &report);
    }
    solve_single::<f64>(&problem, name, args, a, b)
}

/// The penalty of a Lasso-type `problem`.
fn penalty<T: Real>(problem: &SolveProblem, args: &SolveArgs) -> CliResult<LassoPenalty<T>> {
    Ok(match problem {
        SolveProblem::ElasticNet(_) => LassoPenalty::ElasticNet {
            alpha: T::c(args.alpha),
        },
        SolveProblem::GroupLasso(_) if args.groups.is_empty() => {
            return usage("group-lasso needs --groups, e.g. --groups 5,5,10 (sizes adding up to the number of columns of A)");
        }
        SolveProblem::GroupLasso(_) => LassoPenalty::Group {
            groups: Groups::contiguous(&args.groups)?,
            weights: None,
        },
        _ => LassoPenalty::L1 { weights: None },
    })
}

/// One certified Lasso-type solve in the precision `T` of the data; `x` is written in `T`.
fn solve_single<T: Real>(
    problem: &SolveProblem,
    name: &str,
    args: &SolveArgs,
    a: Design<T>,
    b: ndarray::Array1<T>,
) -> CliResult<()> {
    let penalty = penalty::<T>(problem, args)?;
    let lambda = args
        .lambda()?
        .resolve(|| Ok(LassoProblem::lambda_max(&a, b.view(), &penalty)?.as_f64()))?;
    let prob = LassoProblem::with_design(a, b, T::c(lambda), penalty)?;
    let (x, report) = solve_penalized(&prob, name, &args.settings())?;
    io::write_npy_real(&args.out, &x)?;
    finish(&args.report, &report)
}

/// `hyperprox denoise tv`.
pub fn denoise(model: DenoiseModel) -> CliResult<()> {
    let DenoiseModel::Tv(a) = model;
    check_outputs(&a.out, &a.report, &["npy", "png"])?;
    if !a.device.is_cpu() {
        if a.params.is_some() {
            return usage("--device cuda runs the ROF model (--lambda); the learned smoothed TV (--params) runs on the CPU");
        }
        a.device.check()?;
    }
    if let Some(params) = &a.params {
        let (kind, lambda, nu) = learned_tv(params)?;
        let y = io::read_image(&a.input)?;
        let (x, report) = denoise_learned_tv(y.view(), kind, lambda, nu, a.tol)?;
        io::write_image(&a.out, &x)?;
        return finish(&a.report, &report);
    }
    let kind = if a.aniso {
        TvKind::Anisotropic
    } else {
        TvKind::Isotropic
    };
    let lambda = a.lambda.unwrap_or(f64::NAN); // required by clap without --params
                                               // A float32 .npy image is denoised in float32 (and written so, to a .npy).
    if let Some(y) = read_f32_image(&a.input)? {
        let (x, report) = denoise_tv_on(a.device, y.view(), lambda, kind, a.tol, a.max_iters)?;
        write_f32_image(&a.out, x)?;
        return finish(&a.report, &report);
    }
    let y = io::read_image(&a.input)?;
    let (x, report) = denoise_tv_on(a.device, y.view(), lambda, kind, a.tol, a.max_iters)?;
    io::write_image(&a.out, &x)?;
    finish(&a.report, &report)
}

/// The TV, `λ` and `ν` of a `hyperprox tune tv` (or `demo`) report.
fn learned_tv(path: &std::path::Path) -> CliResult<(TvKind, f64, f64)> {
    let v = read_json(path, "pass the report.json written by `hyperprox tune tv`")?;
    let bad = |what: &str| {
        usage(format!(
            "{}: {what}; pass the report.json written by `hyperprox tune tv`",
            path.display()
        ))
    };
    if v["problem"] != "tv" {
        return bad("not the report of a TV tuning run");
    }
    let (Some(lambda), Some(nu)) = (v["lambda"].as_f64(), v["smoothing"].as_f64()) else {
        return bad("no numbers `lambda` and `smoothing`");
    };
    // Reports of the paper's model (and of `demo`) before the choice existed are anisotropic.
    let kind = match v.get("tv") {
        None => TvKind::Anisotropic,
        Some(t) => match serde_json::from_value::<TvKind>(t.clone()) {
            Ok(k) => k,
            Err(_) => return bad("`tv` is neither \"anisotropic\" nor \"isotropic\""),
        },
    };
    Ok((kind, lambda, nu))
}

/// `hyperprox deblur tv`.
pub fn deblur(model: DeblurModel) -> CliResult<()> {
    let DeblurModel::Tv(a) = model;
    check_outputs(&a.out, &a.report, &["npy", "png"])?;
    if let Some(y) = read_f32_image(&a.input)? {
        let k = io::as_2d(&a.kernel, io::read_npy_native(&a.kernel)?.into_f32())?;
        let (x, report) = deblur_tv(y.view(), k, a.lambda, a.boundary, a.tol, a.max_iters)?;
        write_f32_image(&a.out, x)?;
        return finish(&a.report, &report);
    }
    let y = io::read_image(&a.input)?;
    let k = io::read_npy_2d(&a.kernel)?;
    let (x, report) = deblur_tv(y.view(), k, a.lambda, a.boundary, a.tol, a.max_iters)?;
    io::write_image(&a.out, &x)?;
    finish(&a.report, &report)
}

/// The image of a float32 `.npy` file, `None` for any other input (read as float64).
fn read_f32_image(path: &std::path::Path) -> CliResult<Option<ndarray::Array2<f32>>> {
    if !path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
    {
        return Ok(None);
    }
    Ok(match io::read_npy_native(path)? {
        io::NpyData::F32(y) => Some(io::as_2d(path, y)?),
        io::NpyData::F64(_) => None,
    })
}

/// Writes a float32 result: as float32 to a `.npy`, converted for a PNG.
fn write_f32_image(path: &std::path::Path, x: ndarray::Array2<f32>) -> CliResult<()> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
    {
        io::write_npy(path, &x)?;
    } else {
        io::write_image(path, &x.mapv(f64::from))?;
    }
    Ok(())
}

/// `hyperprox opnorm`.
pub fn opnorm(h: usize, w: usize) -> CliResult<()> {
    // The grid size is a product that must not overflow: at most 2²⁸ pixels.
    if h.checked_mul(w).is_none_or(|p| p > 1 << 28) {
        return usage(format!(
            "--height {h} --width {w}: at most 268435456 pixels"
        ));
    }
    let grad = Gradient2d::new(h, w)?;
    let est: f64 = grad.opnorm_estimate(PowerIteration::default())?;
    println!(
        "{{\"operator\": \"Gradient2d({h}x{w})\", \"opnorm_estimate\": {est:.9}, \"sqrt8\": {:.9}}}",
        8f64.sqrt()
    );
    Ok(())
}

/// `--device cpu|cuda|cuda:N`.
pub(crate) fn parse_device(s: &str) -> Result<Device, String> {
    s.parse().map_err(|e: hyperprox::core::Error| e.to_string())
}

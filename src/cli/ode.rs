//! `hyperprox ode`: ODE solves (diffsol) and parameter estimation.

use super::common::{
    check_out_dir, check_outputs, create_dir, finish, print_line, usage, write_outputs, CliResult,
};
use clap::{Args, Subcommand, ValueEnum};
use hyperprox::core::figure::{Figure, LinePlot, Series};
use hyperprox::core::io;
use hyperprox::node::fit::{fit, FitOptions, FitReport, Observed};
use hyperprox::node::ode::{
    LotkaVolterra, Method, OdeOptions, OdeSolve, OdeStats, Rhs, Robertson, Sensitivity,
};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Subcommands of `ode`.
#[derive(Subcommand, Debug)]
pub enum OdeCommand {
    /// Fit the parameters of a model to observed trajectories (L-BFGS on adjoint gradients).
    Fit {
        #[command(subcommand)]
        model: FitModel,
    },
    /// Solve a built-in model at given times.
    Solve {
        #[command(subcommand)]
        model: SolveModel,
    },
}

/// Models of `ode fit`.
#[derive(Subcommand, Debug)]
pub enum FitModel {
    /// x' = a·x − b·x·y, y' = −c·y + d·x·y (x the prey, y the predator). Writes OUT/report.json
    /// (`params` [a, b, c, d], `loss` ½·mean squared error, `iterations`, `rhs_evals`, …) and
    /// OUT/figure.png (data and fitted curves). Repeat --times/--observations/--u0 for several
    /// trajectories.
    LotkaVolterra(FitArgs),
}

/// Models of `ode solve`.
#[derive(Subcommand, Debug)]
pub enum SolveModel {
    /// Robertson's stiff kinetics y₁' = −0.04y₁ + 1e4·y₂y₃, y₂' = 0.04y₁ − 1e4·y₂y₃ − 3e7·y₂²,
    /// y₃' = 3e7·y₂², y(0) = (1, 0, 0). Writes the T×3 states at the given times (the first
    /// being 0) to --out (.npy) and the steps and evaluations to --report.
    Robertson(RobertsonArgs),
    /// x' = a·x − b·x·y, y' = −c·y + d·x·y from --u0 at the first time, with --params a,b,c,d.
    /// Writes the T×2 states to --out (.npy) and the steps and evaluations to --report.
    LotkaVolterra(LvSolveArgs),
}

/// Arguments of `ode solve lotka-volterra`.
#[derive(Args, Debug)]
pub struct LvSolveArgs {
    /// Parameters a,b,c,d.
    #[arg(long)]
    params: String,
    /// Initial state x0,y0 at the first time.
    #[arg(long)]
    u0: String,
    /// Output times (.npy, strictly increasing; the first is t₀).
    #[arg(long)]
    times: PathBuf,
    /// Relative tolerance.
    #[arg(long, default_value_t = 1e-6)]
    rtol: f64,
    /// Absolute tolerance.
    #[arg(long, default_value_t = 1e-6)]
    atol: f64,
    /// Integrator.
    #[arg(long, value_enum, default_value = "tsit45")]
    method: MethodArg,
    /// The states (.npy, T×2).
    #[arg(long)]
    out: PathBuf,
    /// JSON report (steps and evaluations).
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum MethodArg {
    Bdf,
    Esdirk34,
    TrBdf2,
    Tsit45,
}

impl From<MethodArg> for Method {
    fn from(m: MethodArg) -> Self {
        match m {
            MethodArg::Bdf => Method::Bdf,
            MethodArg::Esdirk34 => Method::Esdirk34,
            MethodArg::TrBdf2 => Method::TrBdf2,
            MethodArg::Tsit45 => Method::Tsit45,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SensArg {
    Adjoint,
    Forward,
    Discrete,
}

impl From<SensArg> for Sensitivity {
    fn from(s: SensArg) -> Self {
        match s {
            SensArg::Adjoint => Sensitivity::Adjoint,
            SensArg::Forward => Sensitivity::Forward,
            SensArg::Discrete => Sensitivity::DiscreteAdjoint,
        }
    }
}

/// Arguments of `ode fit lotka-volterra`.
#[derive(Args, Debug)]
pub struct FitArgs {
    /// Observation times (.npy, length T, strictly increasing; the first is t₀ of --u0).
    #[arg(long, required = true)]
    times: Vec<PathBuf>,
    /// Observations (.npy, T×2: prey, predator).
    #[arg(long, required = true)]
    observations: Vec<PathBuf>,
    /// Initial state x0,y0 at the first time.
    #[arg(long, required = true)]
    u0: Vec<String>,
    /// Initial guess a,b,c,d.
    #[arg(long)]
    init: String,
    /// Integrator.
    #[arg(long, value_enum, default_value = "tsit45")]
    method: MethodArg,
    /// Gradient: the continuous adjoint, forward sensitivities or the discrete adjoint.
    #[arg(long, value_enum, default_value = "adjoint")]
    sensitivity: SensArg,
    /// Relative and absolute tolerance of the solver.
    #[arg(long, default_value_t = 1e-8)]
    tol: f64,
    /// Search over the parameters themselves instead of their logarithms (allows θ ≤ 0).
    #[arg(long)]
    no_log: bool,
    /// L-BFGS iteration cap.
    #[arg(long, default_value_t = 200)]
    max_iters: u64,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

/// Arguments of `ode solve robertson`.
#[derive(Args, Debug)]
pub struct RobertsonArgs {
    /// Output times (.npy, strictly increasing, the first being 0).
    #[arg(long)]
    times: PathBuf,
    /// Relative tolerance.
    #[arg(long, default_value_t = 1e-6)]
    rtol: f64,
    /// Absolute tolerance.
    #[arg(long, default_value_t = 1e-10)]
    atol: f64,
    /// Integrator (tsit45 is explicit: it needs very many steps on this stiff problem).
    #[arg(long, value_enum, default_value = "bdf")]
    method: MethodArg,
    /// The states (.npy, T×3).
    #[arg(long)]
    out: PathBuf,
    /// JSON report (steps and evaluations).
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Runs an `ode` subcommand.
pub fn run(cmd: OdeCommand) -> CliResult<()> {
    match cmd {
        OdeCommand::Fit {
            model: FitModel::LotkaVolterra(a),
        } => fit_lv(a),
        OdeCommand::Solve {
            model: SolveModel::Robertson(a),
        } => robertson(a),
        OdeCommand::Solve {
            model: SolveModel::LotkaVolterra(a),
        } => solve_lv(a),
    }
}

fn numbers(s: &str, what: &str, n: usize) -> CliResult<Vec<f64>> {
    let v: Result<Vec<f64>, _> = s.split(',').map(|x| x.trim().parse::<f64>()).collect();
    match v {
        Ok(v) if v.len() == n && v.iter().all(|x| x.is_finite()) => Ok(v),
        _ => usage(format!(
            "{what} {s:?}: give {n} finite numbers separated by commas"
        )),
    }
}

#[derive(Serialize)]
struct FitOut {
    model: &'static str,
    #[serde(flatten)]
    fit: FitReport,
    method: Method,
    sensitivity: Sensitivity,
    tol: f64,
    trajectories: usize,
    observations: usize,
    time_s: f64,
}

fn fit_lv(a: FitArgs) -> CliResult<()> {
    check_out_dir(&a.out)?;
    let k = a.times.len();
    if a.observations.len() != k || a.u0.len() != k {
        return usage(format!(
            "give one --observations and one --u0 per --times (got {k} --times, {} --observations, {} --u0)",
            a.observations.len(),
            a.u0.len()
        ));
    }
    let init = numbers(&a.init, "--init", 4)?;
    let mut obs = vec![];
    for i in 0..k {
        let times = io::read_npy_1d(&a.times[i])?.to_vec();
        let data = io::read_npy_2d(&a.observations[i])?;
        let u0 = numbers(&a.u0[i], "--u0", 2)?;
        if data.nrows() != times.len() {
            return usage(format!(
                "{}: {} rows, but {} has {} times; give one observation row per time",
                a.observations[i].display(),
                data.nrows(),
                a.times[i].display(),
                times.len()
            ));
        }
        obs.push(Observed { times, u0, data });
    }
    let options = OdeOptions {
        method: a.method.into(),
        rtol: a.tol,
        atol: a.tol,
        ..Default::default()
    };
    let ode = OdeSolve::new(Arc::new(LotkaVolterra), options)?;
    let opts = FitOptions {
        log_params: !a.no_log,
        sensitivity: a.sensitivity.into(),
        max_iters: a.max_iters,
        ..Default::default()
    };
    let start = Instant::now();
    let r = fit(&ode, &obs, &init, opts)?;
    let time_s = start.elapsed().as_secs_f64();
    create_dir(&a.out)?;
    // Data and fitted curves of each trajectory on a fine grid.
    let mut plots = vec![];
    for (i, o) in obs.iter().enumerate() {
        let (t0, t1) = (o.times[0], *o.times.last().unwrap());
        let fine: Vec<f64> = (0..=200)
            .map(|j| t0 + (t1 - t0) * j as f64 / 200.0)
            .collect();
        let y = ode.solve(&r.params, &o.u0, &fine)?.states;
        let mut p = LinePlot::new(format!("trajectory {}", i + 1), "t", "population");
        for (j, name) in ["prey x", "predator y"].iter().enumerate() {
            p = p
                .with(Series::new(
                    format!("{name} observed"),
                    o.times
                        .iter()
                        .zip(o.data.column(j))
                        .map(|(t, v)| (*t, *v))
                        .collect(),
                ))
                .with(Series::new(
                    format!("{name} fitted"),
                    fine.iter()
                        .zip(y.column(j))
                        .map(|(t, v)| (*t, *v))
                        .collect(),
                ));
        }
        plots.push(p);
    }
    let report = FitOut {
        model: "lotka-volterra",
        method: options.method,
        sensitivity: opts.sensitivity,
        tol: a.tol,
        trajectories: obs.len(),
        observations: obs.iter().map(|o| o.data.len()).sum(),
        fit: r,
        time_s,
    };
    write_outputs(
        &a.out,
        &report,
        None::<&[()]>,
        &Figure {
            plots,
            panels: vec![],
        },
    )?;
    print_line(&report);
    Ok(())
}

#[derive(Serialize)]
struct SolveReport {
    model: &'static str,
    method: Method,
    rtol: f64,
    atol: f64,
    times: usize,
    #[serde(flatten)]
    stats: OdeStats,
    time_s: f64,
}

/// Solves `rhs` at `times` and writes the states and the report.
#[allow(clippy::too_many_arguments)]
fn solve_and_write(
    model: &'static str,
    rhs: Arc<dyn Rhs>,
    method: MethodArg,
    (rtol, atol): (f64, f64),
    theta: &[f64],
    u0: &[f64],
    times: &[f64],
    (out, report): (&PathBuf, &Option<PathBuf>),
) -> CliResult<()> {
    let options = OdeOptions {
        method: method.into(),
        rtol,
        atol,
        ..Default::default()
    };
    let ode = OdeSolve::new(rhs, options)?;
    let start = Instant::now();
    let sol = ode.solve(theta, u0, times)?;
    let time_s = start.elapsed().as_secs_f64();
    io::write_npy(out, &sol.states)?;
    finish(
        report,
        &SolveReport {
            model,
            method: options.method,
            rtol,
            atol,
            times: times.len(),
            stats: sol.stats,
            time_s,
        },
    )
}

fn robertson(a: RobertsonArgs) -> CliResult<()> {
    check_outputs(&a.out, &a.report, &["npy"])?;
    let times = io::read_npy_1d(&a.times)?.to_vec();
    if times.first() != Some(&0.0) {
        return usage(format!(
            "{}: the first time must be 0, where y = (1, 0, 0)",
            a.times.display()
        ));
    }
    solve_and_write(
        "robertson",
        Arc::new(Robertson),
        a.method,
        (a.rtol, a.atol),
        &Robertson::RATES,
        &[1.0, 0.0, 0.0],
        &times,
        (&a.out, &a.report),
    )
}

fn solve_lv(a: LvSolveArgs) -> CliResult<()> {
    check_outputs(&a.out, &a.report, &["npy"])?;
    let theta = numbers(&a.params, "--params", 4)?;
    let u0 = numbers(&a.u0, "--u0", 2)?;
    let times = io::read_npy_1d(&a.times)?.to_vec();
    solve_and_write(
        "lotka-volterra",
        Arc::new(LotkaVolterra),
        a.method,
        (a.rtol, a.atol),
        &theta,
        &u0,
        &times,
        (&a.out, &a.report),
    )
}

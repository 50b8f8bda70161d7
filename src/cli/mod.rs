//! The `hyperprox` command line: argument definitions and dispatch. Every subcommand parses
//! its arguments, calls the library's experiment function, shows progress and writes files.

pub mod bench;
pub mod common;
pub mod lpn;
pub mod nn;
pub mod node;
pub mod ode;
pub mod parallel;
pub mod solve;
pub mod stn;
pub mod tune;
pub mod unfold;

use clap::{Parser, Subcommand};
pub use common::CliResult;
use std::path::PathBuf;

/// hyperprox: proximal solvers, bilevel hyperparameter learning and learned (unfolded)
/// algorithms for inverse problems.
#[derive(Parser, Debug)]
#[command(name = "hyperprox", version, about, long_about = None, arg_required_else_help = true)]
pub struct Cli {
    /// Worker threads of the parallel kernels (default: one per core). Results are the same bits
    /// for any count (a test compares 1 and 2 threads on every long command).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Solve a penalized least-squares problem ½/n‖Ax − b‖² + λΩ(x) to a certified duality gap.
    Solve {
        #[command(subcommand)]
        problem: solve::SolveProblem,
    },
    /// Denoise an image: ½‖x − y‖² + λ·TV(x) (forward differences, Neumann boundary).
    Denoise {
        #[command(subcommand)]
        model: solve::DenoiseModel,
    },
    /// Deblur an image: min over x in [0, 1] of ½‖k ∗ x − y‖² + λ·TV(x), by PDHG.
    Deblur {
        #[command(subcommand)]
        model: solve::DeblurModel,
    },
    /// Run the benchmark cases (Lasso 500×2000, ROF 256² and 512², bilevel TV denoising on 25
    /// Kodak images, deep-unfolding training throughput) with every applicable solver and print
    /// one JSON line per case and solver.
    Bench {
        /// Smaller cases (ROF 256², bilevel TV on 6 images) for a quick check.
        #[arg(long)]
        quick: bool,
        /// cpu (the bench report), or cuda / cuda:N: the GPU report (the card's copy rate, the
        /// fused TV step at 1024²–4096² and a 20000×50000 f32 Lasso, each against the CPU and
        /// PyTorch in the same run; a build with `--features cuda`).
        #[arg(long, default_value = "cpu", value_parser = solve::parse_device)]
        device: hyperprox::core::device::Device,
    },
    /// Learn hyperparameters by bilevel optimization (MAID or HOAG; Lasso: implicit gradient).
    /// Writes OUT/report.json, OUT/history.json and OUT/figure.png.
    Tune {
        #[command(subcommand)]
        problem: tune::TuneProblem,
    },
    /// Learned proximal networks: train (1-D Laplacian experiment, digits prior), apply, the
    /// recovered prior, and plug-and-play deblurring.
    Lpn {
        #[command(subcommand)]
        command: lpn::LpnCommand,
    },
    /// Neural networks from the library's blocks: train a classifier (MLP or CNN) on the
    /// shipped digits with any of the losses and optimizers.
    Nn {
        #[command(subcommand)]
        command: nn::NnCommand,
    },
    /// Self-tuning networks: hyperparameters tuned online by structured best-response layers
    /// (ridge regression with the closed-form optimum as reference).
    Stn {
        #[command(subcommand)]
        command: stn::StnCommand,
    },
    /// Neural ODEs trained with regularized solver heuristics (ERNODE, SRNODE, their local
    /// variants): Tsit5 with a discrete adjoint.
    Node {
        #[command(subcommand)]
        command: node::NodeCommand,
    },
    /// ODEs on diffsol (BDF, ESDIRK34, TR-BDF2, Tsit45) with forward sensitivities and adjoints:
    /// fit a model's parameters to observations, solve the stiff Robertson benchmark.
    Ode {
        #[command(subcommand)]
        command: ode::OdeCommand,
    },
    /// Deep-unfolded ISTA/IHT and the LISTA family: train (supervised or unsupervised) and
    /// evaluate against ISTA, FISTA and IHT.
    Unfold {
        #[command(subcommand)]
        command: unfold::UnfoldCommand,
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
    /// The operator norm of the 2-D finite-difference gradient on an h × w grid (exact:
    /// √(4 sin²(π(h−1)/2h) + 4 sin²(π(w−1)/2w))) and its limit √8.
    Opnorm {
        /// Grid height.
        #[arg(long, default_value_t = 256)]
        height: usize,
        /// Grid width.
        #[arg(long, default_value_t = 256)]
        width: usize,
    },
}

/// The subcommand's name, for messages.
fn command_name(c: &Command) -> String {
    format!("{c:?}")
        .split([' ', '{', '('])
        .next()
        .unwrap_or("")
        .to_lowercase()
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> CliResult<()> {
    if let Some(n) = cli.threads {
        if n == 0 || n > 4096 {
            return common::usage(format!("--threads {n}: use 1 to 4096 threads"));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| common::CliError::Usage(format!("--threads {n}: {e}")))?;
    }
    parallel::init()?;
    let parallel_ok = matches!(
        &cli.command,
        Command::Tune {
            problem: tune::TuneProblem::Tv(_) | tune::TuneProblem::Foe(_)
        } | Command::Unfold {
            command: unfold::UnfoldCommand::Train(_)
        }
    );
    if !parallel_ok {
        parallel::serial_only(&format!("hyperprox {}", command_name(&cli.command)))?;
    }
    match cli.command {
        Command::Solve { problem } => solve::solve(problem),
        Command::Denoise { model } => solve::denoise(model),
        Command::Deblur { model } => solve::deblur(model),
        Command::Opnorm { height, width } => solve::opnorm(height, width),
        Command::Bench { quick, device } => bench::run(quick, device),
        Command::Tune { problem } => tune::tune(problem),
        Command::Demo { out, max_iters } => tune::demo(&out, max_iters),
        Command::Lpn { command } => lpn::run(command),
        Command::Nn { command } => nn::run(command),
        Command::Stn { command } => stn::run(command),
        Command::Node { command } => node::run(command),
        Command::Ode { command } => ode::run(command),
        Command::Unfold { command } => unfold::run(command),
    }
}

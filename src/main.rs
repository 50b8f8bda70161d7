//! The `hyperprox` command-line tool.

use clap::{Parser, Subcommand};

/// hyperprox: proximal solvers, bilevel hyperparameter learning and learned (unfolded)
/// algorithms for inverse problems.
#[derive(Parser, Debug)]
#[command(name = "hyperprox", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
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

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        None => {
            use clap::CommandFactory;
            Cli::command().print_help().map_err(|e| e.to_string())
        }
        Some(Command::Opnorm { height, width }) => opnorm(height, width),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn opnorm(h: usize, w: usize) -> Result<(), String> {
    use hyperprox::prelude::*;
    let grad = Gradient2d::new(h, w).map_err(|e| e.to_string())?;
    let est: f64 = grad
        .opnorm_estimate(PowerIteration::default())
        .map_err(|e| e.to_string())?;
    println!(
        "{{\"operator\": \"Gradient2d({h}x{w})\", \"opnorm_estimate\": {est:.9}, \"sqrt8\": {:.9}}}",
        8f64.sqrt()
    );
    Ok(())
}

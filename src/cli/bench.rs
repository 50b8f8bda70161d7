//! `hyperprox bench`: the bench report, one JSON line per case and solver.

use super::common::CliResult;

/// Runs the bench cases of [`hyperprox::bench_cases::run`] and prints each line as it comes.
pub fn run(quick: bool) -> CliResult<()> {
    hyperprox::bench_cases::run(quick, &mut |line| println!("{line}"))?;
    Ok(())
}

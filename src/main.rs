#![allow(clippy::neg_cmp_op_on_partial_ord)] // `!(x > 0)` also rejects NaN
//! The `hyperprox` command-line tool.

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    if let Err(e) = cli::run(args) {
        // One line, no partial output files (commands write their outputs last).
        eprintln!("error: {}", e.to_string().replace('\n', " "));
        std::process::exit(1);
    }
}

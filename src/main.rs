#![allow(clippy::neg_cmp_op_on_partial_ord)] // `!(x > 0)` also rejects NaN
//! The `hyperprox` command-line tool.

mod cli;

use clap::Parser;

/// Keeps freed memory in the process (glibc): without it, each large temporary (an im2col
/// matrix, a batch of activations) is a fresh `mmap`, and training spends a sixth of its
/// time in page faults.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 28);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

fn main() {
    tune_allocator();
    let args = cli::Cli::parse();
    let result = cli::run(args);
    let (rank, size) = cli::parallel::rank_size();
    if size > 1 {
        let st = cli::parallel::comm().stats();
        eprintln!(
            "rank {rank} of {size}: {} collectives, {} bytes sent, {} bytes received, {:.3} s in collectives",
            st.collectives, st.bytes_sent, st.bytes_received, st.seconds
        );
    }
    // Every rank ends MPI (a collective) before exiting.
    cli::parallel::finish();
    if let Err(e) = result {
        // One line, no partial output files (commands write their outputs last). Under MPI
        // every rank prints the error, which the ranks agreed on.
        let at = if size > 1 {
            format!(" (rank {rank} of {size})")
        } else {
            String::new()
        };
        eprintln!("error{at}: {}", e.to_string().replace('\n', " "));
        std::process::exit(1);
    }
}

//! The benchmark cases of the bench report (`hyperprox bench`, [`run`]) and of `benches/`,
//! built once in the crates they belong to so both measure the same problems: the Lasso and
//! ROF cases ([`hyperprox_core::bench`]), bilevel TV denoising on the first `N` shipped Kodak
//! images at 96² (`σ = 0.1`, seed 19, the MAID paper's problem at `θ₀ = (−5, −5)`) and the
//! deep-unfolding throughput case.

use hyperprox_core::bench::{bench_lasso, bench_rof, BenchSink};
pub use hyperprox_core::bench::{lasso_case, rof_case, BenchLine};
pub use hyperprox_core::io::shipped_data_dir;
use hyperprox_core::Result;

pub use hyperprox_bilevel::experiments::bench_case as tv_bilevel_case;
pub use hyperprox_unfolded::experiments::bench_case as unfolded_case;

/// The whole bench report: Lasso (full run only), ROF 256² (and 512²), bilevel TV on 6 (25)
/// images, unfolded throughput with 3 (10) repetitions.
pub fn run(quick: bool, sink: &mut BenchSink<'_>) -> Result<()> {
    if !quick {
        bench_lasso(sink)?;
    }
    let sizes: &[usize] = if quick { &[256] } else { &[256, 512] };
    for &size in sizes {
        bench_rof(size, sink)?;
    }
    hyperprox_bilevel::experiments::bench(if quick { 6 } else { 25 }, sink)?;
    hyperprox_unfolded::experiments::bench(if quick { 3 } else { 10 }, sink)
}

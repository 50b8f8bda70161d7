//! The cost of one PDHG iteration on TV denoising against one FGP iteration on the same image
//! (issue 18's goal: at most 1.5×). Both run 200 iterations with their usual certificate
//! schedules (FGP's gap every 5th iteration, PDHG's every 10th); PDHG's set-up (the exact
//! gradient norm) is inside its time.
//!
//! Run: `cargo run --release -p hyperprox-core --example pdhg_vs_fgp_iteration -- 512`
//! (`RAYON_NUM_THREADS=1` for one thread).
use hyperprox_core::prelude::*;
use std::time::Instant;

fn main() -> hyperprox_core::Result<()> {
    let size: usize = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let iters = 200;
    let n = size * size;
    let y = hyperprox_core::testing::random_point::<f64>(n, 0.3, 1).mapv(|v| v + 0.5);
    let mut best = (f64::INFINITY, f64::INFINITY);
    for _ in 0..3 {
        // FGP: a tolerance it cannot reach, so it runs all its iterations (and says so).
        let tv = TotalVariation::new(size, size, 0.1, TvKind::Isotropic)?
            .with_tolerance(1e-30, iters)?;
        let t = Instant::now();
        let r = tv.solve_rof(y.view(), 1e-30);
        let fgp = t.elapsed().as_secs_f64() / iters as f64;
        assert!(r.is_err(), "FGP ran its {iters} iterations");
        // PDHG on min ½‖x − y‖² + 0.1·Σ‖(∇x)_p‖: one group per pixel, stacked layout.
        let grad = Gradient2d::new(size, size)?;
        let f = Translate::new(SqrNormL2::new(1.0)?, y.clone())?;
        let g = NormL21::new(Groups::stacked(n, 2)?, 0.1)?;
        let params = PdhgParams::default().with_tol(1e-300).with_max_iters(iters);
        let t = Instant::now();
        let s = Pdhg::new(&f, &g, &grad, params).run(y.view(), NoObserver)?;
        let pd = t.elapsed().as_secs_f64() / s.iterations as f64;
        best = (best.0.min(fgp), best.1.min(pd));
    }
    println!(
        "{size}²: FGP {:.1} µs/iteration, PDHG {:.1} µs/iteration, ratio {:.2} (best of 3)",
        best.0 * 1e6,
        best.1 * 1e6,
        best.1 / best.0
    );
    Ok(())
}

//! The LPN paper's 1-D Laplacian experiment: x ~ Laplace(0, 1), y = x + N(0, 1). Trains ℓ2, ℓ1
//! and proximal-matching LPNs (the paper's schedules, scaled by the first argument, default
//! 0.1; 0 selects the noise-free quadrature training of `--quick`; batch size the second, default 2000) and prints how far each is from soft
//! thresholding (the MAP denoiser), the MMSE and the posterior median, and how far the
//! recovered prior is from |x|.
//!
//! `cargo run --release -p hyperprox-lpn --example laplacian -- 0 2000` (optional third and
//! fourth arguments: one loss, and the layer width instead of 50).

use hyperprox_lpn::laplace;
use hyperprox_lpn::train::laplacian_schedule;
use hyperprox_lpn::*;
use ndarray::Array1;

fn main() -> hyperprox_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let scale: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(0.1);
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let grid = Array1::linspace(-4.0, 4.0, 161);
    let losses: Vec<String> = match args.get(3) {
        Some(l) => vec![l.clone()],
        None => vec!["l2".into(), "l1".into(), "prox-matching".into()],
    };
    let width: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(50);
    for loss in losses.iter().map(String::as_str) {
        let t = std::time::Instant::now();
        let mut st = TrainState::new(Icnn::new(
            IcnnConfig {
                widths: vec![width; 5],
                ..IcnnConfig::paper_1d()
            },
            1,
        )?)?;
        if scale == 0.0 {
            let schedule = laplace::population_schedule(loss)?;
            let pop = laplace::Population::new(400, 561);
            laplace::train_population(&mut st, &schedule, &pop, 100, |_, _| true)?;
        } else {
            let schedule = laplacian_schedule(loss, scale)?;
            train(
                &mut st,
                &schedule,
                &laplace::sampler(batch, 1),
                100,
                |_, _| true,
            )?;
        }
        let f = st.net.prox_scalar(grid.view())?;
        let dev_soft = grid
            .iter()
            .zip(&f)
            .map(|(y, v)| (v - laplace::soft(*y)).abs())
            .fold(0.0, f64::max);
        let dev_mmse = grid
            .iter()
            .zip(&f)
            .map(|(y, v)| (v - laplace::posterior_mean_median(*y).0).abs())
            .fold(0.0, f64::max);
        let dev_med = grid
            .iter()
            .zip(&f)
            .map(|(y, v)| (v - laplace::posterior_mean_median(*y).1).abs())
            .fold(0.0, f64::max);
        let dead = grid
            .iter()
            .zip(&f)
            .filter(|(y, _)| y.abs() <= 0.8)
            .map(|(_, v)| v.abs())
            .fold(0.0, f64::max);
        // Prior on [−3, 3] (inside the range of f), shifted so its minimum is 0, against |x|.
        let xs = Array1::linspace(-3.0, 3.0, 61).insert_axis(ndarray::Axis(1));
        let (r, res) = regularizer_rows(&st.net, xs.view(), InvertParams::default())?;
        let rmin = r.iter().cloned().fold(f64::INFINITY, f64::min);
        let dev_abs = xs
            .column(0)
            .iter()
            .zip(&r)
            .map(|(x, v)| (v - rmin - x.abs()).abs())
            .fold(0.0, f64::max);
        let worst_res = res.iter().cloned().fold(0.0, f64::max);
        println!(
            "{loss:14} steps {:6}  max|f−soft| {dev_soft:.3}  max|f−MMSE| {dev_mmse:.3}  max|f−median| {dev_med:.3}  max|f| on |y|≤0.8 {dead:.3}  f(0.5) {:.3}  max|R−min R−|x|| {dev_abs:.3} (inversion residual ≤ {worst_res:.1e})  {:.1} s",
            st.step,
            st.net.prox_scalar(ndarray::array![0.5].view())?[0],
            t.elapsed().as_secs_f64()
        );
        let probe =
            ndarray::array![-4.0, -3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0];
        let fp = st.net.prox_scalar(probe.view())?;
        let cells: Vec<String> = probe
            .iter()
            .zip(&fp)
            .map(|(y, v)| format!("f({y})={v:.3}"))
            .collect();
        println!("    {}", cells.join(" "));
    }
    Ok(())
}

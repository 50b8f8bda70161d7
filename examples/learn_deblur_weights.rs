//! Learns the weights of TV and Tikhonov for deblurring a shipped Kodak image, from parts.
use hyperprox::bilevel::composed::*;
use hyperprox::bilevel::data::{add_noise, load_images, psnr, stack};
use hyperprox::bilevel::experiments::{run_outer, OuterSettings};
use hyperprox::bilevel::{BilevelProblem, Oracle};
use hyperprox::core::{io::read_npy_2d, ops::Boundary};
use ndarray::Array2;
fn main() -> hyperprox::core::Result<()> {
    let n = 64;
    let clean = load_images("data/kodak/gray96".as_ref(), 1, n)?;
    let blur = Linear::blur(
        n,
        n,
        read_npy_2d("examples/gaussian5.npy")?,
        Boundary::Reflect,
    )?;
    let mut y = Array2::zeros((n, n));
    blur.apply(&[], clean[0].as_slice().unwrap(), y.as_slice_mut().unwrap());
    let y = add_noise(&[y], 0.01, 1);
    let data = DataFit::least_squares(blur, &[stack(&y)])?;
    let tv = Charbonnier::new(Smoothing::Fixed(0.01))?;
    let d = Differences2d::new(n, n, DiffBoundary::Interior)?;
    let p = ComposedProblem::builder(data, UpperLoss::squared_error(&clean))
        .term(WeightInit::Exp(1e-2), tv, d)
        .term(WeightInit::Exp(1e-2), SquaredL2, Identity(n * n))
        .build()?;
    let run = run_outer(&p, &OuterSettings::default(), |_| true)?;
    let (_, lower) = Oracle::new(&p).value(run.theta.view(), p.x_start().view(), 1e-6)?;
    let (w, ok) = (
        p.weights(run.theta.view()),
        run.history.iter().all(|r| r.certified),
    );
    let (before, after) = (psnr(&y[0], &clean[0]), psnr(&lower.x, &stack(&clean)));
    println!("weights {:.3e} {:.3e}, certified {ok}", w[0], w[1]);
    println!("PSNR {before:.2} dB blurred, {after:.2} dB restored");
    Ok(())
}

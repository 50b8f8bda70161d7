//! Operators, functions and proxes on real data: the first handwritten digit of the shipped
//! UCI digits set, blurred and noisy; the adjoint test on the blur; the TV prox (certified by
//! its duality gap) as a denoiser; and the ℓ1 / ℓ0 / ℓ½ thresholding rules side by side.
//!
//! Run with `cargo run --release --example operators_and_prox`.

use hyperprox::core::io::psnr;
use hyperprox::core::testing::check_adjoint;
use hyperprox::prelude::*;
use ndarray::Array1;

fn load_digit(path: &str, row: usize) -> Result<Array1<f64>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{path}: {e}; run from the repository root"))?;
    let line = text
        .lines()
        .nth(row + 1)
        .ok_or_else(|| format!("{path}: no row {row}"))?;
    let vals: Vec<f64> = line
        .split(',')
        .skip(1) // label
        .map(|s| s.trim().parse::<f64>().map(|v| v / 16.0))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    if vals.len() != 64 {
        return Err(format!("{path}: expected 64 pixels, got {}", vals.len()));
    }
    Ok(Array1::from(vals))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let truth = load_digit("data/digits/digits.csv", 0)?;

    // A 3×3 Gaussian blur with reflecting boundary, checked by the dot-product test.
    let kernel = Conv2d::<f64>::gaussian_kernel(3, 0.7)?;
    let blur = Conv2d::new(8, 8, kernel, Boundary::Reflect, ConvMethod::Auto)?;
    let adj_err = check_adjoint(&blur, 0, 1e-12)?;
    println!(
        "blur {}: adjoint relative error {adj_err:.1e}, ‖A‖ ≈ {:.4}",
        blur.name(),
        blur.opnorm_estimate(PowerIteration::default())?
    );

    // Blurred observation, and a noisy one (seeded), denoised by the TV prox
    // x = prox_{λTV}(y) for a few λ, each certified by its duality gap.
    let b = blur.apply(truth.view())?;
    println!("PSNR of the blurred digit: {:.2} dB", psnr(&b, &truth));
    let noise = hyperprox::core::testing::random_point::<f64>(64, 0.15, 1);
    let y = &truth + &noise;
    println!("PSNR noisy: {:.2} dB", psnr(&y, &truth));
    for lambda in [0.02, 0.05, 0.1, 0.2] {
        let tv =
            TotalVariation::new(8, 8, lambda, TvKind::Isotropic)?.with_tolerance(1e-7, 100_000)?;
        let r = tv.prox_certified(y.view(), 1.0)?;
        println!(
            "  TV prox λ = {lambda:<4}: {:>5} FGP iterations, certified ‖x − x*‖ ≤ {:.1e}, PSNR {:.2} dB",
            r.iterations,
            (2.0 * r.gap).sqrt(),
            psnr(&r.x, &truth)
        );
    }

    // Thresholding rules of sparse penalties at γ = 1.
    let t = Array1::linspace(-2.0, 2.0, 9);
    println!("x         : {t:.2}");
    println!("soft (ℓ1) : {:.2}", NormL1::new(0.5)?.prox(t.view(), 1.0)?);
    println!("hard (ℓ0) : {:.2}", NormL0::new(0.5)?.prox(t.view(), 1.0)?);
    println!("half (ℓ½) : {:.2}", NormLq::half(0.5)?.prox(t.view(), 1.0)?);
    println!(
        "CEL0      : {:.2}",
        Cel0::new(0.5, 1.0)?.prox(t.view(), 0.5)?
    );
    Ok(())
}

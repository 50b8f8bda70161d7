//! Classical solvers with certified stopping on the shipped data:
//! 1. a Lasso on the UCI digits (predict the mean intensity of the right half of a digit from
//!    its left half), solved by coordinate descent and FISTA to a duality gap of 1e-10;
//! 2. TV (ROF) denoising of a shipped Kodak image, certified by the duality gap, written to
//!    `target/rof_denoised.png`.
//!
//! Run with `cargo run --release --example solvers`.

use hyperprox::core::io;
use hyperprox::prelude::*;
use ndarray::{Array1, Array2};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Lasso on real data: features = the 32 left-half pixels, target = right-half mean.
    let text = std::fs::read_to_string("data/digits/digits.csv")
        .map_err(|e| format!("data/digits/digits.csv: {e}; run from the repository root"))?;
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .take(400)
        .map(|l| {
            l.split(',')
                .skip(1)
                .map(|v| v.parse::<f64>().unwrap_or(f64::NAN) / 16.0)
                .collect()
        })
        .collect();
    let n = rows.len();
    let a = Array2::from_shape_fn((n, 32), |(i, j)| rows[i][(j / 4) * 8 + j % 4]);
    let b = Array1::from_shape_fn(n, |i| {
        (0..32)
            .map(|j| rows[i][(j / 4) * 8 + 4 + j % 4])
            .sum::<f64>()
            / 32.0
    });
    let pen = LassoPenalty::L1 { weights: None };
    let lmax = LassoProblem::lambda_max(a.view(), b.view(), &pen)?;
    let prob = LassoProblem::new(a.clone(), b.clone(), 0.05 * lmax, pen)?;
    let cd = CoordinateDescent::new(&prob, CoordinateDescentParams::default().with_tol(1e-10))?
        .run(Array1::zeros(32).view(), NoObserver)?;
    let f = prob.smooth_part()?;
    let g = prob.penalty_function()?;
    let fista = Fista::new(
        &f,
        &*g,
        FistaParams::default()
            .with_tol(1e-10)
            .with_max_iters(200_000),
    )
    .with_certificate(CertificateKind::DualityGap, |x| prob.duality_gap(x.view()))
    .run(Array1::zeros(32).view(), NoObserver)?;
    println!("Lasso on {n} digits (32 features, λ = 0.05 λ_max):");
    let rows_out = [
        (
            "coordinate descent",
            cd.objective,
            cd.certificate,
            cd.iterations,
            cd.x.clone(),
        ),
        (
            "FISTA",
            fista.objective,
            fista.certificate,
            fista.iterations,
            fista.x.clone(),
        ),
    ];
    for (name, obj, gap, iters, x) in rows_out {
        println!(
            "  {name:<19} objective {obj:.12}  gap {gap:.1e}  iterations {iters:>5}  nonzeros {}",
            x.iter().filter(|v| **v != 0.0).count()
        );
    }

    // 2. ROF denoising of Kodak image 5 (96×96) with seeded noise σ = 0.1.
    let clean = io::read_png_gray("data/kodak/gray96/kodim05.png")?;
    let noise = hyperprox::core::testing::random_point::<f64>(96 * 96, 0.1, 7);
    let y = Array1::from_iter(clean.iter().copied()) + noise;
    let tv = TotalVariation::new(96, 96, 0.08, TvKind::Isotropic)?;
    let r = tv.solve_rof(y.view(), 1e-6)?;
    let psnr = |x: &Array1<f64>| {
        let mse = x
            .iter()
            .zip(clean.iter())
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            / x.len() as f64;
        10.0 * (1.0 / mse).log10()
    };
    println!(
        "ROF on kodim05 (96², σ = 0.1, λ = 0.08): {} FGP iterations, relative gap ≤ 1e-6, PSNR {:.2} → {:.2} dB",
        r.iterations,
        psnr(&y),
        psnr(&r.x)
    );
    std::fs::create_dir_all("target")?;
    io::write_png_gray(
        "target/rof_denoised.png",
        &Array2::from_shape_vec((96, 96), r.x.to_vec())?,
    )?;
    println!("wrote target/rof_denoised.png");
    Ok(())
}

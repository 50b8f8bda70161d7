//! The benchmark cases of the bench report (`hyperprox bench`) and of `benches/solvers.rs`,
//! built once here so both measure the same problems.
//!
//! * **Lasso**: Gaussian `A ∈ ℝ^{500×2000}` with unit-norm columns, a 5 %-sparse Gaussian
//!   ground truth, noise `0.01·N(0, 1)`, `λ = 0.1·λ_max`, objective `½/n‖Ax − b‖² + λ‖x‖₁`,
//!   stopped at an absolute duality gap of `1e-8` (the setting of the classical-solvers issue).
//! * **ROF**: Kodak image 23 (shipped, 256²; the 512² case tiles it with its mirror images),
//!   Gaussian noise `σ = 0.1`, `λ = 0.1`, stopped at a certified relative objective error of
//!   `1e-4` (duality gap `≤ 1e-4·(P − gap)`).
//! * **Bilevel TV**: the first `N` shipped Kodak images at 96², `σ = 0.1` (seed 19), the
//!   MAID paper's TV-denoising problem at `θ₀ = (−5, −5)`.

use hyperprox_core::prelude::*;
use ndarray::{s, Array1, Array2};
use rand::seq::index::sample;
use rand::SeedableRng;

fn seeded_normal(n: usize, seed: u64) -> Array1<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    hyperprox_core::linalg::randn(n, &mut rng)
}

pub use hyperprox_core::io::shipped_data_dir;

/// The Lasso case (seeded).
pub fn lasso_case(seed: u64) -> Result<LassoProblem<f64>> {
    let (n, p) = (500, 2000);
    let a = DenseMatrix::<f64>::gaussian(n, p, seed)?.normalize_columns();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 1);
    let support = sample(&mut rng, p, p / 20).into_vec();
    let vals = seeded_normal(support.len(), seed + 2);
    let mut x = Array1::zeros(p);
    for (k, &j) in support.iter().enumerate() {
        x[j] = vals[k];
    }
    let b = &a.apply(x.view())? + &seeded_normal(n, seed + 3).mapv(|v| 0.01 * v);
    let pen = LassoPenalty::L1 { weights: None };
    let am = a.matrix().to_owned();
    let lmax = LassoProblem::lambda_max(am.view(), b.view(), &pen)?;
    LassoProblem::new(am, b, 0.1 * lmax, pen)
}

/// The ROF case: (noisy image, clean image), row-major, for `size ∈ {256, 512}` (seeded noise).
pub fn rof_case(size: usize, seed: u64) -> Result<(Array2<f64>, Array2<f64>)> {
    let path = shipped_data_dir().join("kodak/gray256/kodim23.png");
    let im = hyperprox_core::io::read_png_gray(&path)?;
    let clean = match size {
        256 => im,
        512 => {
            let mut big = Array2::zeros((512, 512));
            big.slice_mut(s![..256, ..256]).assign(&im);
            big.slice_mut(s![..256, 256..])
                .assign(&im.slice(s![.., ..;-1]));
            big.slice_mut(s![256.., ..256])
                .assign(&im.slice(s![..;-1, ..]));
            big.slice_mut(s![256.., 256..])
                .assign(&im.slice(s![..;-1, ..;-1]));
            big
        }
        _ => {
            return Err(Error::param(
                "size",
                size,
                "the ROF bench case exists for 256 and 512",
            ));
        }
    };
    let noise = seeded_normal(size * size, seed)
        .into_shape_with_order((size, size))
        .expect("shape");
    Ok((&clean + &noise.mapv(|v| 0.1 * v), clean))
}

/// The bilevel TV-denoising case: the first `images` shipped Kodak images resized to
/// `size × size`, Gaussian noise `σ = 0.1` (seed 19).
pub fn tv_bilevel_case(images: usize, size: usize) -> Result<hyperprox_bilevel::TvDenoising> {
    use hyperprox_core::io::{add_noise_all as add_noise, load_images};
    let clean = load_images(&shipped_data_dir().join("kodak/gray96"), images, size)?;
    let noisy = add_noise(&clean, 0.1, 19);
    hyperprox_bilevel::TvDenoising::new(&clean, &noisy)
}

/// The deep-unfolding throughput case: the default setting (N = 500, M = 250, p = 0.1,
/// 40 dB), T = 16 layers, one minibatch of 64. Returns the problem, the batch and a model
/// of each kind at its classical initialization.
pub fn unfolded_case() -> Result<(
    hyperprox_unfolded::Problem,
    hyperprox_unfolded::Batch,
    Vec<hyperprox_unfolded::Unfolded>,
)> {
    use hyperprox_unfolded::{sample, ModelKind, ModelSpec, Problem, Signal, Unfolded};
    let problem = Problem::gaussian(250, 500, 1)?;
    let batch = sample(&problem, &Signal::default(), 64, 2)?;
    let models = [
        ModelKind::DuIsta,
        ModelKind::DuIht,
        ModelKind::ListaCp,
        ModelKind::Alista,
        ModelKind::Tista,
    ]
    .into_iter()
    .map(|k| Unfolded::new(ModelSpec::new(k, 16), &problem))
    .collect::<Result<Vec<_>>>()?;
    Ok((problem, batch, models))
}

//! TV denoising of a shipped Kodak image on the GPU and on the CPU, with the same FGP loop
//! (`fgp_iterations`) and the device's fused kernels (feature `cuda`):
//!
//! ```sh
//! cargo run --release -p hyperprox-core --features cuda --example gpu_tv
//! ```
//!
//! Prints both certified solves (iterations, gap, seconds) and their relative difference;
//! without a usable GPU it prints why and exits with code 1.

#[cfg(feature = "cuda")]
fn main() {
    use hyperprox_core::cuda::{self, Gpu};
    use hyperprox_core::func::{TotalVariation, TvKind};
    use std::time::Instant;

    let gpu = match Gpu::new(0) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let path = hyperprox_core::io::shipped_data_dir().join("kodak/gray256/kodim23.png");
    let clean = hyperprox_core::io::read_png_gray(&path).expect("the shipped image");
    let (h, w) = clean.dim();
    let noisy: ndarray::Array1<f64> = clean
        .iter()
        .enumerate()
        .map(|(i, &v)| v + 0.1 * (((i * 7919) % 1000) as f64 / 1000.0 - 0.5))
        .collect();
    let tv = TotalVariation::new(h, w, 0.1, TvKind::Isotropic).expect("a valid TV");
    let t = Instant::now();
    let cpu = tv.solve_rof(noisy.view(), 1e-6).expect("the CPU solve");
    let t_cpu = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let dev = cuda::solve_rof(&gpu, &tv, noisy.view(), 1e-6).expect("the GPU solve");
    let t_gpu = t.elapsed().as_secs_f64();
    let diff = (&dev.x - &cpu.x).mapv(|v| v * v).sum().sqrt() / cpu.x.mapv(|v| v * v).sum().sqrt();
    println!("{gpu:?}, image {h}x{w}");
    println!(
        "cpu: {} iterations, gap {:.3e}, {t_cpu:.3} s",
        cpu.iterations, cpu.gap
    );
    println!(
        "gpu: {} iterations, gap {:.3e}, {t_gpu:.3} s (incl. the first kernel compile)",
        dev.iterations, dev.gap
    );
    println!("relative difference of the two certified solutions: {diff:.2e}");
}

#[cfg(not(feature = "cuda"))]
fn main() {
    eprintln!("error: this example needs the GPU backend: add --features cuda");
    std::process::exit(1);
}

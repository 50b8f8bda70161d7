//! The GPU bench report (`hyperprox bench --device cuda`): every figure against a baseline
//! measured in the same run.
//!
//! * **copy**: the device-to-device copy rate of the card (`cuMemcpyDtoD` of a 1 GiB buffer;
//!   read + write bytes per second): the bandwidth ceiling of a memory-bound iteration.
//! * **TV-ROF step** at 1024², 2048², 4096² (f32 and f64): the fused FGP step of [`GpuFgp`]
//!   (time per iteration, bytes moved per iteration `9·n·size_of::<T>()`, achieved GB/s and
//!   its fraction of the copy rate), against the CPU's fused sweep ([`CpuFgp`]) on the same
//!   image in the same run.
//! * **Lasso** with a dense `20000 × 50000` f32 matrix (`N(0, 1/n)` entries, 1 % nonzeros,
//!   noise 0.01, `λ = 0.1·λ_max`): the GEMV pair's throughput (against one CPU GEMV of the same
//!   matrix), and the time of the core FISTA on the device to a duality gap of `1e-6`.
//! * **PyTorch**: `scripts/gpu_bench_torch.py` (the same TV iteration written with torch
//!   tensor operations, `torch.mv` on the same matrix, torch's copy rate) when `python3` with
//!   a CUDA torch is found; its lines are passed through. It also times DU-ISTA's training pass
//!   (T = 16, N = 500, M = 250, autograd) beside the unfolded crate's device bench
//!   (`hyperprox_unfolded::experiments::bench_device`, run after this one by
//!   `hyperprox bench --device cuda`).
//!
//! `quick` runs 256² and 512² images and a `2000 × 5000` Lasso.

use super::{Gpu, GpuFgp, GpuLasso, GpuReal};
use crate::bench::BenchSink;
use crate::error::{Error, Result};
use crate::func::{CpuFgp, FgpKernels, TotalVariation, TvKind};
use crate::linalg::Vector;
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rayon::prelude::*;
use serde_json::json;
use std::time::Instant;

fn sync_time(gpu: &Gpu, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    gpu.synchronize()?;
    let t = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    gpu.synchronize()?;
    Ok(t.elapsed().as_secs_f64() / reps as f64)
}

/// The card's device-to-device copy rate in GB/s (read + write).
fn copy_rate(gpu: &Gpu, quick: bool, sink: &mut BenchSink<'_>) -> Result<f64> {
    let n = if quick { 1 << 24 } else { 1 << 28 };
    let src = gpu.zeros::<f32>(n)?;
    let mut dst = gpu.zeros::<f32>(n)?;
    dst.copy_from(&src);
    let t = sync_time(gpu, 20, || {
        dst.copy_from(&src);
        Ok(())
    })?;
    let gbs = 2.0 * 4.0 * n as f64 / t / 1e9;
    sink(
        json!({"case": "copy", "solver": "cuda-dtod", "bytes": 4 * n, "time_s": t,
                "gbytes_per_s": gbs, "device": format!("{gpu:?}")}),
    );
    Ok(gbs)
}

/// A noisy `size × size` test image: the ROF bench case (Kodak 23 with its mirror images,
/// noise σ = 0.1) repeated periodically.
fn image(size: usize) -> Result<Array1<f64>> {
    let (noisy, _) = crate::bench::rof_case(512, 0)?;
    Ok(Array1::from_shape_fn(size * size, |p| {
        noisy[[(p / size) % 512, (p % size) % 512]]
    }))
}

fn tv_case<T: GpuReal>(
    gpu: &Gpu,
    size: usize,
    copy_gbs: f64,
    iters: usize,
    sink: &mut BenchSink<'_>,
) -> Result<()> {
    let v64 = image(size)?;
    let v: Array1<T> = v64.mapv(T::c);
    let n = size * size;
    let mu = T::c(0.1);
    let tv = TotalVariation::new(size, size, mu, TvKind::Isotropic)?;
    // GPU: the fused step, after a warm-up.
    let vd = gpu.upload(v.as_slice().expect("owned"))?;
    let mut q = gpu.zeros::<T>(2 * n)?;
    let mut r = gpu.zeros::<T>(2 * n)?;
    let mut k = GpuFgp::<T>::new(gpu, size, size, TvKind::Isotropic)?;
    for _ in 0..5 {
        k.step(&vd, mu, T::c(0.5), &mut q, &mut r);
    }
    let t_gpu = sync_time(gpu, iters, || {
        k.step(&vd, mu, T::c(0.5), &mut q, &mut r);
        Ok(())
    })?;
    let bytes = (9 * n * std::mem::size_of::<T>()) as f64;
    // CPU: the same step (fused sweep, all cores), fewer iterations.
    let mut cpu = CpuFgp::new(&tv);
    let (mut qc, mut rc) = (Array1::<T>::zeros(2 * n), Array1::<T>::zeros(2 * n));
    cpu.step(&v, mu, T::c(0.5), &mut qc, &mut rc);
    let cpu_iters = (iters / 20).max(3);
    let t0 = Instant::now();
    for _ in 0..cpu_iters {
        cpu.step(&v, mu, T::c(0.5), &mut qc, &mut rc);
    }
    let t_cpu = t0.elapsed().as_secs_f64() / cpu_iters as f64;
    let gbs = bytes / t_gpu / 1e9;
    sink(json!({
        "case": format!("tv-step-{size}"), "solver": "fgp-fused-cuda",
        "precision": std::any::type_name::<T>(), "time_per_iter_s": t_gpu,
        "bytes_per_iter": bytes, "gbytes_per_s": gbs, "fraction_of_copy_rate": gbs / copy_gbs,
        "cpu_time_per_iter_s": t_cpu, "speedup_vs_cpu": t_cpu / t_gpu,
        "cpu_threads": rayon::current_num_threads(),
    }));
    Ok(())
}

fn lasso_case(gpu: &Gpu, quick: bool, sink: &mut BenchSink<'_>) -> Result<()> {
    let (n, p) = if quick {
        (2000, 5000)
    } else {
        (20_000, 50_000)
    };
    // A with N(0, 1/n) entries, generated in parallel row blocks from per-block seeds.
    let scale = (1.0 / n as f64).sqrt();
    let mut a = Array2::<f32>::zeros((n, p));
    a.as_slice_mut()
        .expect("owned")
        .par_chunks_mut(p * 64)
        .enumerate()
        .for_each(|(blk, chunk)| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + blk as u64);
            let z = crate::linalg::randn::<f64>(chunk.len(), &mut rng);
            for (c, v) in chunk.iter_mut().zip(z.iter()) {
                *c = (v * scale) as f32;
            }
        });
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let xs: Array1<f32> = crate::linalg::randn::<f64>(p, &mut rng)
        .mapv(|v| v as f32)
        .iter()
        .enumerate()
        .map(|(i, &v)| if i % 100 == 0 { v } else { 0.0 })
        .collect();
    let noise = crate::linalg::randn::<f64>(n, &mut rng).mapv(|v| (0.01 * v) as f32);
    let b = a.dot(&xs) + &noise;
    // One CPU GEMV of the same matrix (the baseline of the throughput).
    let t0 = Instant::now();
    let cpu_ax = a.dot(&xs);
    let t_cpu = t0.elapsed().as_secs_f64();
    let f = GpuLasso::<f32>::new(gpu, a.view(), b.view())?;
    let bytes = (4 * n * p) as f64;
    let x = gpu.upload(xs.as_slice().expect("owned"))?;
    let mut y = gpu.zeros::<f32>(n)?;
    let dense = f.matrix();
    dense.gemv(false, 1.0, &x, 0.0, &mut y);
    let t_fwd = sync_time(gpu, 10, || {
        dense.gemv(false, 1.0, &x, 0.0, &mut y);
        Ok(())
    })?;
    let mut z = gpu.zeros::<f32>(p)?;
    let t_adj = sync_time(gpu, 10, || {
        dense.gemv(true, 1.0, &y, 0.0, &mut z);
        Ok(())
    })?;
    let err = {
        let got = Array1::from(y.to_vec()?);
        (&got - &cpu_ax).mapv(|v| (v as f64).powi(2)).sum().sqrt()
            / cpu_ax.mapv(|v| (v as f64).powi(2)).sum().sqrt()
    };
    sink(json!({
        "case": format!("gemv-{n}x{p}-f32"), "solver": "cublas-sgemv",
        "time_ax_s": t_fwd, "time_atx_s": t_adj, "gbytes_per_s_ax": bytes / t_fwd / 1e9,
        "gbytes_per_s_atx": bytes / t_adj / 1e9, "cpu_time_ax_s": t_cpu,
        "cpu_gbytes_per_s": bytes / t_cpu / 1e9, "speedup_vs_cpu": t_cpu / t_fwd,
        "relative_difference_vs_cpu": err,
    }));
    let lambda = 0.1 * f.lambda_max()?;
    gpu.synchronize()?;
    let t0 = Instant::now();
    let (sol, objective) = f.fista(lambda, 1e-6, 100_000)?;
    gpu.synchronize()?;
    let dt = t0.elapsed().as_secs_f64();
    sink(json!({
        "case": format!("lasso-{n}x{p}-f32"), "solver": "fista-cuda", "time_s": dt,
        "iterations": sol.iterations, "time_per_iter_s": dt / sol.iterations.max(1) as f64,
        "objective": objective, "gap": sol.certificate, "tol": 1e-6,
        "converged": sol.reason == crate::solve::TerminationReason::Converged,
        "lambda": lambda,
    }));
    Ok(())
}

/// Runs `scripts/gpu_bench_torch.py` (or `$HYPERPROX_TORCH_BENCH`) with the same sizes and
/// passes its JSON lines through; a line saying why where it cannot run.
fn torch(quick: bool, sizes: &[usize], sink: &mut BenchSink<'_>) {
    let script = std::env::var("HYPERPROX_TORCH_BENCH")
        .unwrap_or_else(|_| "scripts/gpu_bench_torch.py".into());
    if !std::path::Path::new(&script).exists() {
        sink(
            json!({"case": "torch", "skipped": format!("{script} not found (run from the repository root or set HYPERPROX_TORCH_BENCH)")}),
        );
        return;
    }
    let sizes: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
    let lasso = if quick { "2000x5000" } else { "20000x50000" };
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args([
            "--sizes",
            &sizes.join(","),
            "--lasso",
            lasso,
            "--unfold",
            "500x250x16",
        ])
        .output();
    match out {
        Ok(o) => {
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                    sink(v);
                }
            }
            if !o.status.success() {
                let err = String::from_utf8_lossy(&o.stderr);
                let last = err.lines().last().unwrap_or("").to_string();
                sink(json!({"case": "torch", "skipped": format!("the script failed: {last}")}));
            }
        }
        Err(e) => sink(json!({"case": "torch", "skipped": format!("python3 not found: {e}")})),
    }
}

/// The GPU bench report (see the [module docs](self)).
pub fn run(gpu: &Gpu, quick: bool, sink: &mut BenchSink<'_>) -> Result<()> {
    let copy = copy_rate(gpu, quick, sink)?;
    if !(copy > 0.0) {
        return Err(Error::Device("the copy rate could not be measured".into()));
    }
    let sizes: &[usize] = if quick {
        &[256, 512]
    } else {
        &[1024, 2048, 4096]
    };
    for &size in sizes {
        let iters = if quick { 50 } else { 200 };
        tv_case::<f32>(gpu, size, copy, iters, sink)?;
        tv_case::<f64>(gpu, size, copy, iters, sink)?;
    }
    lasso_case(gpu, quick, sink)?;
    torch(quick, sizes, sink);
    Ok(())
}

//! The GPU backend on a device (feature `cuda`): every operation compared with the CPU result
//! (1e-12 relative in f64, 1e-5 in f32), the adjoint dot-product test on device buffers, the
//! core FISTA and the TV prox's FGP loop run on `GpuVec`s. Where no GPU can be used (no
//! driver, no device, no NVRTC), each test prints that it is skipped and why.
#![cfg(feature = "cuda")]

use hyperprox_core::backend::{FunctionOn, OperatorOn, ProxOn};
use hyperprox_core::cuda::{self, Gpu, GpuConv2d, GpuDense, GpuGradient2d, GpuMask, GpuVec};
use hyperprox_core::func::Function;
use hyperprox_core::func::{
    ElasticNet, Groups, IndBallL2, IndBox, IndNonnegative, NormL0, NormL1, NormL21, Prox,
    TotalVariation, TvKind,
};
use hyperprox_core::linalg::Vector;
use hyperprox_core::ops::{
    Boundary, Conv2d, ConvMethod, Gradient2d, LinearOperator, Mask, PowerIteration,
};
use hyperprox_core::solve::{LassoPenalty, LassoProblem};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};

fn gpu() -> Option<Gpu> {
    match Gpu::new(0) {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("skipped (no usable GPU): {e}");
            None
        }
    }
}

fn rand_vec(n: usize, seed: u64) -> Array1<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Array1::from_iter((0..n).map(|_| rng.random_range(-1.0..1.0)))
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let n: f64 = b.iter().map(|y| y * y).sum();
    (d / n.max(1e-300)).sqrt()
}

fn up(g: &Gpu, x: &Array1<f64>) -> GpuVec<f64> {
    g.upload(x.as_slice().unwrap()).unwrap()
}

fn down(x: &GpuVec<f64>) -> Vec<f64> {
    x.to_vec().unwrap()
}

#[test]
fn the_kernels_compile_with_nvrtc_for_hopper() {
    if !cuda::nvrtc_present() {
        eprintln!("skipped: libnvrtc.so.13 not found (set LD_LIBRARY_PATH to CUDA 13's NVRTC)");
        return;
    }
    let ptx = cuda::compile_kernels((9, 0)).unwrap().to_src();
    for k in cuda::KERNEL_NAMES {
        for s in ["_f32", "_f64"] {
            assert!(
                ptx.contains(&format!(".entry {k}{s}(")),
                "{k}{s} missing from the PTX"
            );
        }
    }
}

#[test]
fn vector_operations_on_the_device_are_the_cpu_ones() {
    let Some(g) = gpu() else { return };
    let n = 100_003;
    let (x, y, z) = (rand_vec(n, 1), rand_vec(n, 2), rand_vec(n, 3));
    let (dx, dy, dz) = (up(&g, &x), up(&g, &y), up(&g, &z));
    let tol = 1e-12;
    assert!(rel(&[dx.dot(&dy)], &[x.dot(&y)]) <= tol);
    assert!(rel(&[dx.norm2()], &[Vector::norm2(&x)]) <= tol);
    assert!(rel(&[dx.norm1()], &[Vector::norm1(&x)]) <= tol);
    assert_eq!(dx.norm_inf(), Vector::norm_inf(&x));
    let mut a = dy.clone();
    a.axpy(0.3, &dx);
    let mut b = y.clone();
    b.axpy(0.3, &x);
    assert!(rel(&down(&a), b.as_slice().unwrap()) <= tol);
    a.set_extrapolation(&dz, &dx, 0.7);
    b.set_extrapolation(&z, &x, 0.7);
    assert!(rel(&down(&a), b.as_slice().unwrap()) <= tol);
    a.xpay(&dy, -0.2);
    b.xpay(&y, -0.2);
    assert!(rel(&down(&a), b.as_slice().unwrap()) <= tol);
    let d1 = GpuVec::dot_of_differences(&dx, &dy, &dz, &dx);
    let d2 = Array1::dot_of_differences(&x, &y, &z, &x);
    assert!(rel(&[d1], &[d2]) <= tol);
    assert!(
        rel(
            &[dx.norm_of_scaled_difference(0.4, &dy)],
            &[x.norm_of_scaled_difference(0.4, &y)]
        ) <= tol
    );
    assert_eq!(dx.max_abs_diff(&dy), x.max_abs_diff(&y));
    assert!(dx.all_finite());
    let mut bad = x.clone();
    bad[77] = f64::NAN;
    assert!(!up(&g, &bad).all_finite());
    // f32 to single precision.
    let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let yf: Vec<f32> = y.iter().map(|&v| v as f32).collect();
    let (fx, fy) = (g.upload(&xf).unwrap(), g.upload(&yf).unwrap());
    assert!(rel(&[fx.dot(&fy) as f64], &[x.dot(&y)]) <= 1e-5);
}

/// `⟨Ax, y⟩ = ⟨x, Aᵀy⟩` on device buffers, and `Ax`, `Aᵀy` against the CPU operator.
fn adjoint_and_cpu<A: OperatorOn<f64, GpuVec<f64>>, B: LinearOperator<f64>>(
    g: &Gpu,
    a: &A,
    cpu: &B,
) {
    let (m, n) = a.shape_on();
    assert_eq!((m, n), cpu.shape());
    let (x, y) = (rand_vec(n, 4), rand_vec(m, 5));
    let (dx, dy) = (up(g, &x), up(g, &y));
    let (mut ax, mut aty) = (g.zeros::<f64>(m).unwrap(), g.zeros::<f64>(n).unwrap());
    a.apply_on(&mut ax, &dx);
    a.adjoint_on(&mut aty, &dy);
    let (l, r) = (ax.dot(&dy), dx.dot(&aty));
    assert!((l - r).abs() <= 1e-12 * (l.abs() + r.abs()), "{l} vs {r}");
    let want_ax = cpu.apply(x.view()).unwrap();
    let want_aty = cpu.adjoint(y.view()).unwrap();
    assert!(rel(&down(&ax), want_ax.as_slice().unwrap()) <= 1e-12);
    assert!(rel(&down(&aty), want_aty.as_slice().unwrap()) <= 1e-12);
}

#[test]
fn device_operators_pass_the_adjoint_test_and_match_the_cpu() {
    let Some(g) = gpu() else { return };
    let a = Array2::from_shape_vec((300, 170), rand_vec(300 * 170, 6).to_vec()).unwrap();
    let cpu = hyperprox_core::ops::DenseMatrix::new(a.clone()).unwrap();
    let dev = GpuDense::new(&g, a.view()).unwrap();
    adjoint_and_cpu(&g, &dev, &cpu);
    let est: f64 = dev.opnorm_on(PowerIteration::default()).unwrap();
    let want = cpu.opnorm_estimate(PowerIteration::default()).unwrap();
    assert!((est - want).abs() <= 1e-6 * want, "{est} vs {want}");
    for (h, w) in [(64, 48), (1, 9), (33, 1)] {
        adjoint_and_cpu(
            &g,
            &GpuGradient2d::new(&g, h, w).unwrap(),
            &Gradient2d::new(h, w).unwrap(),
        );
    }
    for boundary in [Boundary::Zero, Boundary::Reflect, Boundary::Periodic] {
        let kern = Conv2d::<f64>::gaussian_kernel(7, 1.5).unwrap();
        let conv = Conv2d::new(40, 52, kern, boundary, ConvMethod::Direct).unwrap();
        adjoint_and_cpu(&g, &GpuConv2d::new(&g, &conv).unwrap(), &conv);
    }
    let mask = Mask::random(500, 0.3, 7).unwrap();
    adjoint_and_cpu(&g, &GpuMask::new(&g, &mask).unwrap(), &mask);
}

fn prox_matches<F: Prox<f64> + ProxOn<f64, GpuVec<f64>>>(g: &Gpu, f: &F, x: &Array1<f64>) {
    let dx = up(g, x);
    for gamma in [0.05, 0.5, 3.0] {
        let mut out = g.zeros::<f64>(x.len()).unwrap();
        f.prox_on(&mut out, &dx, gamma).unwrap();
        let want = f.prox(x.view(), gamma).unwrap();
        assert!(
            rel(&down(&out), want.as_slice().unwrap()) <= 1e-12,
            "{}",
            f.name()
        );
        // The conjugate's prox by Moreau on the device.
        f.conj_prox_on(&mut out, &dx, gamma).unwrap();
        let mut want = Array1::zeros(x.len());
        f.conj_prox_into(want.view_mut(), x.view(), gamma).unwrap();
        assert!(
            rel(&down(&out), want.as_slice().unwrap()) <= 1e-11,
            "{}*",
            f.name()
        );
    }
    let v: f64 = f.value_on(&dx).unwrap();
    let want = f.value(x.view()).unwrap();
    assert!(
        v == want || (v - want).abs() <= 1e-12 * want.abs(),
        "{}: {v} vs {want}",
        f.name()
    );
}

#[test]
fn device_proxes_are_the_cpu_proxes() {
    let Some(g) = gpu() else { return };
    let x = rand_vec(10_000, 8);
    prox_matches(&g, &NormL1::new(0.3).unwrap(), &x);
    prox_matches(&g, &NormL0::new(0.1).unwrap(), &x);
    prox_matches(&g, &IndBox::new(-1.0, 1.0).unwrap(), &x);
    prox_matches(&g, &IndNonnegative::new(), &x.mapv(f64::abs));
    prox_matches(&g, &ElasticNet::new(0.4, 0.6).unwrap(), &x);
    prox_matches(&g, &IndBallL2::new(2.0).unwrap(), &x);
    let m = x.len() / 2;
    let groups = Groups::new(x.len(), (0..m).map(|p| vec![p, p + m]).collect()).unwrap();
    // The group lasso through its device copy (partition uploaded once).
    let f = NormL21::new(groups, 0.2).unwrap();
    let dev = cuda::GpuNormL21::new(&g, &f).unwrap();
    let dx = up(&g, &x);
    let mut out = g.zeros::<f64>(x.len()).unwrap();
    for gamma in [0.05, 0.5, 3.0] {
        dev.prox_on(&mut out, &dx, gamma).unwrap();
        let want = f.prox(x.view(), gamma).unwrap();
        assert!(rel(&down(&out), want.as_slice().unwrap()) <= 1e-12);
        dev.conj_prox_on(&mut out, &dx, gamma).unwrap();
        let mut want = Array1::zeros(x.len());
        f.conj_prox_into(want.view_mut(), x.view(), gamma).unwrap();
        assert!(rel(&down(&out), want.as_slice().unwrap()) <= 1e-11);
    }
    let v: f64 = dev.value_on(&dx).unwrap();
    let want = f.value(x.view()).unwrap();
    assert!((v - want).abs() <= 1e-12 * want, "{v} vs {want}");
}

#[test]
fn the_tv_prox_on_the_device_is_the_cpu_solution() {
    let Some(g) = gpu() else { return };
    for kind in [TvKind::Isotropic, TvKind::Anisotropic] {
        let (h, w) = (96, 80);
        let v = rand_vec(h * w, 9).mapv(|x| 0.5 + 0.3 * x);
        let tv = TotalVariation::new(h, w, 0.1, kind).unwrap();
        let cpu = tv.solve_rof(v.view(), 1e-8).unwrap();
        let dev = cuda::solve_rof(&g, &tv, v.view(), 1e-8).unwrap();
        assert!(dev.gap <= 1e-8 * 10.0);
        // Both certified to 1e-8 relative objective error: the solutions agree to ~1e-4.
        assert!(rel(dev.x.as_slice().unwrap(), cpu.x.as_slice().unwrap()) <= 1e-4);
        let pd = 0.5 * (&dev.x - &v).mapv(|t| t * t).sum() + tv.value(dev.x.view()).unwrap();
        let pc = 0.5 * (&cpu.x - &v).mapv(|t| t * t).sum() + tv.value(cpu.x.view()).unwrap();
        assert!((pd - pc).abs() <= 2e-8 * pc, "{pd} vs {pc}");
    }
}

#[test]
fn the_lasso_by_fista_on_the_device_reaches_the_cpu_gap() {
    let Some(g) = gpu() else { return };
    let (n, p) = (200, 500);
    let a = Array2::from_shape_vec((n, p), rand_vec(n * p, 10).to_vec()).unwrap();
    let xs = Array1::from_iter((0..p).map(|i| if i % 25 == 0 { 1.0 } else { 0.0 }));
    let b = a.dot(&xs) + rand_vec(n, 11).mapv(|v| 0.01 * v);
    let prob = LassoProblem::new(a, b, 0.05, LassoPenalty::L1 { weights: None }).unwrap();
    let sol = cuda::solve_lasso(&g, &prob, 1e-9, 100_000).unwrap();
    let gap = prob.duality_gap(sol.x.view()).unwrap();
    assert!(gap <= 1e-8, "the CPU's gap at the device's x: {gap}");
    let cpu = hyperprox_core::experiments::lasso_fista(&prob, 1e-9, 100_000).unwrap();
    assert!(rel(sol.x.as_slice().unwrap(), cpu.x.as_slice().unwrap()) <= 1e-3);
}

#[test]
fn gemm_on_rows_and_batched_gemm_are_the_cpu_products() {
    let Some(g) = gpu() else { return };
    let (m, n, rows) = (37, 53, 19);
    let a = Array2::from_shape_vec((m, n), rand_vec(m * n, 12).to_vec()).unwrap();
    let dev = GpuDense::new(&g, a.view()).unwrap();
    let x = Array2::from_shape_vec((rows, n), rand_vec(rows * n, 13).to_vec()).unwrap();
    let mut out = g.zeros::<f64>(rows * m).unwrap();
    dev.apply_rows(
        false,
        &up(&g, &Array1::from_iter(x.iter().copied())),
        rows,
        &mut out,
    )
    .unwrap();
    let want = x.dot(&a.t());
    assert!(rel(&down(&out), want.as_slice().unwrap()) <= 1e-12);
    let y = Array2::from_shape_vec((rows, m), rand_vec(rows * m, 14).to_vec()).unwrap();
    let mut back = g.zeros::<f64>(rows * n).unwrap();
    dev.apply_rows(
        true,
        &up(&g, &Array1::from_iter(y.iter().copied())),
        rows,
        &mut back,
    )
    .unwrap();
    assert!(rel(&down(&back), y.dot(&a).as_slice().unwrap()) <= 1e-12);
    // A wrong length is an error, not a read past the buffer.
    assert!(dev.apply_rows(false, &out, rows, &mut back).is_err());
    // K matrices, each on its own vector.
    let k = 5;
    let mats: Vec<Array2<f64>> = (0..k)
        .map(|i| Array2::from_shape_vec((m, n), rand_vec(m * n, 20 + i).to_vec()).unwrap())
        .collect();
    let views: Vec<_> = mats.iter().map(|a| a.view()).collect();
    let batch = cuda::GpuDenseBatch::new(&g, &views).unwrap();
    let xs = rand_vec(k as usize * n, 30);
    let mut outs = g.zeros::<f64>(k as usize * m).unwrap();
    batch.apply_each(false, &up(&g, &xs), &mut outs).unwrap();
    let got = down(&outs);
    for (i, a) in mats.iter().enumerate() {
        let want = a.dot(&xs.slice(ndarray::s![i * n..(i + 1) * n]));
        assert!(rel(&got[i * m..(i + 1) * m], want.as_slice().unwrap()) <= 1e-12);
    }
    // f32 GEMM to single precision.
    let af: Vec<f32> = a.iter().map(|&v| v as f32).collect();
    let af = ndarray::Array2::from_shape_vec((m, n), af).unwrap();
    let devf = GpuDense::new(&g, af.view()).unwrap();
    let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let mut of = g.zeros::<f32>(rows * m).unwrap();
    devf.apply_rows(false, &g.upload(&xf).unwrap(), rows, &mut of)
        .unwrap();
    let of: Vec<f64> = of.to_vec().unwrap().iter().map(|&v| v as f64).collect();
    assert!(rel(&of, x.dot(&a.t()).as_slice().unwrap()) <= 1e-5);
}

#[test]
fn the_core_cg_and_pdhg_run_unchanged_on_device_vectors() {
    use hyperprox_core::linalg::{conjugate_gradient_on, CgParams};
    use hyperprox_core::solve::{NoObserver, Pdhg, PdhgParams};
    let Some(g) = gpu() else { return };
    let (m, n) = (120, 80);
    let a = Array2::from_shape_vec((m, n), rand_vec(m * n, 40).to_vec()).unwrap();
    let dev = GpuDense::new(&g, a.view()).unwrap();
    let b = rand_vec(n, 41);
    // CG on (I + AᵀA) x = b: the device's iterates are the CPU's up to rounding.
    let params = CgParams::relative(1e-12, 500);
    let apply_dev = |out: &mut GpuVec<f64>, x: &GpuVec<f64>| {
        let mut ax = x.zeros_of_len(m);
        dev.apply_on(&mut ax, x);
        dev.adjoint_on(out, &ax);
        out.axpy(1.0, x);
    };
    let mut xd = g.zeros::<f64>(n).unwrap();
    let od = conjugate_gradient_on(apply_dev, None, &up(&g, &b), &mut xd, &params).unwrap();
    let apply_cpu = |out: &mut Array1<f64>, x: &Array1<f64>| {
        let ax = a.dot(x);
        out.assign(&(a.t().dot(&ax) + x));
    };
    let mut xc = Array1::zeros(n);
    let oc = conjugate_gradient_on(apply_cpu, None, &b, &mut xc, &params).unwrap();
    assert!(od.converged && oc.converged);
    assert!(od.iterations.abs_diff(oc.iterations) <= 1, "{od:?} {oc:?}");
    assert!(rel(&down(&xd), xc.as_slice().unwrap()) <= 1e-10);
    // PDHG on min ElasticNet(x) + λ‖Ax‖₁ (strongly convex: a unique solution).
    let f = ElasticNet::new(1.0, 0.3).unwrap();
    let gg = NormL1::new(0.05).unwrap();
    let params = PdhgParams::default().with_tol(1e-10).with_max_iters(50_000);
    let x0 = rand_vec(n, 42);
    let sd = Pdhg::new(&f, &gg, &dev, params)
        .run_on(&up(&g, &x0), NoObserver)
        .unwrap();
    let cpu_a = hyperprox_core::ops::DenseMatrix::new(a.clone()).unwrap();
    let sc = Pdhg::new(&f, &gg, &cpu_a, params)
        .run(x0.view(), NoObserver)
        .unwrap();
    assert!(rel(&down(&sd.x), sc.x.as_slice().unwrap()) <= 1e-5);
    // The device conjugate values give PDHG its duality gap there too (not the residual).
    assert_eq!(sc.kind, hyperprox_core::solve::CertificateKind::DualityGap);
    assert_eq!(sd.kind, sc.kind);
    assert!(
        sd.iterations.abs_diff(sc.iterations) <= sc.iterations / 20 + 10,
        "{} vs {}",
        sd.iterations,
        sc.iterations
    );
}

/// The dense and activation blocks on device batches: forward and VJP equal the host blocks
/// (1e-12 relative in f64, 1e-5 in f32), and the VJP passes the finite-difference check run
/// on device buffers ([`check_vjp_on`], the check the host blocks pass with `Array2`).
#[test]
fn dense_and_activation_blocks_on_the_device_are_the_host_blocks() {
    use hyperprox_core::cuda::GpuMat;
    use hyperprox_core::diff::{check_vjp_on, Differentiable, DifferentiableOn, WorkspaceOn};
    use hyperprox_core::nn::{Act, Activation, Dense};
    let Some(g) = gpu() else { return };
    let (b, n_in, n_out) = (7, 12, 5);
    let x = Array2::from_shape_vec((b, n_in), rand_vec(b * n_in, 31).to_vec()).unwrap();
    let gb = Array2::from_shape_vec((b, n_out), rand_vec(b * n_out, 32).to_vec()).unwrap();
    let none = Array2::<f64>::zeros((b, 0));
    let like = GpuMat::zeros(&g, 1, 1).unwrap();
    let dense = Dense::new(n_in, n_out);
    let p = rand_vec(Differentiable::<f64>::num_params(&dense), 33).to_vec();
    // Host.
    let y = dense.forward(&p, x.view(), none.view()).unwrap();
    let mut gp_h = vec![0.0; p.len()];
    let gx = dense
        .vjp(&p, x.view(), none.view(), gb.view(), &mut gp_h)
        .unwrap();
    // Device.
    let (xd, cd, gd) = (
        GpuMat::from_array(&g, x.view()).unwrap(),
        GpuMat::from_array(&g, none.view()).unwrap(),
        GpuMat::from_array(&g, gb.view()).unwrap(),
    );
    let mut ws = WorkspaceOn::default();
    let mut yd = GpuMat::zeros(&g, b, n_out).unwrap();
    dense.forward_on(&p, &xd, &cd, &mut ws, &mut yd).unwrap();
    let mut gp_d = vec![0.0; p.len()];
    let mut gxd = GpuMat::zeros(&g, b, n_in).unwrap();
    dense
        .vjp_on(&p, &xd, &cd, &mut ws, &gd, &mut gp_d, &mut gxd)
        .unwrap();
    assert!(
        rel(
            yd.to_array().unwrap().as_slice().unwrap(),
            y.as_slice().unwrap()
        ) <= 1e-12
    );
    assert!(
        rel(
            gxd.to_array().unwrap().as_slice().unwrap(),
            gx.as_slice().unwrap()
        ) <= 1e-12
    );
    assert!(rel(&gp_d, &gp_h) <= 1e-12);
    let c = check_vjp_on::<GpuMat<f64>, _>(&dense, &like, &p, x.view(), none.view(), 1e-6, 3, 1)
        .unwrap();
    assert!(c.state <= 1e-6 && c.params <= 1e-6, "{c:?}");
    for f in [
        Activation::Relu,
        Activation::LeakyRelu(0.1),
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Softplus(2.0),
        Activation::Gelu,
    ] {
        let act = Act::new(n_in, f).unwrap();
        let ga = Array2::from_shape_vec((b, n_in), rand_vec(b * n_in, 34).to_vec()).unwrap();
        let want = act.forward(&[], x.view(), none.view()).unwrap();
        let want_g = act
            .vjp(&[], x.view(), none.view(), ga.view(), &mut [])
            .unwrap();
        let mut out = GpuMat::zeros(&g, b, n_in).unwrap();
        let mut ws = WorkspaceOn::default();
        act.forward_on(&[], &xd, &cd, &mut ws, &mut out).unwrap();
        assert!(
            rel(
                out.to_array().unwrap().as_slice().unwrap(),
                want.as_slice().unwrap()
            ) <= 1e-12
        );
        let gad = GpuMat::from_array(&g, ga.view()).unwrap();
        act.vjp_on(&[], &xd, &cd, &mut ws, &gad, &mut [], &mut out)
            .unwrap();
        assert!(
            rel(
                out.to_array().unwrap().as_slice().unwrap(),
                want_g.as_slice().unwrap()
            ) <= 1e-12
        );
        if !matches!(f, Activation::Relu | Activation::LeakyRelu(_)) {
            let c =
                check_vjp_on::<GpuMat<f64>, _>(&act, &like, &[], x.view(), none.view(), 1e-6, 3, 2)
                    .unwrap();
            assert!(c.state <= 1e-6, "{f:?}: {c:?}");
        }
    }
    // f32: the dense block to single precision.
    let xf = x.mapv(|v| v as f32);
    let pf: Vec<f32> = p.iter().map(|&v| v as f32).collect();
    let yf_h = dense
        .forward(&pf, xf.view(), Array2::<f32>::zeros((b, 0)).view())
        .unwrap();
    let xfd = GpuMat::from_array(&g, xf.view()).unwrap();
    let cfd = GpuMat::<f32>::zeros(&g, b, 0).unwrap();
    let mut yfd = GpuMat::zeros(&g, b, n_out).unwrap();
    let mut ws = WorkspaceOn::default();
    dense
        .forward_on(&pf, &xfd, &cfd, &mut ws, &mut yfd)
        .unwrap();
    let a: Vec<f64> = yfd.to_array().unwrap().iter().map(|&v| v as f64).collect();
    let w: Vec<f64> = yf_h.iter().map(|&v| v as f64).collect();
    assert!(rel(&a, &w) <= 1e-5);
}

/// The one unrolled training pass on device batches: a dense–tanh–dense network's loss and
/// parameter gradient on the GPU equal the host's (`Unrolled::value_and_grad_ws`).
#[test]
fn the_unrolled_training_pass_on_the_device_is_the_host_pass() {
    use hyperprox_core::cuda::GpuMat;
    use hyperprox_core::diff::{
        Differentiable, DifferentiableOn, SquaredError, Unrolled, UnrolledOn, UnrolledWorkspace,
        UnrolledWorkspaceOn,
    };
    use hyperprox_core::nn::{Act, Activation, Dense};
    let Some(g) = gpu() else { return };
    let (b, n, h) = (9, 6, 10);
    let host: Vec<Box<dyn Differentiable<f64>>> = vec![
        Box::new(Dense::new(n, h)),
        Box::new(Act::new(h, Activation::Tanh).unwrap()),
        Box::new(Dense::new(h, n)),
    ];
    let dev: Vec<Box<dyn DifferentiableOn<GpuMat<f64>>>> = vec![
        Box::new(Dense::new(n, h)),
        Box::new(Act::new(h, Activation::Tanh).unwrap()),
        Box::new(Dense::new(h, n)),
    ];
    let net = Unrolled::new(host).unwrap();
    let netd = UnrolledOn::new(dev).unwrap();
    let p = rand_vec(net.num_params(), 41).to_vec();
    let x0 = Array2::from_shape_vec((b, n), rand_vec(b * n, 42).to_vec()).unwrap();
    let t = Array2::from_shape_vec((b, n), rand_vec(b * n, 43).to_vec()).unwrap();
    let c = Array2::<f64>::zeros((b, 0));
    let mut ws = UnrolledWorkspace::default();
    let (v, gp) = net
        .value_and_grad_ws(&mut ws, &p, x0.view(), c.view(), 3, &SquaredError, t.view())
        .unwrap();
    let (x0d, cd, td) = (
        GpuMat::from_array(&g, x0.view()).unwrap(),
        GpuMat::from_array(&g, c.view()).unwrap(),
        GpuMat::from_array(&g, t.view()).unwrap(),
    );
    let mut wsd = UnrolledWorkspaceOn::default();
    let (vd, gpd) = netd
        .value_and_grad(&mut wsd, &p, &x0d, &cd, 3, &SquaredError, &td)
        .unwrap();
    assert!((vd - v).abs() <= 1e-12 * v.abs(), "{vd} vs {v}");
    assert!(rel(gpd, gp) <= 1e-12);
}

/// The conformance kit of `hyperprox_core::testing` (the functions behind
/// `operator_conformance!` and `prox_conformance!`) run unchanged on the device
/// implementations through the host adapters `OnDevice` / `ProxOnDevice`, in f64 and f32 with
/// the kit's own tolerances: the adjoint and batch tests of every device operator; the prox
/// oracle and optimality checks of every device prox; the Moreau identity (Fenchel–Young with
/// the device conjugate values where they exist) of the convex ones.
fn conformance_kit_on_device<T: cuda::GpuReal + hyperprox_core::ops::FftNum>(g: &Gpu) {
    use hyperprox_core::cuda::{OnDevice, ProxOnDevice};
    use hyperprox_core::testing::{
        check_adjoint, check_batch, check_moreau, check_prox_optimality, check_prox_oracle,
        random_point, Tolerance,
    };
    let tol = Tolerance::for_type::<T>();
    let a = Array2::from_shape_vec((30, 17), rand_vec(30 * 17, 51).to_vec())
        .unwrap()
        .mapv(T::c);
    check_adjoint::<T, _>(
        &OnDevice::new(g, GpuDense::new(g, a.view()).unwrap()),
        1,
        tol.adjoint,
    )
    .unwrap();
    check_batch::<T, _>(
        &OnDevice::new(g, GpuDense::new(g, a.view()).unwrap()),
        2,
        tol.identity,
    )
    .unwrap();
    let grad = OnDevice::new(g, GpuGradient2d::new(g, 9, 7).unwrap());
    check_adjoint::<T, _>(&grad, 1, tol.adjoint).unwrap();
    check_batch::<T, _>(&grad, 2, tol.identity).unwrap();
    for boundary in [Boundary::Zero, Boundary::Reflect, Boundary::Periodic] {
        let kern = Conv2d::<T>::gaussian_kernel(5, 1.0).unwrap();
        let conv = Conv2d::new(11, 13, kern, boundary, ConvMethod::Direct).unwrap();
        let op = OnDevice::new(g, GpuConv2d::new(g, &conv).unwrap());
        check_adjoint::<T, _>(&op, 1, tol.adjoint).unwrap();
        check_batch::<T, _>(&op, 2, tol.identity).unwrap();
    }
    let mask = Mask::random(40, 0.4, 7).unwrap();
    check_adjoint::<T, _>(
        &OnDevice::new(g, GpuMask::new(g, &mask).unwrap()),
        1,
        tol.adjoint,
    )
    .unwrap();
    // Proxes: the kit's points (n = 6, σ = 0.7 and 2.5) and step sizes.
    let points: Vec<(Array1<T>, T)> = [0.5, 2.0]
        .iter()
        .enumerate()
        .flat_map(|(k, &gm)| {
            [(0u64, 0.7), (1, 2.5)]
                .into_iter()
                .map(move |(s, sigma)| (random_point::<T>(6, sigma, 100 * k as u64 + s), T::c(gm)))
        })
        .collect();
    let run = |f: &dyn Prox<T>, convex: bool| {
        for (i, (x, gm)) in points.iter().enumerate() {
            check_prox_oracle(f, x.view(), *gm, i as u64, tol.identity).unwrap();
            check_prox_optimality(f, x.view(), *gm, i as u64, tol.identity).unwrap();
            if convex {
                check_moreau(f, x.view(), *gm, &tol).unwrap();
            }
        }
    };
    let l1 = NormL1::new(T::c(0.8)).unwrap();
    run(&ProxOnDevice::new(g, l1.clone(), l1.properties()), true);
    let l0 = NormL0::new(T::c(0.3)).unwrap();
    run(&ProxOnDevice::new(g, l0.clone(), l0.properties()), false);
    let bx = IndBox::new(T::c(-0.5), T::c(1.5)).unwrap();
    run(&ProxOnDevice::new(g, bx.clone(), bx.properties()), true);
    let nn = IndNonnegative::<T>::new();
    run(&ProxOnDevice::new(g, nn.clone(), nn.properties()), true);
    let en = ElasticNet::new(T::c(0.9), T::c(0.4)).unwrap();
    run(&ProxOnDevice::new(g, en.clone(), en.properties()), true);
    let ball = IndBallL2::new(T::c(1.3)).unwrap();
    run(&ProxOnDevice::new(g, ball.clone(), ball.properties()), true);
    // Per-coordinate parameters (uploaded once by GpuSeparable).
    let w = Array1::from(vec![0.2, 0.5, 1.0, 0.1, 0.7, 0.3]).mapv(T::c);
    let wl1 = NormL1::weighted(w).unwrap();
    run(
        &ProxOnDevice::new(
            g,
            cuda::GpuSeparable::new(g, &wl1).unwrap(),
            wl1.properties(),
        ),
        true,
    );
    let lo = Array1::from(vec![-1.0, -0.2, 0.0, -3.0, 0.5, -0.5]).mapv(T::c);
    let hi = Array1::from(vec![1.0, 0.3, 0.0, -1.0, 2.0, 0.5]).mapv(T::c);
    let pbox = IndBox::per_coordinate(lo, hi).unwrap();
    run(
        &ProxOnDevice::new(
            g,
            cuda::GpuSeparable::new(g, &pbox).unwrap(),
            pbox.properties(),
        ),
        true,
    );
    assert!(cuda::GpuSeparable::new(g, &NormL1::new(T::c(0.5)).unwrap()).is_err());
    let groups = Groups::new(6, vec![vec![0, 3], vec![1, 4], vec![2, 5]]).unwrap();
    let l21 = NormL21::new(groups, T::c(0.4)).unwrap();
    run(
        &ProxOnDevice::new(g, cuda::GpuNormL21::new(g, &l21).unwrap(), l21.properties()),
        true,
    );
}

#[test]
fn the_conformance_kit_passes_on_the_device_in_f64_and_f32() {
    let Some(g) = gpu() else { return };
    conformance_kit_on_device::<f64>(&g);
    conformance_kit_on_device::<f32>(&g);
}

//! The solvers are written once over the backend traits (`hyperprox_core::backend`): here
//! they run on a vector type that is not ndarray (a plain `Vec`, standing in for a device
//! buffer) and must give the CPU iterates bit for bit. The plain type implements only the
//! required BLAS-1 operations of `Vector`, so the fused updates run through the trait's
//! default implementations; those are checked against the ndarray overrides entry by entry.

use hyperprox_core::backend::{FunctionOn, OperatorOn, ProxOn, SmoothOn};
use hyperprox_core::func::{fgp_iterations, CpuFgp, FgpKernels};
use hyperprox_core::prelude::*;
use hyperprox_core::solve::{
    drive, CertificateKind, Fista, FistaParams, Iterative, LassoPenalty, LassoProblem, NoObserver,
    Pdhg, PdhgParams, Restart, StepRule, TerminationReason,
};
use hyperprox_core::testing::HostVector;
use ndarray::Array1;

type Plain = HostVector<f64>;

/// A CPU function or operator seen through the backend traits on `Plain` (what a device
/// backend writes as kernels, here by copying through ndarray).
struct OnPlain<F>(F);

fn write(out: &mut Plain, a: Array1<f64>) {
    out.assign(a.view());
}

impl<F: Function<f64>> FunctionOn<f64, Plain> for OnPlain<F> {
    fn name_on(&self) -> String {
        self.0.name()
    }
    fn dim_on(&self) -> Option<usize> {
        self.0.dim()
    }
    fn value_on(&self, x: &Plain) -> hyperprox_core::Result<f64> {
        self.0.value(x.view())
    }
    fn conj_value_on(&self, y: &Plain) -> hyperprox_core::Result<f64> {
        self.0.conj_value(y.view())
    }
}

impl<F: Smooth<f64>> SmoothOn<f64, Plain> for OnPlain<F> {
    fn gradient_on(&self, out: &mut Plain, x: &Plain) -> hyperprox_core::Result<()> {
        write(out, self.0.gradient(x.view())?);
        Ok(())
    }
    fn lipschitz_on(&self) -> Option<f64> {
        self.0.lipschitz()
    }
}

impl<F: Prox<f64>> ProxOn<f64, Plain> for OnPlain<F> {
    fn prox_on(&self, out: &mut Plain, x: &Plain, gamma: f64) -> hyperprox_core::Result<()> {
        write(out, self.0.prox(x.view(), gamma)?);
        Ok(())
    }
    fn conj_prox_on(&self, out: &mut Plain, x: &Plain, gamma: f64) -> hyperprox_core::Result<()> {
        let mut o = Array1::zeros(x.len());
        self.0.conj_prox_into(o.view_mut(), x.view(), gamma)?;
        write(out, o);
        Ok(())
    }
}

/// Only the prox: `conj_prox_on` is the trait's Moreau default.
struct ProxOnly<F>(F);

impl<F: Function<f64>> FunctionOn<f64, Plain> for ProxOnly<F> {
    fn name_on(&self) -> String {
        self.0.name()
    }
    fn dim_on(&self) -> Option<usize> {
        self.0.dim()
    }
    fn value_on(&self, x: &Plain) -> hyperprox_core::Result<f64> {
        self.0.value(x.view())
    }
}

impl<F: Prox<f64>> ProxOn<f64, Plain> for ProxOnly<F> {
    fn prox_on(&self, out: &mut Plain, x: &Plain, gamma: f64) -> hyperprox_core::Result<()> {
        write(out, self.0.prox(x.view(), gamma)?);
        Ok(())
    }
}

impl<O: LinearOperator<f64>> OperatorOn<f64, Plain> for OnPlain<O> {
    fn shape_on(&self) -> (usize, usize) {
        self.0.shape()
    }
    fn apply_on(&self, out: &mut Plain, x: &Plain) {
        write(out, self.0.apply(x.view()).unwrap());
    }
    fn adjoint_on(&self, out: &mut Plain, y: &Plain) {
        write(out, self.0.adjoint(y.view()).unwrap());
    }
    fn opnorm_on(&self, params: PowerIteration) -> hyperprox_core::Result<f64> {
        // The operator's own norm (exact for the gradient and dense matrices, what a device
        // backend reuses); `power_iteration_on` is checked on its own below.
        self.0.opnorm_estimate(params)
    }
}

impl<O: LinearOperator<f64>> OnPlain<O> {
    /// The backend's own Lanczos process from the same start vector as the CPU's.
    fn lanczos(&self, params: PowerIteration) -> hyperprox_core::Result<f64> {
        let (m, n) = self.0.shape();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(params.seed);
        let x: Array1<f64> = hyperprox_core::linalg::randn(n, &mut rng);
        lanczos_norm_on(
            self,
            HostVector(x.to_vec()),
            HostVector(vec![0.0; m]),
            params,
        )
    }
}

fn pseudo(n: usize, seed: u64) -> Array1<f64> {
    Array1::from_shape_fn(n, |i| {
        (((i as u64 + 1) * 7919 + seed * 104_729) % 1000) as f64 / 500.0 - 1.0
    })
}

#[test]
fn fused_updates_by_default_match_the_ndarray_overrides() {
    let (a, b, c, d) = (pseudo(37, 1), pseudo(37, 2), pseudo(37, 3), pseudo(37, 4));
    let p = |v: &Array1<f64>| HostVector(v.to_vec());
    let (pa, pb, pc, pd) = (p(&a), p(&b), p(&c), p(&d));
    // Elementwise updates: the defaults do the same arithmetic, so the same rounding.
    let mut x = a.clone();
    let mut px = pa.clone();
    x.set_axpy(&b, -0.37, &c);
    px.set_axpy(&pb, -0.37, &pc);
    assert_eq!(px.0, x.to_vec());
    x.xpay(&d, 0.61);
    px.xpay(&pd, 0.61);
    assert_eq!(px.0, x.to_vec());
    x.set_extrapolation(&b, &c, 0.83);
    px.set_extrapolation(&pb, &pc, 0.83);
    assert_eq!(px.0, x.to_vec());
    // The reductions sum in another order: equal to rounding.
    let nd = Vector::dot_of_differences(&a, &b, &c, &d);
    let pl = Plain::dot_of_differences(&pa, &pb, &pc, &pd);
    let exact: f64 = (0..37).map(|i| (a[i] - b[i]) * (c[i] - d[i])).sum();
    assert!((nd - exact).abs() < 1e-13 && (pl - exact).abs() < 1e-13);
    let nd = a.norm_of_scaled_difference(0.3, &b);
    let pl = pa.norm_of_scaled_difference(0.3, &pb);
    let exact = (0..37)
        .map(|i| (a[i] / 0.3 - b[i]).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!((nd - exact).abs() < 1e-13 * exact && (pl - exact).abs() < 1e-13 * exact);
    let exact = (0..37).map(|i| (a[i] - b[i]).abs()).fold(0.0, f64::max);
    assert_eq!(a.max_abs_diff(&b), exact);
    assert_eq!(pa.max_abs_diff(&pb), exact);
    let mut nan = pb.clone();
    nan.0[5] = f64::NAN;
    assert!(pa.max_abs_diff(&nan).is_nan());
    assert!(a.max_abs_diff(&nan.to_array()).is_nan());
}

#[test]
fn the_default_conjugate_prox_is_the_moreau_identity() {
    let g = NormL1::new(0.4).unwrap();
    let x = pseudo(25, 5);
    let sigma = 0.7;
    let mut expect = Array1::zeros(25);
    g.conj_prox_into(expect.view_mut(), x.view(), sigma)
        .unwrap();
    let mut out = HostVector(vec![0.0; 25]);
    ProxOnly(NormL1::new(0.4).unwrap())
        .conj_prox_on(&mut out, &HostVector(x.to_vec()), sigma)
        .unwrap();
    // prox_{σg*} of σ‖·‖₁... is the projection onto the ℓ∞ ball of radius 0.4.
    for i in 0..25 {
        assert!((out.0[i] - expect[i]).abs() < 1e-15, "{i}");
        assert!((expect[i] - x[i].clamp(-0.4, 0.4)).abs() < 1e-15);
    }
    assert!(ProxOnly(NormL1::new(0.4).unwrap())
        .conj_prox_on(&mut out, &HostVector(x.to_vec()), 0.0)
        .is_err());
}

fn lasso(m: usize, n: usize, lam: f64) -> LassoProblem<f64> {
    let a = DenseMatrix::<f64>::gaussian(m, n, 11).unwrap();
    LassoProblem::new(
        a.matrix().to_owned(),
        pseudo(m, 9),
        lam,
        LassoPenalty::L1 { weights: None },
    )
    .unwrap()
}

#[test]
fn fista_on_another_vector_type_gives_the_cpu_iterates_bit_for_bit() {
    let lam = 0.02;
    let prob = lasso(30, 60, lam);
    let f = prob.smooth_part().unwrap();
    let g = NormL1::new(lam).unwrap();
    for (restart, step) in [
        (Restart::Gradient, StepRule::InverseLipschitz),
        (
            Restart::FunctionValue,
            StepRule::Backtracking {
                initial: 1.0,
                eta: 0.5,
            },
        ),
    ] {
        let params = FistaParams::default()
            .with_restart(restart)
            .with_step(step)
            .with_tol(1e-9)
            .with_max_iters(5000);
        let cpu = Fista::new(&f, &g, params)
            .with_certificate(CertificateKind::DualityGap, |x| prob.duality_gap(x.view()))
            .run(Array1::zeros(60).view(), NoObserver)
            .unwrap();
        let (fp, gp) = (
            OnPlain(prob.smooth_part().unwrap()),
            OnPlain(NormL1::new(lam).unwrap()),
        );
        let plain = Fista::new(&fp, &gp, params)
            .with_certificate(CertificateKind::DualityGap, |x: &Plain| {
                prob.duality_gap(x.view())
            })
            .run_on(&HostVector(vec![0.0; 60]), NoObserver)
            .unwrap();
        assert_eq!(cpu.reason, TerminationReason::Converged);
        assert!(cpu.iterations > 20, "a real run: {}", cpu.iterations);
        assert_eq!(plain.iterations, cpu.iterations, "{restart:?}");
        assert_eq!(plain.x.0, cpu.x.to_vec(), "{restart:?}");
        assert_eq!(plain.state.restarts, cpu.state.restarts);
        assert_eq!(plain.certificate, cpu.certificate);
        // And the known solution: the gap certifies the objective error.
        assert!(prob.duality_gap(plain.x.view()).unwrap() <= 1e-9);
    }
}

/// The norm estimate written over the backend traits (Lanczos) gives the CPU's estimate bit
/// for bit (an operator without a closed-form norm, so the CPU runs the same process).
#[test]
fn norm_estimate_on_another_vector_type_matches_the_cpu() {
    let d = Diagonal::new(pseudo(40, 9)).unwrap();
    let params = PowerIteration::default();
    let cpu: f64 = d.opnorm_estimate(params).unwrap();
    let plain = OnPlain(d).lanczos(params).unwrap();
    assert_eq!(plain, cpu);
    let exact = pseudo(40, 9).iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!((cpu - exact).abs() <= 1e-9 * exact, "{cpu} vs {exact}");
}

#[test]
fn pdhg_on_another_vector_type_gives_the_cpu_iterates_bit_for_bit() {
    // Anisotropic TV denoising, min ½‖x − b‖² + λ‖∇x‖₁, with a primal–dual gap certificate.
    let (h, w) = (9, 11);
    let b = pseudo(h * w, 3);
    let k = Gradient2d::new(h, w).unwrap();
    let f = Translate::new(SqrNormL2::new(1.0).unwrap(), b.clone()).unwrap();
    let g = NormL1::new(0.2).unwrap();
    let params = PdhgParams::default().with_tol(1e-7);
    let cpu = Pdhg::new(&f, &g, &k, params)
        .run(b.view(), NoObserver)
        .unwrap();
    let fp = OnPlain(Translate::new(SqrNormL2::new(1.0).unwrap(), b.clone()).unwrap());
    let (gp, kp) = (OnPlain(NormL1::new(0.2).unwrap()), OnPlain(k));
    let solver = Pdhg::new(&fp, &gp, &kp, params);
    // Through the protocol: start + drive, as any `Iterative`.
    let mut s = solver.start(&HostVector(b.to_vec())).unwrap();
    let (reason, iters) = drive(&solver, &mut s, NoObserver).unwrap();
    assert_eq!(reason, TerminationReason::Converged);
    assert_eq!(cpu.reason, TerminationReason::Converged);
    assert_eq!(iters, cpu.iterations);
    assert_eq!(s.x.0, cpu.x.to_vec());
    assert_eq!(s.y.0, cpu.state.y.to_vec());
    assert_eq!(solver.estimate(&s).0, cpu.x.to_vec());
    assert_eq!(cpu.kind, CertificateKind::DualityGap);
    assert!(cpu.certificate <= 1e-7);
    assert_eq!(s.certificate, cpu.certificate);
    // The answer: FGP's certified ROF solution.
    let tv = TotalVariation::new(h, w, 0.2, TvKind::Anisotropic)
        .unwrap()
        .with_tolerance(1e-10, 100_000)
        .unwrap();
    let exact = tv.prox(b.view(), 1.0).unwrap();
    let err = (&exact - &s.x.to_array())
        .mapv(f64::abs)
        .fold(0.0, |m: f64, &v| m.max(v));
    assert!(err < 1e-3, "{err}");
}

#[test]
fn bad_starts_are_errors_on_any_vector_type() {
    let fp = OnPlain(lasso(5, 8, 0.1).smooth_part().unwrap());
    let gp = OnPlain(NormL1::new(0.1).unwrap());
    let fista = Fista::new(&fp, &gp, FistaParams::default());
    assert!(
        fista.init_on(&HostVector(vec![0.0; 7])).is_err(),
        "wrong length"
    );
    let mut x = vec![0.0; 8];
    x[3] = f64::INFINITY;
    let e = fista.init_on(&HostVector(x)).unwrap_err().to_string();
    assert!(e.contains("finite"), "{e}");
}

/// The CPU's fused FGP kernels seen on `Plain` (copies through ndarray).
struct PlainFgp<'a>(CpuFgp<'a, f64>);

impl FgpKernels<f64, Plain> for PlainFgp<'_> {
    fn step(&mut self, v: &Plain, mu: f64, beta: f64, q: &mut Plain, r: &mut Plain) {
        let (mut qa, mut ra) = (q.to_array(), r.to_array());
        self.0.step(&v.to_array(), mu, beta, &mut qa, &mut ra);
        write(q, qa);
        write(r, ra);
    }
    fn certificate(&mut self, v: &Plain, mu: f64, q: &Plain, x: &mut Plain) -> (f64, f64) {
        let mut xa = x.to_array();
        let out = self
            .0
            .certificate(&v.to_array(), mu, &q.to_array(), &mut xa);
        write(x, xa);
        out
    }
}

/// FGP written out with operator applications (no fusion): the reference for the fused
/// sweep.
struct UnfusedFgp {
    grad: Gradient2d,
    iso: bool,
}

impl UnfusedFgp {
    fn project(&self, q: &mut Array1<f64>, mu: f64) {
        let n = q.len() / 2;
        for p in 0..n {
            if self.iso {
                let s = (mu / q[p].hypot(q[n + p])).min(1.0);
                q[p] *= s;
                q[n + p] *= s;
            } else {
                q[p] = q[p].clamp(-mu, mu);
                q[n + p] = q[n + p].clamp(-mu, mu);
            }
        }
    }
    fn coupled(&self, g: &Array1<f64>) -> f64 {
        let n = g.len() / 2;
        (0..n)
            .map(|p| {
                if self.iso {
                    g[p].hypot(g[n + p])
                } else {
                    g[p].abs() + g[n + p].abs()
                }
            })
            .sum()
    }
}

impl FgpKernels<f64, Plain> for UnfusedFgp {
    fn step(&mut self, v: &Plain, mu: f64, beta: f64, q: &mut Plain, r: &mut Plain) {
        let x = &v.to_array() - &self.grad.adjoint(r.view()).unwrap();
        let mut a = &r.to_array() + &(self.grad.apply(x.view()).unwrap() / 8.0);
        self.project(&mut a, mu);
        let rn = &a + &((&a - &q.to_array()) * beta);
        write(q, a);
        write(r, rn);
    }
    fn certificate(&mut self, v: &Plain, mu: f64, q: &Plain, x: &mut Plain) -> (f64, f64) {
        let xa = &v.to_array() - &self.grad.adjoint(q.view()).unwrap();
        let g = self.grad.apply(xa.view()).unwrap();
        let tv = self.coupled(&g);
        let gap = (mu * tv - q.to_array().dot(&g)).max(0.0);
        let primal = 0.5 * (&xa - &v.to_array()).mapv(|d| d * d).sum() + mu * tv;
        write(x, xa);
        (gap, primal)
    }
}

#[test]
fn the_fgp_loop_runs_on_another_vector_type_and_matches_the_unfused_iteration() {
    // 256² crosses the size at which the fused sweep splits into row bands.
    for (h, w, kind) in [
        (19, 23, TvKind::Isotropic),
        (256, 256, TvKind::Isotropic),
        (31, 17, TvKind::Anisotropic),
    ] {
        let n = h * w;
        let v = pseudo(n, 21);
        let (lam, tol) = (0.15, 1e-3);
        let tv = || {
            TotalVariation::new(h, w, lam, kind)
                .unwrap()
                .with_tolerance(tol, 20_000)
                .unwrap()
        };
        let cpu = tv().prox_certified(v.view(), 1.0).unwrap();
        assert!(cpu.iterations >= 10, "a real run: {}", cpu.iterations);
        let stop = |gap: f64, _: f64| gap <= 0.5 * tol * tol;
        let (pv, mut x, mut q) = (
            HostVector(v.to_vec()),
            HostVector(vec![0.0; n]),
            HostVector(vec![0.0; 2 * n]),
        );
        let tv1 = tv();
        let run = fgp_iterations(
            &mut PlainFgp(CpuFgp::new(&tv1)),
            &pv,
            lam,
            &mut x,
            &mut q,
            20_000,
            &stop,
        );
        assert!(run.converged);
        assert_eq!(run.iterations, cpu.iterations, "{h}x{w}");
        assert_eq!(run.gap, cpu.gap);
        assert_eq!(x.0, cpu.x.to_vec(), "the same loop, bit for bit");
        assert_eq!(q.0, cpu.q.to_vec());
        // The fused sweep computes the FGP iteration: the unfused one agrees to rounding.
        let mut unfused = UnfusedFgp {
            grad: Gradient2d::new(h, w).unwrap(),
            iso: kind == TvKind::Isotropic,
        };
        let (mut xu, mut qu) = (HostVector(vec![0.0; n]), HostVector(vec![0.0; 2 * n]));
        let ru = fgp_iterations(&mut unfused, &pv, lam, &mut xu, &mut qu, 20_000, &stop);
        assert!(ru.converged);
        assert!(
            ru.iterations.abs_diff(cpu.iterations) <= 5,
            "{} {}",
            ru.iterations,
            cpu.iterations
        );
        let d = xu.max_abs_diff(&x);
        assert!(d < 2e-5, "{h}x{w} {kind:?}: {d}");
    }
    // Without convergence the run says so and reports the last gap.
    let (h, w) = (16, 16);
    let tv1 = TotalVariation::new(h, w, 0.3, TvKind::Isotropic).unwrap();
    let (pv, mut x, mut q) = (
        HostVector(pseudo(h * w, 4).to_vec()),
        HostVector(vec![0.0; h * w]),
        HostVector(vec![0.0; 2 * h * w]),
    );
    let run = fgp_iterations(
        &mut PlainFgp(CpuFgp::new(&tv1)),
        &pv,
        0.3,
        &mut x,
        &mut q,
        7,
        &|g: f64, _| g <= 0.0,
    );
    assert!(!run.converged && run.iterations == 7 && run.gap > 0.0);
}

/// The fused PDHG updates of every function that has one (separable functions, the group
/// norm on stacked and on general groups, translations, separable sums) against the updates
/// written out with the generic operations: `y ← prox_{σg*}(y + σt)`, `x ← prox_{τf}(x − τu)`,
/// `x̄ ← x + θ(x − x_prev)`, with the previous iterates saved only when asked.
#[test]
fn fused_pdhg_updates_match_the_updates_written_out() {
    let n = 24;
    let z = pseudo(n, 11);
    let parts = || -> Vec<(String, Box<dyn Prox<f64>>)> {
        vec![
            ("l1".into(), Box::new(NormL1::new(0.3).unwrap())),
            ("box".into(), Box::new(IndBox::new(-0.2, 0.5).unwrap())),
            ("sq".into(), Box::new(SqrNormL2::new(0.7).unwrap())),
            ("nonneg".into(), Box::new(IndNonnegative::new())),
            ("en".into(), Box::new(ElasticNet::new(0.4, 0.6).unwrap())),
            (
                "translated sq".into(),
                Box::new(Translate::new(SqrNormL2::new(1.3).unwrap(), z.clone()).unwrap()),
            ),
            (
                "l21 stacked".into(),
                Box::new(NormL21::new(Groups::stacked(n / 2, 2).unwrap(), 0.25).unwrap()),
            ),
            (
                "l21 general".into(),
                Box::new(
                    NormL21::new(Groups::contiguous(&[3, 5, 1, 7, 8]).unwrap(), 0.25).unwrap(),
                ),
            ),
            (
                "separable sum".into(),
                Box::new(
                    SeparableSum::new(vec![
                        (
                            8,
                            Box::new(
                                Translate::new(SqrNormL2::new(1.0).unwrap(), pseudo(8, 12))
                                    .unwrap(),
                            ) as Box<dyn Prox<f64>>,
                        ),
                        (
                            16,
                            Box::new(NormL21::new(Groups::stacked(8, 2).unwrap(), 0.1).unwrap()),
                        ),
                    ])
                    .unwrap(),
                ),
            ),
        ]
    };
    assert_eq!(
        Groups::stacked(12, 2).unwrap().stacked_components(),
        Some(2)
    );
    let pairs: Vec<Vec<usize>> = (0..12).map(|p| vec![p, 12 + p]).collect();
    assert_eq!(
        Groups::new(24, pairs).unwrap().stacked_components(),
        Some(2)
    );
    assert_eq!(
        Groups::contiguous(&[2; 12]).unwrap().stacked_components(),
        None
    );
    let (y0, t0, x0, u) = (pseudo(n, 1), pseudo(n, 2), pseudo(n, 3), pseudo(n, 4));
    let (sigma, tau, theta) = (0.8, 0.45, 0.9);
    for (name, f) in parts() {
        for save in [false, true] {
            // Dual.
            let mut v = &y0 + &(&t0 * sigma);
            let mut want = Array1::zeros(n);
            f.conj_prox_into(want.view_mut(), v.view(), sigma).unwrap();
            let (mut y, mut y_old, mut t) = (y0.clone(), Array1::from_elem(n, 9.0), t0.clone());
            f.pdhg_dual_update_into(
                y.view_mut(),
                y_old.view_mut(),
                save,
                t.view_mut(),
                sigma,
                None,
            )
            .unwrap();
            for i in 0..n {
                assert!(
                    (y[i] - want[i]).abs() <= 1e-14,
                    "{name} dual {i}: {} vs {}",
                    y[i],
                    want[i]
                );
                let old = if save { y0[i] } else { 9.0 };
                assert_eq!(y_old[i], old, "{name}: y_old {i} (save {save})");
            }
            // Primal.
            v = &x0 - &(&u * tau);
            let mut want = Array1::zeros(n);
            f.prox_into(want.view_mut(), v.view(), tau).unwrap();
            let want_bar = &want + &((&want - &x0) * theta);
            let (mut x, mut x_old, mut xbar, mut tmp) = (
                x0.clone(),
                Array1::from_elem(n, 9.0),
                Array1::zeros(n),
                Array1::zeros(n),
            );
            f.pdhg_primal_update_into(
                x.view_mut(),
                x_old.view_mut(),
                save,
                xbar.view_mut(),
                u.view(),
                tmp.view_mut(),
                (tau, theta),
                None,
            )
            .unwrap();
            for i in 0..n {
                assert!((x[i] - want[i]).abs() <= 1e-14, "{name} primal {i}");
                assert!((xbar[i] - want_bar[i]).abs() <= 1e-14, "{name} x̄ {i}");
                if save {
                    assert_eq!(x_old[i], x0[i], "{name}: x_old {i}");
                }
            }
        }
    }
}

//! The GPU backend's CUDA C kernels (`src/cuda/kernels.cu`), run on the host: the source is
//! compiled by the system C++ compiler with a prelude that defines the CUDA index variables,
//! and every thread of a small launch grid is run in turn. The kernels have no intra-launch
//! dependencies (no shared memory, no `__syncthreads`; reductions write one partial per
//! thread), so this sequential emulation computes what the device computes, and each kernel
//! is checked against the CPU code it replaces (the `Vector` operations, the proxes, the 2-D
//! gradient, the fused FGP step and certificate, a whole FGP solve). Runs in the default
//! build (no CUDA needed); skipped with a message where no C++ compiler is found.

use hyperprox_core::func::Function;
use hyperprox_core::func::{
    fgp_iterations, CpuFgp, ElasticNet, FgpKernels, Groups, IndBox, IndNonnegative, NormL0, NormL1,
    NormL21, Prox, SeparableKernel, TotalVariation, TvKind,
};
use hyperprox_core::linalg::Vector;
use hyperprox_core::ops::{Gradient2d, LinearOperator};
use ndarray::Array1;
use rand::{Rng, SeedableRng};
use std::sync::{Mutex, OnceLock};

const SOURCE: &str = include_str!("../src/cuda/kernels.cu");
const PRELUDE: &str = r#"
#define HP_HOST 1
#include <cmath>
using std::sqrt;
struct hp_dim3 { unsigned x; };
static hp_dim3 blockIdx, threadIdx, blockDim, gridDim;
#define HP_KERNEL extern "C"
#define HP_DEV static inline
#define HP_IDX ((long long)blockIdx.x * (long long)blockDim.x + (long long)threadIdx.x)
#define HP_STRIDE ((long long)gridDim.x * (long long)blockDim.x)
extern "C" void hp_set(unsigned b, unsigned t, unsigned bd, unsigned gd) {
    blockIdx.x = b; threadIdx.x = t; blockDim.x = bd; gridDim.x = gd;
}
"#;

/// The emulated launch shape: 3 blocks of 5 threads (grid-stride loops cover any length).
const GRID: u32 = 3;
const BLOCK: u32 = 5;
const THREADS: usize = (GRID * BLOCK) as usize;

struct Kernels {
    lib: libloading::Library,
    lock: Mutex<()>,
}

fn kernels() -> Option<&'static Kernels> {
    static K: OnceLock<Option<Kernels>> = OnceLock::new();
    K.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hyperprox-kernels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let src = dir.join("kernels.cpp");
        std::fs::write(&src, format!("{PRELUDE}\n{SOURCE}")).ok()?;
        let so = dir.join("libkernels.so");
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
        let out = std::process::Command::new(&cxx)
            .args([
                "-O1",
                "-std=c++17",
                "-shared",
                "-fPIC",
                "-ffp-contract=off",
                "-o",
            ])
            .arg(&so)
            .arg(&src)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "the kernels do not compile as C++:\n{}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(_) => {
                eprintln!("skipped: no C++ compiler ({cxx}) to run the kernels on the host");
                return None;
            }
        }
        // SAFETY: the library is ours; its initializers only zero the index variables.
        let lib = unsafe { libloading::Library::new(&so) }.ok()?;
        Some(Kernels {
            lib,
            lock: Mutex::new(()),
        })
    })
    .as_ref()
}

impl Kernels {
    /// Runs every thread of the grid through `call` (which calls one kernel).
    fn launch<F: Copy>(&self, name: &str, call: impl Fn(F)) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the symbols exist in the library with these C signatures.
        unsafe {
            let set: libloading::Symbol<unsafe extern "C" fn(u32, u32, u32, u32)> =
                self.lib.get(b"hp_set").unwrap();
            let f: libloading::Symbol<F> = self.lib.get(name.as_bytes()).unwrap();
            for b in 0..GRID {
                for t in 0..BLOCK {
                    set(b, t, BLOCK, GRID);
                    call(*f);
                }
            }
        }
    }
}

fn rand_vec(n: usize, seed: u64) -> Array1<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Array1::from_iter((0..n).map(|_| rng.random_range(-2.0..2.0)))
}

fn close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let ok = (x - y).abs() <= tol * (1.0 + y.abs()) || (x.is_nan() && y.is_nan());
        assert!(ok, "entry {i}: {x} vs {y}");
    }
}

type P = *mut f64;
type C = *const f64;

macro_rules! need {
    () => {
        match kernels() {
            Some(k) => k,
            None => return,
        }
    };
}

#[test]
fn elementwise_kernels_are_the_cpu_vector_operations() {
    let k = need!();
    let n = 37usize;
    let (x, y, z) = (rand_vec(n, 1), rand_vec(n, 2), rand_vec(n, 3));
    let nn = n as i64;
    // axpy: y + a x
    let mut out = y.clone();
    let o = out.as_mut_ptr();
    k.launch(
        "axpy_f64",
        |f: unsafe extern "C" fn(i64, P, f64, C)| unsafe { f(nn, o, 0.7, x.as_ptr()) },
    );
    let mut want = y.clone();
    want.axpy(0.7, &x);
    close(out.as_slice().unwrap(), want.as_slice().unwrap(), 0.0);
    // set_axpy: x + a y
    let mut out = Array1::zeros(n);
    let o = out.as_mut_ptr();
    k.launch(
        "set_axpy_f64",
        |f: unsafe extern "C" fn(i64, P, C, f64, C)| unsafe {
            f(nn, o, x.as_ptr(), -1.3, y.as_ptr())
        },
    );
    let mut want = Array1::zeros(n);
    want.set_axpy(&x, -1.3, &y);
    close(out.as_slice().unwrap(), want.as_slice().unwrap(), 0.0);
    // xpay: x + a out
    let mut out = z.clone();
    let o = out.as_mut_ptr();
    k.launch(
        "xpay_f64",
        |f: unsafe extern "C" fn(i64, P, C, f64)| unsafe { f(nn, o, x.as_ptr(), 0.25) },
    );
    let mut want = z.clone();
    want.xpay(&x, 0.25);
    close(out.as_slice().unwrap(), want.as_slice().unwrap(), 1e-15);
    // extrapolation: z + β(z − x)
    let mut out = Array1::zeros(n);
    let o = out.as_mut_ptr();
    k.launch(
        "extrap_f64",
        |f: unsafe extern "C" fn(i64, P, C, C, f64)| unsafe {
            f(nn, o, z.as_ptr(), x.as_ptr(), 0.6)
        },
    );
    let mut want = Array1::zeros(n);
    want.set_extrapolation(&z, &x, 0.6);
    close(out.as_slice().unwrap(), want.as_slice().unwrap(), 1e-15);
    // scale, fill, mul
    let mut out = x.clone();
    let o = out.as_mut_ptr();
    k.launch("scale_f64", |f: unsafe extern "C" fn(i64, P, f64)| unsafe {
        f(nn, o, -3.0)
    });
    close(
        out.as_slice().unwrap(),
        (&x * -3.0).as_slice().unwrap(),
        0.0,
    );
    k.launch("fill_f64", |f: unsafe extern "C" fn(i64, P, f64)| unsafe {
        f(nn, o, 4.5)
    });
    assert!(out.iter().all(|&v| v == 4.5));
    let m = x.mapv(|v| if v > 0.0 { 1.0 } else { 0.0 });
    k.launch("mul_f64", |f: unsafe extern "C" fn(i64, P, C, C)| unsafe {
        f(nn, o, y.as_ptr(), m.as_ptr())
    });
    close(out.as_slice().unwrap(), (&y * &m).as_slice().unwrap(), 0.0);
}

/// Sums (or takes the max of) a reduction kernel's partials as the GPU backend does.
fn reduce(k: &Kernels, name: &str, call: impl Fn(unsafe extern "C" fn(), P)) -> Vec<f64> {
    let mut parts = vec![f64::NAN; THREADS];
    let p = parts.as_mut_ptr();
    k.launch(name, |f: unsafe extern "C" fn()| call(f, p));
    parts
}

fn sum(p: &[f64]) -> f64 {
    p.iter().sum()
}

fn max_nan(p: &[f64]) -> f64 {
    p.iter().fold(0.0f64, |m, &v| {
        if v.is_nan() || m.is_nan() {
            f64::NAN
        } else {
            m.max(v)
        }
    })
}

#[test]
fn reductions_are_the_cpu_inner_products_and_norms() {
    let k = need!();
    let n = 53usize;
    let nn = n as i64;
    let (a, b, c, d) = (
        rand_vec(n, 4),
        rand_vec(n, 5),
        rand_vec(n, 6),
        rand_vec(n, 7),
    );
    type R2 = unsafe extern "C" fn(i64, C, C, P);
    type R1 = unsafe extern "C" fn(i64, C, P);
    let cast2 = |f: unsafe extern "C" fn()| -> R2 { unsafe { std::mem::transmute(f) } };
    let cast1 = |f: unsafe extern "C" fn()| -> R1 { unsafe { std::mem::transmute(f) } };
    let dot = sum(&reduce(k, "dot_f64", |f, p| unsafe {
        cast2(f)(nn, a.as_ptr(), b.as_ptr(), p)
    }));
    close(&[dot], &[a.dot(&b)], 1e-14);
    let asum = sum(&reduce(k, "asum_f64", |f, p| unsafe {
        cast1(f)(nn, a.as_ptr(), p)
    }));
    close(&[asum], &[a.norm1()], 1e-14);
    let amax = max_nan(&reduce(k, "amax_f64", |f, p| unsafe {
        cast1(f)(nn, a.as_ptr(), p)
    }));
    assert_eq!(amax, Vector::norm_inf(&a));
    let md = max_nan(&reduce(k, "maxdiff_f64", |f, p| unsafe {
        cast2(f)(nn, a.as_ptr(), b.as_ptr(), p)
    }));
    assert_eq!(md, a.max_abs_diff(&b));
    type R4 = unsafe extern "C" fn(i64, C, C, C, C, P);
    let dd = sum(&reduce(k, "diffdot_f64", |f, p| unsafe {
        let g: R4 = std::mem::transmute(f);
        g(nn, a.as_ptr(), b.as_ptr(), c.as_ptr(), d.as_ptr(), p)
    }));
    close(&[dd], &[Array1::dot_of_differences(&a, &b, &c, &d)], 1e-13);
    type Rs = unsafe extern "C" fn(i64, C, f64, C, P);
    let sd = sum(&reduce(k, "scaled_diff_sq_f64", |f, p| unsafe {
        let g: Rs = std::mem::transmute(f);
        g(nn, a.as_ptr(), 0.3, b.as_ptr(), p)
    }));
    close(&[sd.sqrt()], &[a.norm_of_scaled_difference(0.3, &b)], 1e-14);
    // Not-finite entries: counted; the max becomes NaN (as the CPU's max_abs_diff).
    let mut bad = a.clone();
    bad[17] = f64::INFINITY;
    bad[40] = f64::NAN;
    let cnt = sum(&reduce(k, "nonfinite_f64", |f, p| unsafe {
        cast1(f)(nn, bad.as_ptr(), p)
    }));
    assert_eq!(cnt, 2.0);
    assert!(!bad.all_finite());
    let clean = sum(&reduce(k, "nonfinite_f64", |f, p| unsafe {
        cast1(f)(nn, a.as_ptr(), p)
    }));
    assert_eq!(clean, 0.0);
    let amax = max_nan(&reduce(k, "amax_f64", |f, p| unsafe {
        cast1(f)(nn, bad.as_ptr(), p)
    }));
    assert!(amax.is_nan());
    let md = max_nan(&reduce(k, "maxdiff_f64", |f, p| unsafe {
        cast2(f)(nn, bad.as_ptr(), b.as_ptr(), p)
    }));
    assert!(md.is_nan() && a.max_abs_diff(&bad).is_nan());
}

fn check_separable<F: Prox<f64> + SeparableKernel<f64>>(k: &Kernels, f: &F, x: &Array1<f64>) {
    let n = x.len() as i64;
    for gamma in [0.1, 0.7, 2.0] {
        let (kind, p1, p2) = f.prox_params(gamma).unwrap();
        let mut out = Array1::zeros(x.len());
        let o = out.as_mut_ptr();
        k.launch(
            "sep_prox_f64",
            |g: unsafe extern "C" fn(i64, P, C, i32, f64, f64)| unsafe {
                g(n, o, x.as_ptr(), kind, p1, p2)
            },
        );
        let want = f.prox(x.view(), gamma).unwrap();
        close(out.as_slice().unwrap(), want.as_slice().unwrap(), 1e-15);
        // The fused forward–backward step: prox(y − s·g).
        let grad = x.mapv(|v| 0.3 * v - 0.1);
        let mut fb = Array1::zeros(x.len());
        let o = fb.as_mut_ptr();
        k.launch(
            "fb_step_f64",
            |g: unsafe extern "C" fn(i64, P, C, f64, C, i32, f64, f64)| unsafe {
                g(n, o, x.as_ptr(), gamma, grad.as_ptr(), kind, p1, p2)
            },
        );
        let mut tmp = Array1::zeros(x.len());
        tmp.set_axpy(x, -gamma, &grad);
        let want = f.prox(tmp.view(), gamma).unwrap();
        close(fb.as_slice().unwrap(), want.as_slice().unwrap(), 1e-15);
    }
    // The conjugate's prox by Moreau in one kernel, against the CPU's.
    for gamma in [0.3, 1.0, 4.0] {
        let (kind, p1, p2) = f.prox_params(1.0 / gamma).unwrap();
        let mut out = Array1::zeros(x.len());
        let o = out.as_mut_ptr();
        k.launch(
            "sep_conj_prox_f64",
            |g: unsafe extern "C" fn(i64, P, C, i32, f64, f64, f64)| unsafe {
                g(n, o, x.as_ptr(), kind, p1, p2, gamma)
            },
        );
        let mut want = Array1::zeros(x.len());
        f.conj_prox_into(want.view_mut(), x.view(), gamma).unwrap();
        close(out.as_slice().unwrap(), want.as_slice().unwrap(), 1e-14);
    }
    let (kind, p1, p2, p3) = f.value_params().unwrap();
    let v = sum(&reduce(k, "sep_value_f64", |g, p| unsafe {
        let g: unsafe extern "C" fn(i64, C, i32, f64, f64, f64, P) = std::mem::transmute(g);
        g(n, x.as_ptr(), kind, p1, p2, p3, p)
    }));
    let want = f.value(x.view()).unwrap();
    assert!(
        (v == want) || (v - want).abs() <= 1e-13 * (1.0 + want.abs()),
        "{}: {v} vs {want}",
        f.gpu_name()
    );
    // The convex conjugate's value (PDHG's gap on the device), at points inside and outside
    // its domain; ℓ0 has none on either side.
    match (f.conj_params(), f.conj_value(x.view())) {
        (Ok((kind, p1, p2, p3)), Ok(_)) => {
            for y in [
                x.clone(),
                x.mapv(|v| 0.3 * v),
                x.mapv(|v| -v.abs()),
                x.mapv(|v| 3.0 * v),
            ] {
                let v = sum(&reduce(k, "sep_conj_value_f64", |g, p| unsafe {
                    let g: unsafe extern "C" fn(i64, C, i32, f64, f64, f64, P) =
                        std::mem::transmute(g);
                    g(n, y.as_ptr(), kind, p1, p2, p3, p)
                }));
                let want = f.conj_value(y.view()).unwrap();
                assert!(
                    (v == want) || (v - want).abs() <= 1e-13 * (1.0 + want.abs()),
                    "{} conjugate: {v} vs {want}",
                    f.gpu_name()
                );
            }
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!(
            "{}: device conjugate {:?} but CPU conjugate {:?}",
            f.gpu_name(),
            a.map(|_| ()),
            b.map(|_| ())
        ),
    }
}

#[test]
fn separable_prox_and_value_kernels_are_the_cpu_functions() {
    let k = need!();
    let x = rand_vec(41, 8);
    check_separable(k, &NormL1::new(0.8).unwrap(), &x);
    check_separable(k, &NormL0::new(0.3).unwrap(), &x);
    check_separable(k, &ElasticNet::new(0.9, 0.4).unwrap(), &x);
    check_separable(k, &IndNonnegative::new(), &x);
    check_separable(k, &IndNonnegative::new(), &x.mapv(f64::abs));
    check_separable(k, &IndBox::new(-2.5, 2.5).unwrap(), &x);
    // Outside the set: the value kernel gives +∞ as the CPU does.
    let b = IndBox::new(-0.5, 0.5).unwrap();
    let (kind, p1, p2, p3) = b.value_params().unwrap();
    let v = sum(&reduce(k, "sep_value_f64", |g, p| unsafe {
        let g: unsafe extern "C" fn(i64, C, i32, f64, f64, f64, P) = std::mem::transmute(g);
        g(x.len() as i64, x.as_ptr(), kind, p1, p2, p3, p)
    }));
    assert_eq!(v, f64::INFINITY);
    assert_eq!(b.value(x.view()).unwrap(), f64::INFINITY);
    // Per-coordinate weights have no kernel: an error, not a wrong answer.
    assert!(NormL1::weighted(x.mapv(f64::abs))
        .unwrap()
        .prox_params(1.0)
        .is_err());
}

#[test]
fn group_l21_kernel_is_block_soft_thresholding_on_any_partition() {
    let k = need!();
    // The stacked layout of an image gradient (group p = {p, p + m}) and uneven groups.
    let m = 9;
    let stacked = Groups::new(2 * m, (0..m).map(|p| vec![p, p + m]).collect()).unwrap();
    let uneven = Groups::contiguous(&[1, 4, 2, 7, 3]).unwrap();
    for (groups, seed) in [(stacked, 9), (uneven, 10)] {
        let n = groups.dim();
        let w = Array1::from_iter((0..groups.len()).map(|g| 0.5 + 0.25 * g as f64));
        let f = NormL21::weighted(groups.clone(), 0.7, w.clone()).unwrap();
        let x = rand_vec(n, seed);
        let mut off = vec![0i64];
        let mut idx = vec![];
        for g in groups.iter() {
            idx.extend(g.iter().map(|&i| i as i64));
            off.push(idx.len() as i64);
        }
        let ng = groups.len() as i64;
        for gamma in [0.2, 1.5] {
            let mut out = Array1::zeros(n);
            let o = out.as_mut_ptr();
            k.launch(
                "group_l21_f64",
                |g: unsafe extern "C" fn(i64, P, C, *const i64, *const i64, C, f64)| unsafe {
                    g(
                        ng,
                        o,
                        x.as_ptr(),
                        off.as_ptr(),
                        idx.as_ptr(),
                        w.as_ptr(),
                        gamma * 0.7,
                    )
                },
            );
            let want = f.prox(x.view(), gamma).unwrap();
            close(out.as_slice().unwrap(), want.as_slice().unwrap(), 1e-15);
        }
        let v = sum(&reduce(k, "group_l21_value_f64", |g, p| unsafe {
            let g: unsafe extern "C" fn(i64, C, *const i64, *const i64, C, P) =
                std::mem::transmute(g);
            g(ng, x.as_ptr(), off.as_ptr(), idx.as_ptr(), w.as_ptr(), p)
        }));
        close(&[0.7 * v], &[f.value(x.view()).unwrap()], 1e-14);
    }
}

#[test]
fn gradient_kernels_are_the_cpu_gradient_and_its_adjoint() {
    let k = need!();
    for (h, w) in [(5, 7), (1, 6), (6, 1), (4, 4)] {
        let g = Gradient2d::new(h, w).unwrap();
        let x = rand_vec(h * w, 11);
        let y = rand_vec(2 * h * w, 12);
        let (hh, ww) = (h as i64, w as i64);
        let mut gx = Array1::zeros(2 * h * w);
        let o = gx.as_mut_ptr();
        k.launch(
            "grad2d_f64",
            |f: unsafe extern "C" fn(i64, i64, P, C)| unsafe { f(hh, ww, o, x.as_ptr()) },
        );
        let want = LinearOperator::<f64>::apply(&g, x.view()).unwrap();
        close(gx.as_slice().unwrap(), want.as_slice().unwrap(), 0.0);
        let mut gty = Array1::zeros(h * w);
        let o = gty.as_mut_ptr();
        k.launch(
            "negdiv2d_f64",
            |f: unsafe extern "C" fn(i64, i64, P, C)| unsafe { f(hh, ww, o, y.as_ptr()) },
        );
        let want = LinearOperator::<f64>::adjoint(&g, y.view()).unwrap();
        close(gty.as_slice().unwrap(), want.as_slice().unwrap(), 0.0);
        // The adjoint identity ⟨∇x, y⟩ = ⟨x, ∇ᵀy⟩ on the kernels' outputs.
        close(&[gx.dot(&y)], &[x.dot(&gty)], 1e-13);
    }
}

/// The GPU backend's FGP kernels (fgp_step with a second r buffer, fgp_x + fgp_cert), run on
/// the host.
struct EmuFgp {
    k: &'static Kernels,
    h: usize,
    w: usize,
    iso: bool,
    r_next: Array1<f64>,
}

impl FgpKernels<f64, Array1<f64>> for EmuFgp {
    fn step(
        &mut self,
        v: &Array1<f64>,
        mu: f64,
        beta: f64,
        q: &mut Array1<f64>,
        r: &mut Array1<f64>,
    ) {
        let (h, w, iso) = (self.h as i64, self.w as i64, self.iso as i32);
        let (qp, rp, rn) = (q.as_mut_ptr(), r.as_ptr(), self.r_next.as_mut_ptr());
        self.k.launch(
            "fgp_step_f64",
            |f: unsafe extern "C" fn(i64, i64, C, f64, f64, i32, P, C, P)| unsafe {
                f(h, w, v.as_ptr(), mu, beta, iso, qp, rp, rn)
            },
        );
        std::mem::swap(r, &mut self.r_next);
    }
    fn certificate(
        &mut self,
        v: &Array1<f64>,
        mu: f64,
        q: &Array1<f64>,
        x: &mut Array1<f64>,
    ) -> (f64, f64) {
        let (h, w, iso) = (self.h as i64, self.w as i64, self.iso as i32);
        let xp = x.as_mut_ptr();
        self.k.launch(
            "fgp_x_f64",
            |f: unsafe extern "C" fn(i64, i64, P, C, C)| unsafe {
                f(h, w, xp, v.as_ptr(), q.as_ptr())
            },
        );
        let mut parts = vec![f64::NAN; 3 * THREADS];
        let p = parts.as_mut_ptr();
        self.k.launch(
            "fgp_cert_f64",
            |f: unsafe extern "C" fn(i64, i64, C, C, C, i32, P)| unsafe {
                f(h, w, x.as_ptr(), v.as_ptr(), q.as_ptr(), iso, p)
            },
        );
        let pick = |c: usize| -> f64 { parts.iter().skip(c).step_by(3).sum() };
        let (tv, qg, d2) = (pick(0), pick(1), pick(2));
        ((mu * tv - qg).max(0.0), 0.5 * d2 + mu * tv)
    }
}

#[test]
fn fused_fgp_kernels_are_the_cpu_sweep_and_solve_the_rof_problem() {
    let k = need!();
    for kind in [TvKind::Isotropic, TvKind::Anisotropic] {
        let (h, w) = (11, 8);
        let n = h * w;
        let tv = TotalVariation::new(h, w, 0.15, kind).unwrap();
        let v = rand_vec(n, 13).mapv(|x| 0.5 + 0.2 * x);
        let mu = 0.15;
        let mut emu = EmuFgp {
            k,
            h,
            w,
            iso: kind == TvKind::Isotropic,
            r_next: Array1::zeros(2 * n),
        };
        let mut cpu = CpuFgp::new(&tv);
        // One step from a random dual point against the CPU's fused sweep.
        let q0 = rand_vec(2 * n, 14).mapv(|x| 0.05 * x);
        let r0 = rand_vec(2 * n, 15).mapv(|x| 0.05 * x);
        let (mut qa, mut ra, mut qb, mut rb) = (q0.clone(), r0.clone(), q0.clone(), r0.clone());
        emu.step(&v, mu, 0.4, &mut qa, &mut ra);
        cpu.step(&v, mu, 0.4, &mut qb, &mut rb);
        close(qa.as_slice().unwrap(), qb.as_slice().unwrap(), 1e-15);
        close(ra.as_slice().unwrap(), rb.as_slice().unwrap(), 1e-15);
        let (mut xa, mut xb) = (Array1::zeros(n), Array1::zeros(n));
        let (ga, pa) = emu.certificate(&v, mu, &qa, &mut xa);
        let (gb, pb) = cpu.certificate(&v, mu, &qb, &mut xb);
        close(xa.as_slice().unwrap(), xb.as_slice().unwrap(), 1e-15);
        close(&[ga, pa], &[gb, pb], 1e-13);
        // A whole solve through the shared loop: the CPU's certified solution.
        let stop = |gap: f64, primal: f64| gap <= 1e-9 * (primal - gap).max(0.0);
        let (mut x, mut q) = (v.clone(), Array1::zeros(2 * n));
        let run = fgp_iterations(&mut emu, &v, mu, &mut x, &mut q, 20_000, &stop);
        assert!(run.converged, "{run:?}");
        let want = tv.solve_rof(v.view(), 1e-9).unwrap();
        assert_eq!(run.iterations, want.iterations);
        close(x.as_slice().unwrap(), want.x.as_slice().unwrap(), 1e-12);
    }
}

#[test]
fn float_kernels_match_the_double_ones_to_single_precision() {
    let k = need!();
    let (h, w) = (6, 9);
    let n = h * w;
    let x = rand_vec(n, 16);
    let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let (hh, ww) = (h as i64, w as i64);
    let mut gd = vec![0.0f64; 2 * n];
    let mut gf = vec![0.0f32; 2 * n];
    let (od, of) = (gd.as_mut_ptr(), gf.as_mut_ptr());
    k.launch(
        "grad2d_f64",
        |f: unsafe extern "C" fn(i64, i64, P, C)| unsafe { f(hh, ww, od, x.as_ptr()) },
    );
    k.launch(
        "grad2d_f32",
        |f: unsafe extern "C" fn(i64, i64, *mut f32, *const f32)| unsafe {
            f(hh, ww, of, xf.as_ptr())
        },
    );
    let gf64: Vec<f64> = gf.iter().map(|&v| v as f64).collect();
    close(&gf64, &gd, 1e-6);
    let mut sf = vec![0.0f32; n];
    let o = sf.as_mut_ptr();
    k.launch(
        "sep_prox_f32",
        |f: unsafe extern "C" fn(i64, *mut f32, *const f32, i32, f32, f32)| unsafe {
            f(n as i64, o, xf.as_ptr(), 0, 0.5, 0.0)
        },
    );
    let want = NormL1::new(0.5).unwrap().prox(x.view(), 1.0).unwrap();
    let sf64: Vec<f64> = sf.iter().map(|&v| v as f64).collect();
    close(&sf64, want.as_slice().unwrap(), 1e-6);
}

#[test]
fn convolution_kernels_are_the_cpu_convolution_and_its_adjoint() {
    use hyperprox_core::ops::{invert_extension, Boundary, Conv2d, ConvMethod};
    let k = need!();
    for boundary in [Boundary::Zero, Boundary::Reflect, Boundary::Periodic] {
        for ((h, w), (kh, kw)) in [((9, 7), (3, 3)), ((6, 11), (4, 5)), ((5, 5), (7, 2))] {
            let kern =
                ndarray::Array2::from_shape_vec((kh, kw), rand_vec(kh * kw, 17).to_vec()).unwrap();
            let conv = Conv2d::new(h, w, kern.clone(), boundary, ConvMethod::Direct).unwrap();
            let (rows, cols) = conv.extension_maps();
            let (roff, rinv) = invert_extension(&rows, h);
            let (coff, cinv) = invert_extension(&cols, w);
            let x = rand_vec(h * w, 18);
            let y = rand_vec(h * w, 19);
            let kf: Vec<f64> = kern.iter().copied().collect();
            let (hh, ww, kkh, kkw) = (h as i64, w as i64, kh as i64, kw as i64);
            let mut ax = Array1::zeros(h * w);
            let o = ax.as_mut_ptr();
            type Fwd = unsafe extern "C" fn(i64, i64, i64, i64, P, C, C, *const i64, *const i64);
            k.launch("conv2d_f64", |f: Fwd| unsafe {
                f(
                    hh,
                    ww,
                    kkh,
                    kkw,
                    o,
                    x.as_ptr(),
                    kf.as_ptr(),
                    rows.as_ptr(),
                    cols.as_ptr(),
                )
            });
            let want = conv.apply(x.view()).unwrap();
            close(ax.as_slice().unwrap(), want.as_slice().unwrap(), 1e-14);
            let mut aty = Array1::zeros(h * w);
            let o = aty.as_mut_ptr();
            type Adj = unsafe extern "C" fn(
                i64,
                i64,
                i64,
                i64,
                P,
                C,
                C,
                *const i64,
                *const i64,
                *const i64,
                *const i64,
            );
            k.launch("conv2d_adj_f64", |f: Adj| unsafe {
                f(
                    hh,
                    ww,
                    kkh,
                    kkw,
                    o,
                    y.as_ptr(),
                    kf.as_ptr(),
                    roff.as_ptr(),
                    rinv.as_ptr(),
                    coff.as_ptr(),
                    cinv.as_ptr(),
                )
            });
            let want = conv.adjoint(y.view()).unwrap();
            close(aty.as_slice().unwrap(), want.as_slice().unwrap(), 1e-14);
            close(&[ax.dot(&y)], &[x.dot(&aty)], 1e-13);
        }
    }
}

/// The kernels of the trainable blocks (activations and their VJPs, the dense block's bias
/// rows and column sums, the squared-error loss, the unsupervised objective's penalty, the
/// DU-ISTA/DU-IHT step and its pull-back) against the host blocks and formulas.
#[test]
fn trainable_block_kernels_are_the_cpu_blocks() {
    use hyperprox_core::diff::{BatchLoss, Differentiable, SquaredError};
    use hyperprox_core::func::soft_threshold;
    use hyperprox_core::nn::{Act, Activation};
    use ndarray::Array2;
    let k = need!();
    let (b, w) = (4usize, 9usize);
    let n = b * w;
    let mut x = Array2::from_shape_vec((b, w), rand_vec(n, 21).to_vec()).unwrap();
    x[[0, 0]] = 0.0;
    x[[1, 3]] = -0.0;
    x[[2, 5]] = 1e-3;
    let g = Array2::from_shape_vec((b, w), rand_vec(n, 22).to_vec()).unwrap();
    let nn = n as i64;
    let none = Array2::<f64>::zeros((b, 0));
    type A = unsafe extern "C" fn(i64, P, C, i32, f64);
    type Av = unsafe extern "C" fn(i64, P, C, C, i32, f64);
    for (kind, a, f) in [
        (0, 0.0, Activation::Relu),
        (1, 0.05, Activation::LeakyRelu(0.05)),
        (2, 0.0, Activation::Tanh),
        (3, 0.0, Activation::Sigmoid),
        (4, 2.5, Activation::Softplus(2.5)),
        (5, 0.0, Activation::Gelu),
    ] {
        let act = Act::new(w, f).unwrap();
        let want = act.forward(&[], x.view(), none.view()).unwrap();
        let mut out = vec![f64::NAN; n];
        let o = out.as_mut_ptr();
        k.launch("act_f64", |fun: A| unsafe {
            fun(nn, o, x.as_ptr(), kind, a)
        });
        close(&out, want.as_slice().unwrap(), 1e-14);
        let want = act
            .vjp(&[], x.view(), none.view(), g.view(), &mut [])
            .unwrap();
        k.launch("act_vjp_f64", |fun: Av| unsafe {
            fun(nn, o, x.as_ptr(), g.as_ptr(), kind, a)
        });
        close(&out, want.as_slice().unwrap(), 1e-14);
        // Single precision to single-precision rounding.
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let mut of = vec![0.0f32; n];
        let op = of.as_mut_ptr();
        k.launch(
            "act_f32",
            |fun: unsafe extern "C" fn(i64, *mut f32, *const f32, i32, f32)| unsafe {
                fun(nn, op, xf.as_ptr(), kind, a as f32)
            },
        );
        let want = act.forward(&[], x.view(), none.view()).unwrap();
        let of64: Vec<f64> = of.iter().map(|&v| v as f64).collect();
        close(&of64, want.as_slice().unwrap(), 1e-6);
    }
    // Bias rows and column sums (the dense block's b and b̄).
    let bias = rand_vec(w, 23);
    let mut out = vec![f64::NAN; n];
    let o = out.as_mut_ptr();
    let (bb, ww) = (b as i64, w as i64);
    k.launch(
        "bias_rows_f64",
        |fun: unsafe extern "C" fn(i64, i64, P, C)| unsafe { fun(bb, ww, o, bias.as_ptr()) },
    );
    let want: Vec<f64> = (0..n).map(|i| bias[i % w]).collect();
    close(&out, &want, 0.0);
    let mut cs = vec![f64::NAN; w];
    let c = cs.as_mut_ptr();
    k.launch(
        "col_sums_f64",
        |fun: unsafe extern "C" fn(i64, i64, P, C)| unsafe { fun(bb, ww, c, g.as_ptr()) },
    );
    close(&cs, g.sum_axis(ndarray::Axis(0)).as_slice().unwrap(), 1e-15);
    // Squared error: value and gradient.
    let t = Array2::from_shape_vec((b, w), rand_vec(n, 24).to_vec()).unwrap();
    let (v, grad) = SquaredError
        .value_grad(x.view(), none.view(), t.view())
        .unwrap();
    let mut gout = vec![f64::NAN; n];
    let go = gout.as_mut_ptr();
    let parts = reduce(k, "sqerr_f64", |f, p| unsafe {
        let fun: unsafe extern "C" fn(i64, P, C, C, f64, P) = std::mem::transmute(f);
        fun(nn, go, x.as_ptr(), t.as_ptr(), 2.0 / b as f64, p)
    });
    close(&[sum(&parts) / b as f64], &[v], 1e-14);
    close(&gout, grad.as_slice().unwrap(), 1e-15);
    // The penalty of the unsupervised objective: ‖x‖₁ with λ/B·sign(x) added where x ≠ 0;
    // ‖x‖₀ with the gradient left alone.
    let lam_b = 0.3;
    for l1 in [1, 0] {
        let mut gpen = g.clone();
        let gp = gpen.as_mut_ptr();
        let parts = reduce(k, "penalty_grad_f64", |f, p| unsafe {
            let fun: unsafe extern "C" fn(i64, P, C, f64, i32, P) = std::mem::transmute(f);
            fun(nn, gp, x.as_ptr(), lam_b, l1, p)
        });
        let (want_v, want_g): (f64, Array2<f64>) = if l1 == 1 {
            let mut wg = g.clone();
            ndarray::Zip::from(&mut wg).and(&x).for_each(|gv, &xv| {
                if xv != 0.0 {
                    *gv += lam_b * xv.signum()
                }
            });
            (x.iter().map(|v| v.abs()).sum(), wg)
        } else {
            (x.iter().filter(|v| **v != 0.0).count() as f64, g.clone())
        };
        close(&[sum(&parts)], &[want_v], 1e-14);
        close(gpen.as_slice().unwrap(), want_g.as_slice().unwrap(), 1e-15);
    }
    // The DU-ISTA / DU-IHT step u = x + αg, S_τ(u) or H_τ(u), and its pull-back.
    let (alpha, th) = (0.7, 0.4);
    let gbar = Array2::from_shape_vec((b, w), rand_vec(n, 25).to_vec()).unwrap();
    for l1 in [1, 0] {
        let mut out = vec![f64::NAN; n];
        let mut u = vec![f64::NAN; n];
        let (o, up) = (out.as_mut_ptr(), u.as_mut_ptr());
        k.launch(
            "shrink_step_f64",
            |fun: unsafe extern "C" fn(i64, P, P, C, C, f64, f64, i32)| unsafe {
                fun(nn, o, up, x.as_ptr(), g.as_ptr(), alpha, th, l1)
            },
        );
        let want_u: Vec<f64> = x.iter().zip(&g).map(|(&xv, &gv)| xv + gv * alpha).collect();
        close(&u, &want_u, 0.0);
        let want: Vec<f64> = want_u
            .iter()
            .map(|&uv| {
                if l1 == 1 {
                    soft_threshold(uv, th)
                } else if uv.abs() > th {
                    uv
                } else {
                    0.0
                }
            })
            .collect();
        close(&out, &want, 0.0);
        let mut d = vec![f64::NAN; n];
        let dp = d.as_mut_ptr();
        let mut parts = vec![f64::NAN; 2 * THREADS];
        let pp = parts.as_mut_ptr();
        k.launch(
            "shrink_vjp_f64",
            |fun: unsafe extern "C" fn(i64, P, C, C, C, f64, P)| unsafe {
                fun(nn, dp, gbar.as_ptr(), u.as_ptr(), g.as_ptr(), th, pp)
            },
        );
        let active: Vec<bool> = u.iter().map(|uv| uv.abs() > th).collect();
        let want_d: Vec<f64> = gbar
            .iter()
            .zip(&active)
            .map(|(&gv, &a)| if a { gv } else { 0.0 })
            .collect();
        close(&d, &want_d, 0.0);
        let dg: f64 = want_d.iter().zip(&g).map(|(a, b)| a * b).sum();
        let gth: f64 = -gbar
            .iter()
            .zip(&u)
            .zip(&active)
            .filter(|(_, &a)| a)
            .map(|((gv, uv), _)| gv * uv.signum())
            .sum::<f64>();
        let s0: f64 = parts.iter().step_by(2).sum();
        let s1: f64 = parts.iter().skip(1).step_by(2).sum();
        close(&[s0, s1], &[dg, gth], 1e-14);
    }
}

/// The per-coordinate kernels (`cuda::GpuSeparable`: weighted ℓ1, a box with per-coordinate
/// bounds) against the CPU's weighted functions: prox, conjugate prox, forward–backward step,
/// value and conjugate value, inside and outside the domains.
#[test]
fn per_coordinate_kernels_are_the_cpu_weighted_functions() {
    let k = need!();
    let n = 29usize;
    let nn = n as i64;
    let x = rand_vec(n, 61);
    let w = rand_vec(n, 62).mapv(|v| v.abs() + 0.05);
    let lo = rand_vec(n, 63).mapv(|v| -v.abs() * 0.5);
    let hi = lo.mapv(|v| v + 0.7);
    let l1 = NormL1::weighted(w.clone()).unwrap();
    let bx = IndBox::per_coordinate(lo.clone(), hi.clone()).unwrap();
    let fs: Vec<(&dyn Prox<f64>, _)> = vec![
        (&l1, l1.coord_params().unwrap()),
        (&bx, bx.coord_params().unwrap()),
    ];
    for (f, c) in &fs {
        for gamma in [0.2, 1.0, 3.0] {
            let mut out = vec![f64::NAN; n];
            let o = out.as_mut_ptr();
            type Pc = unsafe extern "C" fn(i64, P, C, i32, C, C, f64);
            k.launch("sep_prox_pc_f64", |g: Pc| unsafe {
                g(
                    nn,
                    o,
                    x.as_ptr(),
                    c.kind,
                    c.p1.as_ptr(),
                    c.p2.as_ptr(),
                    gamma,
                )
            });
            close(
                &out,
                f.prox(x.view(), gamma).unwrap().as_slice().unwrap(),
                1e-15,
            );
            k.launch("sep_conj_prox_pc_f64", |g: Pc| unsafe {
                g(
                    nn,
                    o,
                    x.as_ptr(),
                    c.kind,
                    c.p1.as_ptr(),
                    c.p2.as_ptr(),
                    gamma,
                )
            });
            let mut want = Array1::zeros(n);
            f.conj_prox_into(want.view_mut(), x.view(), gamma).unwrap();
            close(&out, want.as_slice().unwrap(), 1e-14);
            let grad = x.mapv(|v| 0.3 * v - 0.1);
            k.launch(
                "fb_step_pc_f64",
                |g: unsafe extern "C" fn(i64, P, C, f64, C, i32, C, C)| unsafe {
                    g(
                        nn,
                        o,
                        x.as_ptr(),
                        gamma,
                        grad.as_ptr(),
                        c.kind,
                        c.p1.as_ptr(),
                        c.p2.as_ptr(),
                    )
                },
            );
            let want = f.prox((&x - &(&grad * gamma)).view(), gamma).unwrap();
            close(&out, want.as_slice().unwrap(), 1e-15);
        }
        type R = unsafe extern "C" fn(i64, C, i32, C, C, C, P);
        let inside = f.prox(x.view(), 1.0).unwrap();
        for y in [x.clone(), inside, x.mapv(|v| 0.01 * v)] {
            let v = sum(&reduce(k, "sep_value_pc_f64", |g, p| unsafe {
                let g: R = std::mem::transmute(g);
                g(
                    nn,
                    y.as_ptr(),
                    c.kind,
                    c.p1.as_ptr(),
                    c.v1.as_ptr(),
                    c.v2.as_ptr(),
                    p,
                )
            }));
            let want = f.value(y.view()).unwrap();
            assert!(
                v == want || (v - want).abs() <= 1e-13 * (1.0 + want.abs()),
                "{v} vs {want}"
            );
            let v = sum(&reduce(k, "sep_conj_value_pc_f64", |g, p| unsafe {
                let g: R = std::mem::transmute(g);
                g(
                    nn,
                    y.as_ptr(),
                    c.kind,
                    c.p1.as_ptr(),
                    c.p2.as_ptr(),
                    c.v2.as_ptr(),
                    p,
                )
            }));
            let want = f.conj_value(y.view()).unwrap();
            assert!(
                v == want || (v - want).abs() <= 1e-13 * (1.0 + want.abs()),
                "conj {v} vs {want}"
            );
        }
    }
    // Scalar parameters have none (the scalar kernels serve them).
    assert!(NormL1::new(0.5).unwrap().coord_params().is_none());
    assert!(IndBox::new(-1.0, 1.0).unwrap().coord_params().is_none());
}

//! The TV prox / ROF solver on the device: the two kernels of the FGP loop
//! ([`fgp_iterations`], the same loop as the CPU's) and [`solve_rof`].

use super::{convert, launch, sum_partials, Gpu, GpuReal, GpuVec};
use crate::error::{Error, Result};
use crate::func::{fgp_iterations, FgpKernels};
use crate::func::{TotalVariation, TvKind, TvProx};
use crate::linalg::Real;
use ndarray::{Array1, ArrayView1};

/// The FGP kernels on the device for an `h × w` image.
///
/// * **step**: one kernel, `fgp_step`: per pixel it forms `x = v − ∇ᵀr` at the pixel and its
///   right and lower neighbours from `r`, the gradient, the projection onto
///   `{‖q_p‖ ≤ μ}` and the momentum update, reading `v`, `r`, `q` and writing `q`, `r` once
///   (9 numbers per pixel; the neighbours' reads hit the caches). `r` is double-buffered (the
///   kernel reads the old `r` around a pixel while others write the new one): the new `r`
///   goes to a second buffer, swapped in after the launch.
/// * **certificate**: `fgp_x` (`x = v − ∇ᵀq`) and one reduction `fgp_cert` giving
///   `TV(x)`, `⟨q, ∇x⟩` and `‖x − v‖²`, hence the gap `μ·TV(x) − ⟨q, ∇x⟩` and the primal value.
pub struct GpuFgp<T: GpuReal> {
    gpu: Gpu,
    h: usize,
    w: usize,
    iso: bool,
    r_next: GpuVec<T>,
}

impl<T: GpuReal> GpuFgp<T> {
    /// The kernels for `h × w` images (allocates the second `r` buffer, `2hw` numbers).
    pub fn new(gpu: &Gpu, h: usize, w: usize, kind: TvKind) -> Result<Self> {
        Ok(Self {
            gpu: gpu.clone(),
            h,
            w,
            iso: kind == TvKind::Isotropic,
            r_next: gpu.zeros(2 * h * w)?,
        })
    }

    /// Numbers read and written by one step (for bandwidth figures): `9hw`.
    pub fn step_traffic(&self) -> usize {
        9 * self.h * self.w
    }
}

impl<T: GpuReal> FgpKernels<T, GpuVec<T>> for GpuFgp<T> {
    fn step(&mut self, v: &GpuVec<T>, mu: T, beta: T, q: &mut GpuVec<T>, r: &mut GpuVec<T>) {
        let (h, w) = (self.h as i64, self.w as i64);
        let iso = self.iso as i32;
        let g = &self.gpu;
        super::fatal(launch!(g, T, "fgp_step", g.cfg(self.h * self.w);
            &h, &w, v.buf(), &mu, &beta, &iso, q.buf_mut(), r.buf(), self.r_next.buf_mut()));
        std::mem::swap(r, &mut self.r_next);
    }

    fn certificate(&mut self, v: &GpuVec<T>, mu: T, q: &GpuVec<T>, x: &mut GpuVec<T>) -> (T, T) {
        let (h, w) = (self.h as i64, self.w as i64);
        let iso = self.iso as i32;
        let g = &self.gpu;
        super::fatal(launch!(g, T, "fgp_x", g.cfg(self.h * self.w);
            &h, &w, x.buf_mut(), v.buf(), q.buf()));
        let cfg = g.red_cfg();
        let parts = super::fatal(g.reduce::<T>(
            3,
            |p| launch!(g, T, "fgp_cert", cfg; &h, &w, x.buf(), v.buf(), q.buf(), &iso, p),
        ));
        let pick = |k: usize| -> T {
            let v: Vec<T> = parts.iter().skip(k).step_by(3).copied().collect();
            sum_partials(&v)
        };
        let (tv, qg, d2) = (pick(0), pick(1), pick(2));
        let gap = (mu * tv - qg).max(T::zero());
        (gap, T::c(0.5) * d2 + mu * tv)
    }
}

/// Solves the ROF problem `min_x ½‖x − v‖² + λ·TV(x)` of `tv` on the device to a certified
/// relative objective error `rel_tol` (stops when `G ≤ rel_tol·(P(x) − G)`), as
/// [`TotalVariation::solve_rof`] does on the CPU: the same closed-form answer above `λ_max`
/// (on the host), the same FGP loop, the kernels of [`GpuFgp`]. `T` is `f32` or `f64`; the
/// image goes up once and `x`, `q` come back once.
pub fn solve_rof<T: Real>(
    gpu: &Gpu,
    tv: &TotalVariation<T>,
    v: ArrayView1<'_, T>,
    rel_tol: T,
) -> Result<TvProx<T>> {
    if std::mem::size_of::<T>() == 4 {
        solve_rof_as::<T, f32>(gpu, tv, v, rel_tol)
    } else {
        solve_rof_as::<T, f64>(gpu, tv, v, rel_tol)
    }
}

fn solve_rof_as<T: Real, U: GpuReal>(
    gpu: &Gpu,
    tv: &TotalVariation<T>,
    v: ArrayView1<'_, T>,
    rel_tol: T,
) -> Result<TvProx<T>> {
    if !(rel_tol > T::zero()) {
        return Err(Error::param(
            "tol",
            rel_tol,
            "the relative tolerance must be > 0",
        ));
    }
    let (h, w, lambda, kind, max_iters) = tv.setup();
    let n = h * w;
    crate::func::check_arg("TotalVariation (GPU)", "v", Some(n), v)?;
    let v = v.to_owned();
    let mu = lambda;
    let stop = |gap: U, primal: U| gap <= U::c(rel_tol.as_f64()) * (primal - gap).max(U::zero());
    if mu == T::zero() {
        return Ok(TvProx {
            x: v,
            q: Array1::zeros(2 * n),
            gap: T::zero(),
            iterations: 0,
        });
    }
    let mut q0 = vec![U::zero(); 2 * n];
    if let Some((xc, qc, gap, primal)) = tv.constant_solution(&v, mu) {
        if stop(U::c(gap.as_f64()), U::c(primal.as_f64())) {
            return Ok(TvProx {
                x: xc,
                q: qc,
                gap,
                iterations: 0,
            });
        }
        q0 = convert(qc.iter().copied());
    }
    let vs: Vec<U> = convert(v.iter().copied());
    let vd = gpu.upload(&vs)?;
    let mut x = vd.clone();
    let mut q = gpu.upload(&q0)?;
    let mut kernels = GpuFgp::<U>::new(gpu, h, w, kind)?;
    let mu_u = U::c(mu.as_f64());
    let out = fgp_iterations(&mut kernels, &vd, mu_u, &mut x, &mut q, max_iters, &stop);
    if !out.converged {
        return Err(Error::NotConverged {
            method: "TotalVariation prox on the GPU (FGP dual solver)".into(),
            iterations: max_iters,
            residual: out.gap.as_f64(),
            tol: rel_tol.as_f64(),
        });
    }
    Ok(TvProx {
        x: Array1::from(convert::<U, T>(x.to_vec()?)),
        q: Array1::from(convert::<U, T>(q.to_vec()?)),
        gap: T::c(out.gap.as_f64()),
        iterations: out.iterations,
    })
}

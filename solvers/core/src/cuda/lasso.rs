//! The Lasso `min_x (1/2n)‖Ax − b‖² + λ‖x‖₁` with a dense `A` on the device: the core's FISTA
//! on [`GpuVec`], the smooth part's gradient by one GEMV pair, the forward–backward step by
//! one fused kernel ([`ProxOn::forward_backward_on`](crate::backend::ProxOn)), stopped on the
//! duality gap computed on the device (the CPU's [`LassoProblem::duality_gap`] formula).

use super::{convert, Gpu, GpuDense, GpuReal, GpuVec};
use crate::backend::{FunctionOn, OperatorOn, SmoothOn};
use crate::error::{Error, Result};
use crate::func::NormL1;
use crate::linalg::{Real, Vector};
use crate::ops::PowerIteration;
use crate::solve::{CertificateKind, Fista, LassoPenalty, LassoProblem, NoObserver, Solution};
use ndarray::{Array1, ArrayView1, ArrayView2};
use std::sync::Mutex;

/// A FISTA run on device vectors.
pub type DeviceFistaSolution<T> = Solution<T, crate::solve::FistaState<T, GpuVec<T>>, GpuVec<T>>;

/// The smooth part `(1/2n)‖Ax − b‖²` and the data of a Lasso on the device.
pub struct GpuLasso<T: GpuReal> {
    a: GpuDense<T>,
    b: GpuVec<T>,
    n: T,
    lipschitz: T,
    /// Scratch: the residual and `Aᵀr`.
    scratch: Mutex<(GpuVec<T>, GpuVec<T>)>,
}

impl<T: GpuReal> GpuLasso<T> {
    /// Uploads `A` (`n × p`) and `b`; the Lipschitz constant `‖A‖²/n` is estimated on the
    /// device (Lanczos, relative tolerance 1e-6, inflated by 1e-3 so that `1/L` stays a safe
    /// step).
    pub fn new(gpu: &Gpu, a: ArrayView2<'_, T>, b: ArrayView1<'_, T>) -> Result<Self> {
        let (n, p) = a.dim();
        crate::linalg::check_len("GpuLasso", "b", n, b.len())?;
        if n == 0 || p == 0 {
            return Err(Error::shape(
                "GpuLasso",
                "A",
                "a non-empty matrix",
                "0 rows or columns",
            ));
        }
        let bh: Vec<T> = b.iter().copied().collect();
        if bh.iter().any(|v| !v.is_finite()) {
            return Err(Error::param(
                "b",
                "a non-finite entry",
                "remove NaN/Inf from b",
            ));
        }
        let a = GpuDense::new(gpu, a)?;
        let b = gpu.upload(&bh)?;
        let nn = T::c(n as f64);
        let norm = a.opnorm_on(PowerIteration {
            max_iters: 300,
            tol: 1e-6,
            seed: 0,
        })?;
        let lipschitz = norm * norm / nn * T::c(1.001);
        Ok(Self {
            scratch: Mutex::new((gpu.zeros(n)?, gpu.zeros(p)?)),
            a,
            b,
            n: nn,
            lipschitz,
        })
    }

    /// `r ← b − Ax`.
    fn residual(&self, r: &mut GpuVec<T>, x: &GpuVec<T>) {
        r.copy_from(&self.b);
        self.a.gemv(false, -T::one(), x, T::one(), r);
    }

    /// The duality gap at `x` for `λ‖x‖₁`: with `r = b − Ax`, `s = min(1, λ/‖Aᵀr/n‖∞)`,
    /// `P = ‖r‖²/2n + λ‖x‖₁`, `D = (s⟨r, b⟩ − s²‖r‖²/2)/n`, the gap is `max(P − D, 0)`.
    pub fn duality_gap(&self, x: &GpuVec<T>, lambda: T) -> Result<T> {
        let mut guard = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let (r, c) = &mut *guard;
        self.residual(r, x);
        self.a.gemv(true, T::one() / self.n, r, T::zero(), c);
        let dn = c.norm_inf();
        let s = if dn > lambda { lambda / dn } else { T::one() };
        let rr = r.dot(r);
        let primal = rr / (T::c(2.0) * self.n) + lambda * x.norm1();
        let dual = (s * r.dot(&self.b) - T::c(0.5) * s * s * rr) / self.n;
        let gap = primal - dual;
        if !gap.is_finite() {
            return Err(Error::Diverged {
                method: "FISTA on the GPU".into(),
                iteration: 0,
                detail: format!("duality gap {gap}"),
            });
        }
        Ok(gap.max(T::zero()))
    }
}

impl<T: GpuReal> GpuLasso<T> {
    /// The matrix on the device.
    pub fn matrix(&self) -> &GpuDense<T> {
        &self.a
    }

    /// `λ_max = ‖Aᵀb‖∞/n`, the smallest `λ` with solution 0.
    pub fn lambda_max(&self) -> Result<T> {
        let mut c = self.b.zeros_of_len(self.a.shape().1);
        self.a
            .gemv(true, T::one() / self.n, &self.b, T::zero(), &mut c);
        Ok(c.norm_inf())
    }

    /// The core FISTA on the device from `x = 0` for `λ‖x‖₁`, stopped at a duality gap `≤ tol`
    /// (evaluated every 10 iterations) or `max_iters`; returns the solution (on the device)
    /// and the objective.
    pub fn fista(
        &self,
        lambda: T,
        tol: T,
        max_iters: usize,
    ) -> Result<(DeviceFistaSolution<T>, T)> {
        let g = NormL1::new(lambda)?;
        let params = crate::experiments::lasso_fista_params(tol, max_iters);
        let x0 = self.b.zeros_of_len(self.a.shape().1);
        let sol = Fista::new(self, &g, params)
            .with_certificate(CertificateKind::DualityGap, |x| self.duality_gap(x, lambda))
            .run_on(&x0, NoObserver)?;
        let objective = self.value_on(&sol.x)? + g.value_on(&sol.x)?;
        Ok((sol, objective))
    }
}

impl<T: GpuReal> FunctionOn<T, GpuVec<T>> for GpuLasso<T> {
    fn name_on(&self) -> String {
        "LeastSquares (GPU)".into()
    }
    fn dim_on(&self) -> Option<usize> {
        Some(self.a.shape_on().1)
    }
    fn value_on(&self, x: &GpuVec<T>) -> Result<T> {
        let mut guard = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let r = &mut guard.0;
        self.residual(r, x);
        Ok(r.dot(r) / (T::c(2.0) * self.n))
    }
}

impl<T: GpuReal> SmoothOn<T, GpuVec<T>> for GpuLasso<T> {
    /// `∇ = Aᵀ(Ax − b)/n`: one GEMV for `Ax − b` (from a copy of `b`, `β = −1`), one for `Aᵀ`.
    fn gradient_on(&self, out: &mut GpuVec<T>, x: &GpuVec<T>) -> Result<()> {
        let mut guard = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let r = &mut guard.0;
        r.copy_from(&self.b);
        self.a.gemv(false, T::one(), x, -T::one(), r);
        self.a.gemv(true, T::one() / self.n, r, T::zero(), out);
        Ok(())
    }
    fn lipschitz_on(&self) -> Option<T> {
        Some(self.lipschitz)
    }
}

/// Solves `min_x (1/2n)‖Ax − b‖² + λ‖x‖₁` (the problem of `prob`: an ℓ1 penalty without
/// weights, a dense design) by the core FISTA on the device, to a duality gap `≤ tol`
/// (evaluated every 10 iterations, as [`lasso_fista`](crate::experiments::lasso_fista) does on
/// the CPU).
pub fn solve_lasso<T: Real>(
    gpu: &Gpu,
    prob: &LassoProblem<T>,
    tol: T,
    max_iters: usize,
) -> Result<Solution<T, ()>> {
    if !matches!(prob.penalty(), LassoPenalty::L1 { weights: None }) {
        return Err(Error::unsupported(
            "this penalty on the GPU",
            "the GPU Lasso (plain l1 only; use --device cpu for weights, elastic net, groups)",
        ));
    }
    let a = prob.design().dense().ok_or_else(|| {
        Error::unsupported(
            "a sparse design on the GPU",
            "the GPU Lasso (pass a dense .npy, or use --device cpu)",
        )
    })?;
    if std::mem::size_of::<T>() == 4 {
        solve_as::<T, f32>(gpu, a, prob.b(), prob.lambda(), tol, max_iters)
    } else {
        solve_as::<T, f64>(gpu, a, prob.b(), prob.lambda(), tol, max_iters)
    }
}

fn solve_as<T: Real, U: GpuReal>(
    gpu: &Gpu,
    a: ArrayView2<'_, T>,
    b: ArrayView1<'_, T>,
    lambda: T,
    tol: T,
    max_iters: usize,
) -> Result<Solution<T, ()>> {
    let au =
        ndarray::Array2::from_shape_vec(a.dim(), convert(a.iter().copied())).expect("same shape");
    let bu = Array1::from(convert::<T, U>(b.iter().copied()));
    let f = GpuLasso::<U>::new(gpu, au.view(), bu.view())?;
    let lam = U::c(lambda.as_f64());
    let (sol, objective) = f.fista(lam, U::c(tol.as_f64()), max_iters)?;
    Ok(Solution {
        x: Array1::from(convert::<U, T>(sol.x.to_vec()?)),
        state: (),
        reason: sol.reason,
        iterations: sol.iterations,
        objective: T::c(objective.as_f64()),
        certificate: T::c(sol.certificate.as_f64()),
        kind: CertificateKind::DualityGap,
    })
}

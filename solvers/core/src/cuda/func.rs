//! The core's functions on device vectors: the separable ones (ℓ1, ℓ0, box, nonnegativity,
//! elastic net) by one elementwise kernel, the ℓ2 ball by a norm and a scaling, the group
//! ℓ2,1 norm (the TV dual's projection is its conjugate's prox) by one thread per group.
//! They are the same values as the CPU types (`NormL1`, …): only the vector type changes.

use super::{launch, sum_partials, Gpu, GpuReal, GpuVec};
use crate::backend::{FunctionOn, ProxOn};
use crate::error::{Error, Result};
use crate::func::{
    set_tol, ElasticNet, IndBallL2, IndBox, IndNonnegative, NormL0, NormL1, NormL21,
    SeparableKernel,
};
use crate::linalg::{check_len, check_positive, Vector};

fn check_out<T: GpuReal>(name: &str, out: &GpuVec<T>, x: &GpuVec<T>, gamma: T) -> Result<()> {
    check_len(name, "out", x.len_(), out.len_())?;
    check_positive("gamma", gamma)
}

/// The device [`FunctionOn`]/[`ProxOn`] of a [`SeparableKernel`] type.
macro_rules! separable_on_gpu {
    ($ty:ident) => {
impl<T: GpuReal> FunctionOn<T, GpuVec<T>> for $ty<T> {
    fn name_on(&self) -> String {
        SeparableKernel::<T>::gpu_name(self)
    }
    fn dim_on(&self) -> Option<usize> {
        None
    }
    fn value_on(&self, x: &GpuVec<T>) -> Result<T> {
        let (kind, p1, p2, p3) = SeparableKernel::<T>::value_params(self)?;
        let g = x.gpu();
        let n = x.n();
        let cfg = g.red_cfg();
        let parts = g.reduce::<T>(1, |p| {
            launch!(g, T, "sep_value", cfg; &n, x.buf(), &kind, &p1, &p2, &p3, p)
        })?;
        Ok(sum_partials(&parts))
    }
    /// `Σ φ*(yᵢ)`: one kernel and its reduction (the CPU's conjugates and tolerances).
    fn conj_value_on(&self, y: &GpuVec<T>) -> Result<T> {
        let (kind, p1, p2, p3) = SeparableKernel::<T>::conj_params(self)?;
        let g = y.gpu();
        let n = y.n();
        let cfg = g.red_cfg();
        let parts = g.reduce::<T>(1, |p| {
            launch!(g, T, "sep_conj_value", cfg; &n, y.buf(), &kind, &p1, &p2, &p3, p)
        })?;
        Ok(sum_partials(&parts))
    }
}

impl<T: GpuReal> ProxOn<T, GpuVec<T>> for $ty<T> {
    fn prox_on(&self, out: &mut GpuVec<T>, x: &GpuVec<T>, gamma: T) -> Result<()> {
        check_out(&SeparableKernel::<T>::gpu_name(self), out, x, gamma)?;
        let (kind, p1, p2) = SeparableKernel::<T>::prox_params(self, gamma)?;
        let g = x.gpu().clone();
        let n = x.n();
        launch!(&g, T, "sep_prox", g.cfg(x.len_()); &n, out.buf_mut(), x.buf(), &kind, &p1, &p2)
    }
    /// One kernel: `out = x − γ·prox_{φ/γ}(x/γ)` elementwise (Moreau, no scratch).
    fn conj_prox_on(&self, out: &mut GpuVec<T>, x: &GpuVec<T>, gamma: T) -> Result<()> {
        check_out(&SeparableKernel::<T>::gpu_name(self), out, x, gamma)?;
        let (kind, p1, p2) = SeparableKernel::<T>::prox_params(self, T::one() / gamma)?;
        let g = x.gpu().clone();
        let n = x.n();
        launch!(&g, T, "sep_conj_prox", g.cfg(x.len_());
            &n, out.buf_mut(), x.buf(), &kind, &p1, &p2, &gamma)
    }
    /// One kernel: `out = prox_{sφ}(y − s·g)` elementwise.
    fn forward_backward_on(
        &self,
        out: &mut GpuVec<T>,
        y: &GpuVec<T>,
        step: T,
        grad: &GpuVec<T>,
        _tmp: &mut GpuVec<T>,
    ) -> Result<()> {
        check_out(&SeparableKernel::<T>::gpu_name(self), out, y, step)?;
        check_len(&SeparableKernel::<T>::gpu_name(self), "gradient", y.len_(), grad.len_())?;
        let (kind, p1, p2) = SeparableKernel::<T>::prox_params(self, step)?;
        let g = y.gpu().clone();
        let n = y.n();
        launch!(&g, T, "fb_step", g.cfg(y.len_());
            &n, out.buf_mut(), y.buf(), &step, grad.buf(), &kind, &p1, &p2)
    }
}
    };
}
separable_on_gpu!(NormL1);
separable_on_gpu!(NormL0);
separable_on_gpu!(IndBox);
separable_on_gpu!(IndNonnegative);
separable_on_gpu!(ElasticNet);

impl<T: GpuReal> FunctionOn<T, GpuVec<T>> for IndBallL2<T> {
    fn name_on(&self) -> String {
        "IndBallL2".into()
    }
    fn dim_on(&self) -> Option<usize> {
        None
    }
    fn value_on(&self, x: &GpuVec<T>) -> Result<T> {
        let r = self.radius();
        Ok(if x.norm2() <= r + set_tol(r) {
            T::zero()
        } else {
            T::infinity()
        })
    }
    fn conj_value_on(&self, y: &GpuVec<T>) -> Result<T> {
        Ok(self.radius() * y.norm2())
    }
}

impl<T: GpuReal> ProxOn<T, GpuVec<T>> for IndBallL2<T> {
    fn prox_on(&self, out: &mut GpuVec<T>, x: &GpuVec<T>, gamma: T) -> Result<()> {
        check_out("IndBallL2", out, x, gamma)?;
        let (n, r) = (x.norm2(), self.radius());
        let s = if n > r { r / n } else { T::one() };
        out.copy_from(x);
        out.scale(s);
        Ok(())
    }
}

/// The group lasso [`NormL21`] `λ Σ_g w_g‖x_g‖` on the device: its partition (offsets and the
/// flattened index lists, any partition: the TV dual's stacked pairs too) and weights are
/// uploaded once by [`GpuNormL21::new`], so a prox in a solver's loop moves no data from the
/// host. The prox is block soft thresholding, one thread per group.
pub struct GpuNormL21<T: GpuReal> {
    off: cudarc::driver::CudaSlice<i64>,
    idx: cudarc::driver::CudaSlice<i64>,
    w: GpuVec<T>,
    m: i64,
    dim: usize,
    lambda: T,
}

impl<T: GpuReal> GpuNormL21<T> {
    /// The device copy of `f`.
    pub fn new(gpu: &Gpu, f: &NormL21<T>) -> Result<Self> {
        let (groups, lambda, w) = f.parts();
        let mut off = vec![0i64];
        let mut idx = Vec::with_capacity(groups.dim());
        for gi in groups.iter() {
            idx.extend(gi.iter().map(|&i| i as i64));
            off.push(idx.len() as i64);
        }
        let up = |v: &[i64]| {
            gpu.stream()
                .clone_htod(if v.is_empty() { &[0i64][..] } else { v })
                .map_err(|e| Error::Device(format!("CUDA error in upload: {e:?}")))
        };
        Ok(Self {
            off: up(&off)?,
            idx: up(&idx)?,
            w: gpu.upload(w.as_slice().expect("owned weights are contiguous"))?,
            m: groups.len() as i64,
            dim: groups.dim(),
            lambda,
        })
    }
}

impl<T: GpuReal> FunctionOn<T, GpuVec<T>> for GpuNormL21<T> {
    fn name_on(&self) -> String {
        "NormL21".into()
    }
    fn dim_on(&self) -> Option<usize> {
        Some(self.dim)
    }
    fn value_on(&self, x: &GpuVec<T>) -> Result<T> {
        check_len("NormL21", "x", self.dim, x.len_())?;
        let g = x.gpu();
        let cfg = g.red_cfg();
        let parts = g.reduce::<T>(1, |p| {
            launch!(g, T, "group_l21_value", cfg;
                &self.m, x.buf(), &self.off, &self.idx, self.w.buf(), p)
        })?;
        Ok(self.lambda * sum_partials(&parts))
    }
}

impl<T: GpuReal> ProxOn<T, GpuVec<T>> for GpuNormL21<T> {
    fn prox_on(&self, out: &mut GpuVec<T>, x: &GpuVec<T>, gamma: T) -> Result<()> {
        check_len("NormL21", "x", self.dim, x.len_())?;
        check_out("NormL21", out, x, gamma)?;
        let g = x.gpu().clone();
        let t = gamma * self.lambda;
        launch!(&g, T, "group_l21", g.cfg(self.m as usize);
            &self.m, out.buf_mut(), x.buf(), &self.off, &self.idx, self.w.buf(), &t)
    }
}

/// A separable function with **per-coordinate parameters** on the device — the weighted ℓ1
/// norm `Σ wᵢ|xᵢ|` ([`NormL1::weighted`]) or a box with per-coordinate bounds
/// ([`IndBox`]) — with its parameter arrays uploaded once by [`GpuSeparable::new`] (the
/// scalar versions need no copy: the core types themselves run on [`GpuVec`]s). Prox,
/// conjugate prox, the fused forward–backward step, value and conjugate value are one kernel
/// each (and a reduction), the formulas and tolerances of the CPU type.
pub struct GpuSeparable<T: GpuReal> {
    name: String,
    kind: i32,
    n: usize,
    p1: GpuVec<T>,
    p2: GpuVec<T>,
    v1: GpuVec<T>,
    v2: GpuVec<T>,
}

impl<T: GpuReal> GpuSeparable<T> {
    /// Uploads the per-coordinate parameters of `f`; `Err` for a function whose parameters
    /// are scalars (use `f` itself on device vectors) or that has no per-coordinate kernel.
    pub fn new<F: SeparableKernel<T>>(gpu: &Gpu, f: &F) -> Result<Self> {
        let c = f.coord_params().ok_or_else(|| {
            Error::unsupported(
                "per-coordinate device parameters",
                format!(
                    "{} (its parameters are one value for every coordinate: it runs on GpuVec as it is)",
                    f.gpu_name()
                ),
            )
        })?;
        Ok(Self {
            name: format!("{} (per coordinate)", f.gpu_name()),
            kind: c.kind,
            n: c.p1.len(),
            p1: gpu.upload(&c.p1)?,
            p2: gpu.upload(&c.p2)?,
            v1: gpu.upload(&c.v1)?,
            v2: gpu.upload(&c.v2)?,
        })
    }

    fn check(&self, x: &GpuVec<T>) -> Result<()> {
        check_len(&self.name, "x", self.n, x.len_())
    }

    fn reduce(&self, name: &str, x: &GpuVec<T>, b: &GpuVec<T>) -> Result<T> {
        self.check(x)?;
        let g = x.gpu();
        let n = x.n();
        let cfg = g.red_cfg();
        let parts = g.reduce::<T>(1, |p| {
            launch!(g, T, name, cfg; &n, x.buf(), &self.kind, self.p1.buf(), b.buf(), self.v2.buf(), p)
        })?;
        Ok(sum_partials(&parts))
    }
}

impl<T: GpuReal> FunctionOn<T, GpuVec<T>> for GpuSeparable<T> {
    fn name_on(&self) -> String {
        self.name.clone()
    }
    fn dim_on(&self) -> Option<usize> {
        Some(self.n)
    }
    fn value_on(&self, x: &GpuVec<T>) -> Result<T> {
        self.reduce("sep_value_pc", x, &self.v1)
    }
    fn conj_value_on(&self, y: &GpuVec<T>) -> Result<T> {
        self.reduce("sep_conj_value_pc", y, &self.p2)
    }
}

impl<T: GpuReal> ProxOn<T, GpuVec<T>> for GpuSeparable<T> {
    fn prox_on(&self, out: &mut GpuVec<T>, x: &GpuVec<T>, gamma: T) -> Result<()> {
        self.check(x)?;
        check_out(&self.name, out, x, gamma)?;
        let g = x.gpu().clone();
        let n = x.n();
        launch!(&g, T, "sep_prox_pc", g.cfg(self.n);
            &n, out.buf_mut(), x.buf(), &self.kind, self.p1.buf(), self.p2.buf(), &gamma)
    }
    fn conj_prox_on(&self, out: &mut GpuVec<T>, x: &GpuVec<T>, gamma: T) -> Result<()> {
        self.check(x)?;
        check_out(&self.name, out, x, gamma)?;
        let g = x.gpu().clone();
        let n = x.n();
        launch!(&g, T, "sep_conj_prox_pc", g.cfg(self.n);
            &n, out.buf_mut(), x.buf(), &self.kind, self.p1.buf(), self.p2.buf(), &gamma)
    }
    fn forward_backward_on(
        &self,
        out: &mut GpuVec<T>,
        y: &GpuVec<T>,
        step: T,
        grad: &GpuVec<T>,
        _tmp: &mut GpuVec<T>,
    ) -> Result<()> {
        self.check(y)?;
        check_out(&self.name, out, y, step)?;
        check_len(&self.name, "gradient", y.len_(), grad.len_())?;
        let g = y.gpu().clone();
        let n = y.n();
        launch!(&g, T, "fb_step_pc", g.cfg(self.n);
            &n, out.buf_mut(), y.buf(), &step, grad.buf(), &self.kind, self.p1.buf(), self.p2.buf())
    }
}

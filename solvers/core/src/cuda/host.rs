//! Device operators and functions seen through the host traits, so the conformance kit of
//! [`testing`](crate::testing) (the adjoint and batch tests, the prox oracle, optimality and
//! Moreau checks) runs unchanged on their device implementations: each call uploads its
//! arguments, runs the device method ([`OperatorOn`], [`FunctionOn`], [`ProxOn`] on
//! [`GpuVec`]) and downloads the result.
//!
//! They are for checking and for occasional host calls, not for loops: every call moves its
//! vectors over the bus. A device error inside `apply_unchecked`/`adjoint_unchecked` (which
//! have no error channel) panics with the CUDA error; the other methods return it.

use super::{fatal, Gpu, GpuReal, GpuVec};
use crate::backend::{FunctionOn, OperatorOn, ProxOn};
use crate::error::Result;
use crate::func::{Function, Properties, Prox};
use crate::ops::LinearOperator;
use ndarray::{ArrayView1, ArrayViewMut1};

fn up<T: GpuReal>(gpu: &Gpu, x: ArrayView1<'_, T>) -> Result<GpuVec<T>> {
    match x.as_slice() {
        Some(s) => gpu.upload(s),
        None => gpu.upload(&x.to_vec()),
    }
}

fn down<T: GpuReal>(mut out: ArrayViewMut1<'_, T>, v: &GpuVec<T>) -> Result<()> {
    let h = v.to_vec()?;
    out.iter_mut().zip(h).for_each(|(o, e)| *o = e);
    Ok(())
}

/// A device operator as a host [`LinearOperator`].
pub struct OnDevice<O> {
    op: O,
    gpu: Gpu,
}

impl<O> OnDevice<O> {
    /// Wraps `op`, whose vectors live on `gpu`.
    pub fn new(gpu: &Gpu, op: O) -> Self {
        Self {
            op,
            gpu: gpu.clone(),
        }
    }
}

impl<T: GpuReal, O: OperatorOn<T, GpuVec<T>>> LinearOperator<T> for OnDevice<O> {
    fn shape(&self) -> (usize, usize) {
        self.op.shape_on()
    }
    fn name(&self) -> String {
        format!("device operator ({})", self.gpu.name())
    }
    fn apply_unchecked(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        let xd = fatal(up(&self.gpu, x));
        let mut o = fatal(self.gpu.zeros(self.shape().0));
        self.op.apply_on(&mut o, &xd);
        fatal(down(out, &o));
    }
    fn adjoint_unchecked(&self, out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        let yd = fatal(up(&self.gpu, y));
        let mut o = fatal(self.gpu.zeros(self.shape().1));
        self.op.adjoint_on(&mut o, &yd);
        fatal(down(out, &o));
    }
}

/// A device function (value, conjugate value, prox, conjugate prox) as a host [`Prox`], with
/// the structural properties given (those of the CPU type it implements).
pub struct ProxOnDevice<F> {
    f: F,
    gpu: Gpu,
    props: Properties,
}

impl<F> ProxOnDevice<F> {
    /// Wraps `f`, whose vectors live on `gpu`, with the properties `props`.
    pub fn new(gpu: &Gpu, f: F, props: Properties) -> Self {
        Self {
            f,
            gpu: gpu.clone(),
            props,
        }
    }
}

impl<T: GpuReal, F: FunctionOn<T, GpuVec<T>>> Function<T> for ProxOnDevice<F> {
    fn name(&self) -> String {
        format!("{} on the GPU", self.f.name_on())
    }
    fn dim(&self) -> Option<usize> {
        self.f.dim_on()
    }
    fn value(&self, x: ArrayView1<'_, T>) -> Result<T> {
        self.f.value_on(&up(&self.gpu, x)?)
    }
    fn properties(&self) -> Properties {
        self.props
    }
    fn conj_value(&self, y: ArrayView1<'_, T>) -> Result<T> {
        self.f.conj_value_on(&up(&self.gpu, y)?)
    }
}

impl<T: GpuReal, F: ProxOn<T, GpuVec<T>>> Prox<T> for ProxOnDevice<F> {
    fn prox_into(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>, gamma: T) -> Result<()> {
        crate::linalg::check_len("prox on the GPU", "out", x.len(), out.len())?;
        let xd = up(&self.gpu, x)?;
        let mut o = self.gpu.zeros(x.len())?;
        self.f.prox_on(&mut o, &xd, gamma)?;
        down(out, &o)
    }
    fn conj_prox_into(
        &self,
        out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
    ) -> Result<()> {
        crate::linalg::check_len("conjugate prox on the GPU", "out", x.len(), out.len())?;
        let xd = up(&self.gpu, x)?;
        let mut o = self.gpu.zeros(x.len())?;
        self.f.conj_prox_on(&mut o, &xd, gamma)?;
        down(out, &o)
    }
}

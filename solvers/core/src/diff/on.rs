//! Blocks, losses and the unrolled training pass on any backend's batches.
//!
//! [`Differentiable`] is the host interface (ndarray batches). [`DifferentiableOn<M>`] is the
//! same block on batches of type `M` ([`BatchMat`]): `Array2<T>` on the host — every
//! [`Differentiable`] block is one, through its `_ws` methods — and
//! [`GpuMat<T>`](crate::cuda::GpuMat) on a GPU (feature `cuda`). A device block is a host
//! block too (`DifferentiableOn<M>: Differentiable<M::T>`): its name, widths and parameter
//! count are the host block's, and the device pass must agree with the host pass to rounding.
//!
//! There is one unrolled training pass, [`value_and_grad_on`]: forward through the layers
//! keeping every iterate, the loss and its gradient, then the VJPs in reverse order.
//! [`Unrolled::value_and_grad_ws`](super::Unrolled::value_and_grad_ws) is this function on
//! `Array2<T>`; [`UnrolledOn`] runs it on any `M` (the unfolded trainer's GPU path).
//!
//! Parameters stay a flat host slice `&[T]` (one optimizer state, one checkpoint, the same on
//! every backend); a device block uploads what it needs of them and adds its parameter
//! gradient to the host slice. For DU-ISTA/DU-IHT that is one scalar per layer; a dense layer
//! moves its weights once per forward and once per backward pass.

use super::differentiable::{BatchLoss, Differentiable};
use crate::error::{Error, Result};
use crate::linalg::Real;
use ndarray::{Array2, ArrayView2};

/// A batch (rows are samples) on some backend.
pub trait BatchMat: Sized + Send + Sync {
    /// The scalar.
    type T: Real;
    /// A borrowed batch (`ArrayView2` on the host, `&GpuMat` on a device).
    type Ref<'a>: Copy
    where
        Self: 'a;
    /// Borrows it.
    fn view_of(&self) -> Self::Ref<'_>;
    /// `(rows, cols)` of a borrowed batch.
    fn dims_of(r: Self::Ref<'_>) -> (usize, usize);
    /// A zero batch of the given shape on the backend (device) of `like`.
    fn zeros_on(like: Self::Ref<'_>, rows: usize, cols: usize) -> Result<Self>;
    /// Its shape.
    fn dims(&self) -> (usize, usize) {
        Self::dims_of(self.view_of())
    }
    /// Overwrites it with `src` (same shape).
    fn assign_from(&mut self, src: Self::Ref<'_>) -> Result<()>;
    /// The index (row-major) of the first non-finite entry of a borrowed batch, if any.
    fn first_nonfinite_of(r: Self::Ref<'_>) -> Result<Option<usize>>;
    /// The index (row-major) of its first non-finite entry, if any.
    fn first_nonfinite(&self) -> Result<Option<usize>> {
        Self::first_nonfinite_of(self.view_of())
    }
    /// A copy on the host.
    fn to_host(r: Self::Ref<'_>) -> Result<Array2<Self::T>>;
    /// `a` copied to the backend (device) of `like`.
    fn from_host(like: Self::Ref<'_>, a: ArrayView2<'_, Self::T>) -> Result<Self>;
}

/// `slot` of shape `(rows, cols)` on the backend of `like`, reallocated only when missing or of
/// another shape.
pub fn ensure_on<'s, M: BatchMat>(
    slot: &'s mut Option<M>,
    like: M::Ref<'_>,
    rows: usize,
    cols: usize,
) -> Result<&'s mut M> {
    if slot.as_ref().is_none_or(|m| m.dims() != (rows, cols)) {
        *slot = Some(M::zeros_on(like, rows, cols)?);
    }
    Ok(slot.as_mut().expect("set above"))
}

impl<T: Real> BatchMat for Array2<T> {
    type T = T;
    type Ref<'a> = ArrayView2<'a, T>;
    fn view_of(&self) -> ArrayView2<'_, T> {
        self.view()
    }
    fn dims_of(r: ArrayView2<'_, T>) -> (usize, usize) {
        r.dim()
    }
    fn zeros_on(_like: ArrayView2<'_, T>, rows: usize, cols: usize) -> Result<Self> {
        Ok(Array2::zeros((rows, cols)))
    }
    fn assign_from(&mut self, src: ArrayView2<'_, T>) -> Result<()> {
        crate::linalg::check_batch("assign", "source", self.nrows(), self.ncols(), src)?;
        self.assign(&src);
        Ok(())
    }
    fn first_nonfinite_of(r: ArrayView2<'_, T>) -> Result<Option<usize>> {
        Ok(r.iter().position(|v| !v.is_finite()))
    }
    fn to_host(r: ArrayView2<'_, T>) -> Result<Array2<T>> {
        Ok(r.to_owned())
    }
    fn from_host(_like: ArrayView2<'_, T>, a: ArrayView2<'_, T>) -> Result<Self> {
        Ok(a.to_owned())
    }
}

/// What a block keeps between [`DifferentiableOn::forward_on`] and
/// [`DifferentiableOn::vjp_on`]: numbered buffers of the backend, reallocated only when their
/// shape changes, and (for host blocks without their own `_ws` methods) a
/// [`Saved`](super::Saved). [`Workspace<T>`](super::Workspace) is the host one.
pub struct WorkspaceOn<M> {
    /// The buffers (a block decides what each holds).
    pub bufs: Vec<M>,
    /// Saved intermediates of the allocating default path.
    pub saved: super::Saved,
}

impl<M> Default for WorkspaceOn<M> {
    fn default() -> Self {
        Self {
            bufs: Vec::new(),
            saved: None,
        }
    }
}

impl<M> std::fmt::Debug for WorkspaceOn<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("buffers", &self.bufs.len())
            .field("saved", &self.saved.is_some())
            .finish()
    }
}

impl<M: BatchMat> WorkspaceOn<M> {
    /// Makes `bufs[i]` of shape `shapes[i]` on the backend of `like` (allocating only buffers
    /// that are missing or of another shape) and returns the buffers.
    pub fn buffers_on(&mut self, like: M::Ref<'_>, shapes: &[(usize, usize)]) -> Result<&mut [M]> {
        for (i, &(r, c)) in shapes.iter().enumerate() {
            if i >= self.bufs.len() {
                self.bufs.push(M::zeros_on(like, r, c)?);
            } else if self.bufs[i].dims() != (r, c) {
                self.bufs[i] = M::zeros_on(like, r, c)?;
            }
        }
        Ok(&mut self.bufs[..shapes.len()])
    }
}

/// A [`Differentiable`] block on batches of type `M`. The metadata (name, widths, parameter
/// count) is the host block's; `forward_on`/`vjp_on` are the
/// [`forward_ws`](Differentiable::forward_ws)/[`vjp_ws`](Differentiable::vjp_ws) contract on
/// `M`: `out` is made B × n_out (B × n_in), `ws` carries what the backward pass needs, and
/// `vjp_on` *adds* the parameter gradient to the host slice `gp`.
pub trait DifferentiableOn<M: BatchMat>: Differentiable<M::T> {
    /// `out = f(p; x, c)`.
    fn forward_on(
        &self,
        p: &[M::T],
        x: M::Ref<'_>,
        c: M::Ref<'_>,
        ws: &mut WorkspaceOn<M>,
        out: &mut M,
    ) -> Result<()>;
    /// `out = (∂f/∂x)ᵀ ḡ` after `forward_on` with the same `x` and `ws`; adds
    /// `Σ_rows (∂f/∂p)ᵀ ḡ` to `gp`.
    #[allow(clippy::too_many_arguments)]
    fn vjp_on(
        &self,
        p: &[M::T],
        x: M::Ref<'_>,
        c: M::Ref<'_>,
        ws: &mut WorkspaceOn<M>,
        g: M::Ref<'_>,
        gp: &mut [M::T],
        out: &mut M,
    ) -> Result<()>;
}

/// Every host block is a block on host batches.
impl<T: Real, D: Differentiable<T> + ?Sized> DifferentiableOn<Array2<T>> for D {
    fn forward_on(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        ws: &mut WorkspaceOn<Array2<T>>,
        out: &mut Array2<T>,
    ) -> Result<()> {
        self.forward_ws(p, x, c, ws, out)
    }
    fn vjp_on(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        ws: &mut WorkspaceOn<Array2<T>>,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
        out: &mut Array2<T>,
    ) -> Result<()> {
        self.vjp_ws(p, x, c, ws, g, gp, out)
    }
}

/// A batch loss on batches of type `M`: the value, and its gradient with respect to the
/// output written into `out` (made the output's shape).
pub trait BatchLossOn<M: BatchMat>: Send + Sync {
    /// Name for reports.
    fn name_on(&self) -> String;
    /// `ℓ(x; c, target)`, and `out = ∂ℓ/∂x`.
    fn value_grad_on(
        &self,
        x: M::Ref<'_>,
        c: M::Ref<'_>,
        target: M::Ref<'_>,
        out: &mut M,
    ) -> Result<M::T>;
}

/// Every host loss is a loss on host batches.
impl<T: Real, L: BatchLoss<T> + ?Sized> BatchLossOn<Array2<T>> for L {
    fn name_on(&self) -> String {
        self.name()
    }
    fn value_grad_on(
        &self,
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        target: ArrayView2<'_, T>,
        out: &mut Array2<T>,
    ) -> Result<T> {
        if out.dim() != x.dim() {
            *out = Array2::zeros(x.dim());
        }
        self.value_grad_into(x, c, target, out.view_mut())
    }
}

/// What [`value_and_grad_on`] reuses from call to call: the iterates, each layer's
/// [`WorkspaceOn`], the two gradient buffers and the parameter gradient.
/// [`UnrolledWorkspace<T>`](super::UnrolledWorkspace) is the host one.
pub struct UnrolledWorkspaceOn<M: BatchMat> {
    pub(crate) xs: Vec<Option<M>>,
    pub(crate) layers: Vec<WorkspaceOn<M>>,
    pub(crate) g: Option<M>,
    pub(crate) g_next: Option<M>,
    pub(crate) gp: Vec<M::T>,
}

impl<M: BatchMat> Default for UnrolledWorkspaceOn<M> {
    fn default() -> Self {
        Self {
            xs: Vec::new(),
            layers: Vec::new(),
            g: None,
            g_next: None,
            gp: Vec::new(),
        }
    }
}

impl<M: BatchMat> std::fmt::Debug for UnrolledWorkspaceOn<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnrolledWorkspace")
            .field("states", &self.xs.len())
            .field("parameters", &self.gp.len())
            .finish()
    }
}

impl<M: BatchMat> UnrolledWorkspaceOn<M> {
    /// The state after `t` layers of the last call (`None` before any call reached it).
    pub fn state(&self, t: usize) -> Option<&M> {
        self.xs.get(t).and_then(|x| x.as_ref())
    }
}

/// `Err(Diverged)` naming layer `t` if `x` has a non-finite entry.
pub(crate) fn check_state<M: BatchMat, L: DifferentiableOn<M> + ?Sized>(
    t: usize,
    layer: &L,
    x: &M,
) -> Result<()> {
    match x.first_nonfinite()? {
        Some(i) => Err(Error::Diverged {
            method: format!("Unrolled layer {t} ({})", layer.name()),
            iteration: t + 1,
            detail: format!("non-finite state entry {i}"),
        }),
        None => Ok(()),
    }
}

/// The forward half of [`value_and_grad_on`]: `ws.xs[t]` = the state after `t` layers.
#[allow(clippy::too_many_arguments)]
fn forward_states<M, L>(
    layers: &[Box<L>],
    offsets: &[usize],
    ws: &mut UnrolledWorkspaceOn<M>,
    p: &[M::T],
    x0: M::Ref<'_>,
    c: M::Ref<'_>,
    depth: usize,
) -> Result<()>
where
    M: BatchMat,
    L: DifferentiableOn<M> + ?Sized,
{
    let (b, n0) = M::dims_of(x0);
    ws.xs.resize_with(depth + 1, || None);
    ws.layers.resize_with(depth, WorkspaceOn::default);
    ensure_on(&mut ws.xs[0], x0, b, n0)?.assign_from(x0)?;
    for t in 0..depth {
        let (done, rest) = ws.xs.split_at_mut(t + 1);
        let layer = &layers[t];
        let out = ensure_on(&mut rest[0], x0, b, layer.out_dim())?;
        let xt = done[t].as_ref().expect("made above").view_of();
        let pt = &p[offsets[t]..offsets[t + 1]];
        (**layer).forward_on(pt, xt, c, &mut ws.layers[t], out)?;
        check_state(t, layer.as_ref(), out)?;
    }
    Ok(())
}

/// The parameter offsets of blocks run one after the other (`offsets[t]..offsets[t + 1]` is
/// block `t`'s): `Err` if there are no blocks or a width does not match the next block's.
pub(crate) fn stack_offsets<T: Real, L: Differentiable<T> + ?Sized>(
    layers: &[Box<L>],
) -> Result<Vec<usize>> {
    if layers.is_empty() {
        return Err(Error::param(
            "layers",
            0,
            "an unrolled network needs at least one layer",
        ));
    }
    for (t, w) in layers.windows(2).enumerate() {
        if w[0].out_dim() != w[1].in_dim() {
            return Err(Error::shape(
                format!("Unrolled: layer {} → {}", t, t + 1),
                "state width",
                w[0].out_dim(),
                w[1].in_dim(),
            ));
        }
    }
    let mut offsets = vec![0];
    for l in layers {
        offsets.push(offsets.last().unwrap() + l.num_params());
    }
    Ok(offsets)
}

/// The input checks of an unrolled pass: `p` of length `offsets.last()` and finite, `depth` in
/// `1..=layers`, a non-empty finite `x₀` of width `in_dim`, and (if `ctx_dim > 0`) a finite
/// context of `x₀`'s rows and width `ctx_dim`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_stack_inputs<M: BatchMat>(
    offsets: &[usize],
    in_dim: usize,
    ctx_dim: usize,
    p: &[M::T],
    x0: M::Ref<'_>,
    c: M::Ref<'_>,
    depth: usize,
) -> Result<()> {
    let layers = offsets.len() - 1;
    crate::linalg::check_len("Unrolled", "parameters", offsets[layers], p.len())?;
    if let Some(i) = p.iter().position(|v| !v.as_f64().is_finite()) {
        return Err(Error::NonFinite {
            what: "Unrolled: parameters".into(),
            index: i,
            value: p[i].to_string(),
        });
    }
    if depth == 0 || depth > layers {
        return Err(Error::param(
            "depth",
            depth,
            format!("must lie in 1..={layers}"),
        ));
    }
    let b = M::dims_of(x0).0;
    if b == 0 {
        return Err(Error::param("batch", 0, "the batch is empty"));
    }
    let batch = |what: &str, r: M::Ref<'_>, cols: usize| -> Result<()> {
        let (rr, cc) = M::dims_of(r);
        if (rr, cc) != (b, cols) {
            return Err(Error::shape(
                "Unrolled",
                what,
                format!("{b} × {cols}"),
                format!("{rr} × {cc}"),
            ));
        }
        match M::first_nonfinite_of(r)? {
            Some(i) => Err(Error::NonFinite {
                what: format!("Unrolled: {what}"),
                index: i,
                value: M::to_host(r)?
                    .iter()
                    .nth(i)
                    .map_or_else(String::new, |v| v.to_string()),
            }),
            None => Ok(()),
        }
    };
    batch("x₀", x0, in_dim)?;
    if ctx_dim > 0 {
        batch("context", c, ctx_dim)?;
    }
    Ok(())
}

/// The unrolled training pass on any backend: runs the first `depth` of `layers` (layer `t`
/// reads `p[offsets[t]..offsets[t + 1]]`) from `x0` with context `c`, evaluates `loss` against
/// `target`, pulls its gradient back through the layers and returns the loss and the
/// parameter gradient (a slice of `ws`; the entries of layers ≥ `depth` are zero). Stops with
/// `Diverged` at the first layer whose output is not finite. The caller checks the shapes of
/// `p`, `x0` and `c` (see [`Unrolled::value_and_grad_ws`](super::Unrolled::value_and_grad_ws)).
#[allow(clippy::too_many_arguments)]
pub fn value_and_grad_on<'w, M, L, Lo>(
    layers: &[Box<L>],
    offsets: &[usize],
    ws: &'w mut UnrolledWorkspaceOn<M>,
    p: &[M::T],
    x0: M::Ref<'_>,
    c: M::Ref<'_>,
    depth: usize,
    loss: &Lo,
    target: M::Ref<'_>,
) -> Result<(M::T, &'w [M::T])>
where
    M: BatchMat,
    L: DifferentiableOn<M> + ?Sized,
    Lo: BatchLossOn<M> + ?Sized,
{
    let b = M::dims_of(x0).0;
    forward_states(layers, offsets, ws, p, x0, c, depth)?;
    let last = ws.xs[depth].as_ref().expect("made above");
    let (_, n_last) = last.dims();
    let g = ensure_on(&mut ws.g, x0, b, n_last)?;
    let v = loss.value_grad_on(last.view_of(), c, target, g)?;
    ws.gp.clear();
    ws.gp.resize(*offsets.last().unwrap_or(&0), M::T::c(0.0));
    for t in (0..depth).rev() {
        let r = offsets[t]..offsets[t + 1];
        let layer = &layers[t];
        ensure_on(&mut ws.g_next, x0, b, layer.in_dim())?;
        let (g, g_next) = (
            ws.g.as_ref().expect("made above"),
            ws.g_next.as_mut().expect("made above"),
        );
        (**layer).vjp_on(
            &p[r.clone()],
            ws.xs[t].as_ref().expect("made above").view_of(),
            c,
            &mut ws.layers[t],
            g.view_of(),
            &mut ws.gp[r],
            g_next,
        )?;
        std::mem::swap(&mut ws.g, &mut ws.g_next);
    }
    Ok((v, &ws.gp))
}

/// K blocks on batches of type `M` run one after the other with one flat parameter vector
/// (the backend-generic [`Unrolled`](super::Unrolled)): the unfolded trainer builds one on the
/// GPU from a model's layers.
pub struct UnrolledOn<M: BatchMat> {
    layers: Vec<Box<dyn DifferentiableOn<M>>>,
    offsets: Vec<usize>,
}

impl<M: BatchMat> std::fmt::Debug for UnrolledOn<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnrolledOn")
            .field(
                "layers",
                &self.layers.iter().map(|l| l.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<M: BatchMat> UnrolledOn<M> {
    /// Stacks the layers; `Err` if a width does not match the next layer's or there are none.
    pub fn new(layers: Vec<Box<dyn DifferentiableOn<M>>>) -> Result<Self> {
        let offsets = stack_offsets(&layers)?;
        Ok(Self { layers, offsets })
    }

    /// Number of layers.
    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    /// Total number of parameters.
    pub fn num_params(&self) -> usize {
        *self.offsets.last().unwrap()
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.layers[0].in_dim()
    }

    /// Context width (the largest of the layers').
    pub fn ctx_dim(&self) -> usize {
        self.layers.iter().map(|l| l.ctx_dim()).max().unwrap_or(0)
    }

    fn check(&self, p: &[M::T], x0: M::Ref<'_>, c: M::Ref<'_>, depth: usize) -> Result<()> {
        check_stack_inputs::<M>(
            &self.offsets,
            self.in_dim(),
            self.ctx_dim(),
            p,
            x0,
            c,
            depth,
        )
    }

    /// `(ℓ(x_depth), ∂ℓ/∂p)` by [`value_and_grad_on`].
    #[allow(clippy::too_many_arguments)]
    pub fn value_and_grad<'w>(
        &self,
        ws: &'w mut UnrolledWorkspaceOn<M>,
        p: &[M::T],
        x0: M::Ref<'_>,
        c: M::Ref<'_>,
        depth: usize,
        loss: &dyn BatchLossOn<M>,
        target: M::Ref<'_>,
    ) -> Result<(M::T, &'w [M::T])> {
        self.check(p, x0, c, depth)?;
        value_and_grad_on(
            &self.layers,
            &self.offsets,
            ws,
            p,
            x0,
            c,
            depth,
            loss,
            target,
        )
    }

    /// The state after `depth` layers (forward pass only, with the workspace's buffers).
    pub fn forward<'w>(
        &self,
        ws: &'w mut UnrolledWorkspaceOn<M>,
        p: &[M::T],
        x0: M::Ref<'_>,
        c: M::Ref<'_>,
        depth: usize,
    ) -> Result<&'w M> {
        self.check(p, x0, c, depth)?;
        forward_states(&self.layers, &self.offsets, ws, p, x0, c, depth)?;
        Ok(ws.xs[depth].as_ref().expect("made above"))
    }
}

/// The result of [`check_vjp_on`]: the largest relative errors of the VJP against central
/// finite differences of the forward pass, for the state and for the parameters.
#[derive(Clone, Copy, Debug)]
pub struct VjpCheckOn {
    /// `max |⟨x̄, v⟩ − FD| / (|FD| + 1e-12)` over the probe directions.
    pub state: f64,
    /// The same for the parameter gradient (0 for a block without parameters).
    pub params: f64,
}

/// Checks a block's VJP on backend `M` against central differences of its forward pass on the
/// same backend (step `h`, `probes` random directions, seeded): for a random cotangent `ḡ`,
/// `⟨x̄, v⟩ ≈ (⟨ḡ, f(x + hv)⟩ − ⟨ḡ, f(x − hv)⟩)/2h` and likewise for the parameters. The inputs
/// are given on the host and copied to the backend of `like`; the block's own `ws` path
/// is used (forward then VJP), so a device block is checked on device buffers.
#[allow(clippy::too_many_arguments)]
pub fn check_vjp_on<M: BatchMat, B: DifferentiableOn<M> + ?Sized>(
    block: &B,
    like: M::Ref<'_>,
    p: &[M::T],
    x: ArrayView2<'_, M::T>,
    c: ArrayView2<'_, M::T>,
    h: f64,
    probes: usize,
    seed: u64,
) -> Result<VjpCheckOn> {
    use rand::{Rng, SeedableRng};
    type Host<T> = Array2<T>;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let t = |v: f64| M::T::c(v);
    let b = x.nrows();
    let gbar: Host<M::T> =
        Array2::from_shape_fn((b, block.out_dim()), |_| t(rng.random_range(-1.0..1.0)));
    let xd = M::from_host(like, x)?;
    let cd = M::from_host(like, c)?;
    let gd = M::from_host(like, gbar.view())?;
    // ⟨ḡ, f(p; x)⟩ on the backend, read on the host.
    let eval = |pp: &[M::T], xx: ArrayView2<'_, M::T>| -> Result<f64> {
        let xs = M::from_host(like, xx)?;
        let mut ws = WorkspaceOn::default();
        let mut out = M::zeros_on(like, b, block.out_dim())?;
        block.forward_on(pp, xs.view_of(), cd.view_of(), &mut ws, &mut out)?;
        let y = M::to_host(out.view_of())?;
        Ok(y.iter()
            .zip(gbar.iter())
            .map(|(a, g)| a.as_f64() * g.as_f64())
            .sum())
    };
    let mut ws = WorkspaceOn::default();
    let mut out = M::zeros_on(like, b, block.out_dim())?;
    block.forward_on(p, xd.view_of(), cd.view_of(), &mut ws, &mut out)?;
    let mut gp = vec![M::T::c(0.0); p.len()];
    let mut gx = M::zeros_on(like, b, block.in_dim())?;
    block.vjp_on(
        p,
        xd.view_of(),
        cd.view_of(),
        &mut ws,
        gd.view_of(),
        &mut gp,
        &mut gx,
    )?;
    let gx = M::to_host(gx.view_of())?;
    let rel = |a: f64, fd: f64| (a - fd).abs() / (fd.abs() + 1e-12);
    let mut res = VjpCheckOn {
        state: 0.0,
        params: 0.0,
    };
    for _ in 0..probes {
        let v: Host<M::T> = Array2::from_shape_fn(x.dim(), |_| t(rng.random_range(-1.0..1.0)));
        let xp = &x + &v.mapv(|e| e * t(h));
        let xm = &x - &v.mapv(|e| e * t(h));
        let fd = (eval(p, xp.view())? - eval(p, xm.view())?) / (2.0 * h);
        let an: f64 = gx
            .iter()
            .zip(v.iter())
            .map(|(a, b)| a.as_f64() * b.as_f64())
            .sum();
        res.state = res.state.max(rel(an, fd));
        if !p.is_empty() {
            let w: Vec<M::T> = (0..p.len())
                .map(|_| t(rng.random_range(-1.0..1.0)))
                .collect();
            let pp: Vec<M::T> = p.iter().zip(&w).map(|(&a, &d)| a + d * t(h)).collect();
            let pm: Vec<M::T> = p.iter().zip(&w).map(|(&a, &d)| a - d * t(h)).collect();
            let fd = (eval(&pp, x)? - eval(&pm, x)?) / (2.0 * h);
            let an: f64 = gp
                .iter()
                .zip(&w)
                .map(|(a, b)| a.as_f64() * b.as_f64())
                .sum();
            res.params = res.params.max(rel(an, fd));
        }
    }
    Ok(res)
}

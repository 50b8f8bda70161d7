//! The [`Unrolled`] composite, which runs K layers, keeps the iterates the backward pass needs
//! and returns the gradient of a loss with respect to every layer's parameters, and [`Chain`].
//! The conventions are those of [`Differentiable`].

use super::differentiable::{BatchLoss, Differentiable, Saved};
use crate::error::Result;
use crate::linalg::Real;
use ndarray::{Array2, ArrayView2};

/// The iterates of one forward pass: `xs[t]` is the state after `t` layers (`xs[0] = x₀`).
pub struct Trajectory<T = f64> {
    /// States after 0, 1, …, K layers.
    pub xs: Vec<Array2<T>>,
    /// What each layer saved for its backward pass (empty after [`Unrolled::forward`]).
    pub saved: Vec<Saved>,
}

impl<T> std::fmt::Debug for Trajectory<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trajectory")
            .field("states", &self.xs.len())
            .field("saved", &self.saved.iter().filter(|s| s.is_some()).count())
            .finish()
    }
}

impl<T> Trajectory<T> {
    /// The final state.
    pub fn last(&self) -> &Array2<T> {
        self.xs.last().expect("a trajectory holds at least x₀")
    }
}

/// K layers run one after the other, `x_{t+1} = f_t(p_t; x_t, c)`, with one flat parameter
/// vector `p = (p_0, …, p_{K−1})`.
pub struct Unrolled<T: Real = f64> {
    layers: Vec<Box<dyn Differentiable<T>>>,
    offsets: Vec<usize>,
}

impl<T: Real> std::fmt::Debug for Unrolled<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unrolled")
            .field(
                "layers",
                &self.layers.iter().map(|l| l.name()).collect::<Vec<_>>(),
            )
            .field("num_params", &self.num_params())
            .finish()
    }
}

impl<T: Real> Unrolled<T> {
    /// Stacks the layers; `Err` if an output width does not match the next input width or there
    /// are no layers. The layers share one context whose width is the largest of theirs: a
    /// layer may read only its leading columns (e.g. a dropout rate in column k of a context
    /// that also carries other hyperparameters); each layer checks at run time that the
    /// context is wide enough.
    pub fn new(layers: Vec<Box<dyn Differentiable<T>>>) -> Result<Self> {
        let offsets = super::on::stack_offsets(&layers)?;
        Ok(Self { layers, offsets })
    }

    /// Number of layers K.
    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    /// The layers.
    pub fn layers(&self) -> &[Box<dyn Differentiable<T>>] {
        &self.layers
    }

    /// Total number of parameters.
    pub fn num_params(&self) -> usize {
        *self.offsets.last().unwrap()
    }

    /// The parameter range of layer `t`.
    pub fn param_range(&self, t: usize) -> std::ops::Range<usize> {
        self.offsets[t]..self.offsets[t + 1]
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.layers[0].in_dim()
    }

    /// Context width.
    pub fn ctx_dim(&self) -> usize {
        self.layers.iter().map(|l| l.ctx_dim()).max().unwrap_or(0)
    }

    fn check_inputs(
        &self,
        p: &[T],
        x0: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        depth: usize,
    ) -> Result<()> {
        super::on::check_stack_inputs::<Array2<T>>(
            &self.offsets,
            self.in_dim(),
            self.ctx_dim(),
            p,
            x0,
            c,
            depth,
        )
    }

    /// `Err(Diverged)` if the state after layer `t` has a non-finite entry.
    fn check_state(&self, t: usize, x: &Array2<T>) -> Result<()> {
        super::on::check_state(t, self.layers[t].as_ref(), x)
    }

    /// Runs the first `depth` layers and keeps every iterate.
    pub fn forward(
        &self,
        p: &[T],
        x0: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        depth: usize,
    ) -> Result<Trajectory<T>> {
        self.run(p, x0, c, depth, false)
    }

    /// [`Unrolled::forward`] that also keeps each layer's saved intermediates, for a
    /// [`Unrolled::backward`] without recomputation (more memory).
    pub fn forward_for_backward(
        &self,
        p: &[T],
        x0: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        depth: usize,
    ) -> Result<Trajectory<T>> {
        self.run(p, x0, c, depth, true)
    }

    fn run(
        &self,
        p: &[T],
        x0: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        depth: usize,
        save: bool,
    ) -> Result<Trajectory<T>> {
        self.check_inputs(p, x0, c, depth)?;
        let mut xs = Vec::with_capacity(depth + 1);
        let mut saved = Vec::new();
        xs.push(x0.to_owned());
        for t in 0..depth {
            let pt = &p[self.param_range(t)];
            let next = if save {
                let (next, sv) = self.layers[t].forward_save(pt, xs[t].view(), c)?;
                saved.push(sv);
                next
            } else {
                self.layers[t].forward(pt, xs[t].view(), c)?
            };
            self.check_state(t, &next)?;
            xs.push(next);
        }
        Ok(Trajectory { xs, saved })
    }

    /// Pulls `ḡ = ∂ℓ/∂x_T` back through the layers of `traj` (T = `traj.xs.len() − 1`) and
    /// returns `(∂ℓ/∂p, ∂ℓ/∂x₀)`; the entries of layers ≥ T are zero.
    pub fn backward(
        &self,
        p: &[T],
        traj: &Trajectory<T>,
        c: ArrayView2<'_, T>,
        g: Array2<T>,
    ) -> Result<(Vec<T>, Array2<T>)> {
        let depth = traj.xs.len() - 1;
        let mut gp = vec![T::zero(); self.num_params()];
        let mut g = g;
        for t in (0..depth).rev() {
            let r = self.param_range(t);
            let (x, pt) = (traj.xs[t].view(), &p[r.clone()]);
            g = match traj.saved.get(t) {
                Some(sv) => self.layers[t].vjp_saved(pt, x, c, sv, g.view(), &mut gp[r])?,
                None => self.layers[t].vjp(pt, x, c, g.view(), &mut gp[r])?,
            };
        }
        Ok((gp, g))
    }

    /// `(ℓ(x_depth), ∂ℓ/∂p)` for the loss evaluated after `depth` layers.
    pub fn value_and_grad(
        &self,
        p: &[T],
        x0: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        depth: usize,
        loss: &dyn BatchLoss<T>,
        target: ArrayView2<'_, T>,
    ) -> Result<(T, Vec<T>)> {
        let traj = self.forward_for_backward(p, x0, c, depth)?;
        let (v, g) = loss.value_grad(traj.last().view(), c, target)?;
        let (gp, _) = self.backward(p, &traj, c, g)?;
        Ok((v, gp))
    }
}

/// What [`Unrolled::value_and_grad_ws`] reuses from call to call: the iterates, each layer's
/// [`Workspace`](super::Workspace), the two gradient buffers and the parameter gradient. Create it once
/// (`UnrolledWorkspace::default()`) and pass it to every call; after the first call with a
/// given batch shape, a network whose layers implement the `_ws` methods allocates nothing.
pub type UnrolledWorkspace<T> = super::on::UnrolledWorkspaceOn<Array2<T>>;

impl<T: Real> Unrolled<T> {
    /// [`Unrolled::value_and_grad`] through the layers' `_ws` methods, with every buffer in
    /// `ws`: returns the loss, and the parameter gradient as a slice of `ws`. This is the
    /// backend-generic pass [`value_and_grad_on`](super::on::value_and_grad_on) on host
    /// batches (the GPU trainer runs the same function on device batches).
    #[allow(clippy::too_many_arguments)]
    pub fn value_and_grad_ws<'w>(
        &self,
        ws: &'w mut UnrolledWorkspace<T>,
        p: &[T],
        x0: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        depth: usize,
        loss: &dyn BatchLoss<T>,
        target: ArrayView2<'_, T>,
    ) -> Result<(T, &'w [T])> {
        self.check_inputs(p, x0, c, depth)?;
        super::on::value_and_grad_on(
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
}

/// A [`Differentiable`] made of blocks applied in sequence, with their parameters concatenated.
/// Its plain VJP recomputes the intermediate states from the input (one extra forward pass);
/// `forward_save` keeps them.
pub struct Chain<T: Real = f64> {
    blocks: Vec<Box<dyn Differentiable<T>>>,
}

impl<T: Real> Chain<T> {
    /// `Err` on mismatched widths or an empty list.
    pub fn new(blocks: Vec<Box<dyn Differentiable<T>>>) -> Result<Self> {
        Unrolled::new(blocks).map(|u| Self { blocks: u.layers })
    }

    fn ranges(&self) -> Vec<std::ops::Range<usize>> {
        let mut o = 0;
        self.blocks
            .iter()
            .map(|b| {
                let r = o..o + b.num_params();
                o = r.end;
                r
            })
            .collect()
    }
}

impl<T: Real> Differentiable<T> for Chain<T> {
    fn name(&self) -> String {
        self.blocks
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(" ∘ ")
    }
    fn in_dim(&self) -> usize {
        self.blocks[0].in_dim()
    }
    fn out_dim(&self) -> usize {
        self.blocks.last().unwrap().out_dim()
    }
    fn ctx_dim(&self) -> usize {
        self.blocks.iter().map(|b| b.ctx_dim()).max().unwrap_or(0)
    }
    fn num_params(&self) -> usize {
        self.blocks.iter().map(|b| b.num_params()).sum()
    }
    fn forward(&self, p: &[T], x: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        let mut cur = x.to_owned();
        for (b, r) in self.blocks.iter().zip(self.ranges()) {
            cur = b.forward(&p[r], cur.view(), c)?;
        }
        Ok(cur)
    }
    fn vjp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        let (_, saved) = self.forward_save(p, x, c)?;
        self.vjp_saved(p, x, c, &saved, g, gp)
    }
    fn forward_save(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
    ) -> Result<(Array2<T>, Saved)> {
        // Keeps the input of every block after the first, and what each block saved.
        let mut inputs: Vec<Array2<T>> = Vec::with_capacity(self.blocks.len() - 1);
        let mut saves: Vec<Saved> = Vec::with_capacity(self.blocks.len());
        let mut cur: Option<Array2<T>> = None;
        for (b, r) in self.blocks.iter().zip(self.ranges()) {
            let input = cur.as_ref().map_or(x, |a| a.view());
            let (next, sv) = b.forward_save(&p[r], input, c)?;
            saves.push(sv);
            if let Some(prev) = cur.replace(next) {
                inputs.push(prev);
            }
        }
        let out = cur.expect("a chain has at least one block");
        Ok((out, Some(Box::new((inputs, saves)))))
    }
    fn vjp_saved(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        saved: &Saved,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        let Some((inputs, saves)) = saved
            .as_ref()
            .and_then(|s| s.downcast_ref::<(Vec<Array2<T>>, Vec<Saved>)>())
        else {
            return self.vjp(p, x, c, g, gp);
        };
        let ranges = self.ranges();
        let mut g = g.to_owned();
        for (i, (b, r)) in self.blocks.iter().zip(&ranges).enumerate().rev() {
            let input = if i == 0 { x } else { inputs[i - 1].view() };
            g = b.vjp_saved(
                &p[r.clone()],
                input,
                c,
                &saves[i],
                g.view(),
                &mut gp[r.clone()],
            )?;
        }
        Ok(g)
    }
    /// The sum of every block's context VJP at the cotangent reaching it.
    fn vjp_ctx(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        let ranges = self.ranges();
        let mut inputs = vec![x.to_owned()];
        for (b, r) in self.blocks.iter().zip(&ranges).take(self.blocks.len() - 1) {
            let next = b.forward(&p[r.clone()], inputs.last().unwrap().view(), c)?;
            inputs.push(next);
        }
        let mut out = Array2::zeros((x.nrows(), c.ncols()));
        let mut g = g.to_owned();
        let mut scratch = vec![T::zero(); p.len()];
        for (i, (b, r)) in self.blocks.iter().zip(&ranges).enumerate().rev() {
            out += &b.vjp_ctx(&p[r.clone()], inputs[i].view(), c, g.view())?;
            if i > 0 {
                g = b.vjp(
                    &p[r.clone()],
                    inputs[i].view(),
                    c,
                    g.view(),
                    &mut scratch[r.clone()],
                )?;
            }
        }
        Ok(out)
    }
    /// The blocks' JVPs in turn (chain rule, forward mode).
    fn jvp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        let mut cur = x.to_owned();
        let mut dv = v.to_owned();
        let last = self.blocks.len() - 1;
        for (i, (b, r)) in self.blocks.iter().zip(self.ranges()).enumerate() {
            dv = b.jvp(&p[r.clone()], cur.view(), c, dv.view())?;
            if i < last {
                cur = b.forward(&p[r], cur.view(), c)?;
            }
        }
        Ok(dv)
    }
}

/// Finite-difference check of a block's VJP in a random direction, for the state and for the
/// parameters: returns the larger of the two relative errors
/// `|⟨ḡ, (f(z+hv) − f(z−hv))/2h⟩ − ⟨vjp(ḡ), v⟩| / max(1, |⟨vjp(ḡ), v⟩|)`.
///
/// Nonsmooth blocks (thresholds) are differentiable almost everywhere; keep `h` small (1e-6)
/// so that no entry crosses a kink.
pub fn check_vjp<T: Real>(
    block: &dyn Differentiable<T>,
    p: &[T],
    x: ArrayView2<'_, T>,
    c: ArrayView2<'_, T>,
    seed: u64,
    h: T,
) -> Result<T> {
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut randn = |r: usize, cols: usize| {
        Array2::from_shape_fn((r, cols), |_| T::c(StandardNormal.sample(&mut rng)))
    };
    let b = x.nrows();
    let g: Array2<T> = randn(b, block.out_dim());
    let vx: Array2<T> = randn(b, block.in_dim());
    let vp: Vec<T> = randn(1, p.len()).into_raw_vec_and_offset().0;
    let mut gp = vec![T::zero(); p.len()];
    let gx = block.vjp(p, x, c, g.view(), &mut gp)?;
    let inner = |a: &Array2<T>, b: &Array2<T>| (a * b).sum();
    // State direction.
    let fp = block.forward(p, (&x + &(&vx * h)).view(), c)?;
    let fm = block.forward(p, (&x - &(&vx * h)).view(), c)?;
    let fd = inner(&g, &((fp - fm) / (T::c(2.0) * h)));
    let an = inner(&gx, &vx);
    let mut err = (fd - an).abs() / an.abs().max(T::one());
    if !p.is_empty() {
        let pp: Vec<T> = p.iter().zip(&vp).map(|(&a, &v)| a + h * v).collect();
        let pm: Vec<T> = p.iter().zip(&vp).map(|(&a, &v)| a - h * v).collect();
        let fd = inner(
            &g,
            &((block.forward(&pp, x, c)? - block.forward(&pm, x, c)?) / (T::c(2.0) * h)),
        );
        let an: T = gp.iter().zip(&vp).map(|(&a, &b)| a * b).sum();
        err = err.max((fd - an).abs() / an.abs().max(T::one()));
    }
    Ok(err)
}

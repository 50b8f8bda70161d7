//! The structured best-response dense layer.
//!
//! Per example, with `λ` the example's (perturbed, unconstrained) hyperparameters read from
//! the context:
//!
//! ```text
//! [s_w; s_b] = V λ,        out = W x + b + s_w ⊙ (W_h x) + s_b ⊙ b_h
//! ```
//!
//! i.e. the effective weights `W + diag(s_w) W_h` and bias `b + s_b ⊙ b_h` are the elementary
//! ones plus a correction of each output unit gated by a linear function of λ (MacKay et al.
//! 2019, §4.2; `hyperlinear.py` of the reference code). Parameters, in order: `W`
//! (out × in, row-major), `b` (out), `W_h` (out × in), `b_h` (out), `V` (2·out × h, row-major;
//! out × h without biases). `W`, `b`, `W_h`, `b_h` start as PyTorch's `nn.Linear`
//! (`U(±1/√in)`), `V` at zero (pomonam's choice), so the untrained layer is a plain dense
//! layer. The reference code's extra scalar on the elementary output is left out.
//!
//! Derivatives, with `Z_h = X W_hᵀ`, `S = C Vᵀ` and `Ḡ` the output gradient (B × out):
//! `X̄ = Ḡ W + (Ḡ ⊙ S_w) W_h`, `W̄ = Ḡᵀ X`, `b̄ = Σ Ḡ`, `W̄_h = (Ḡ ⊙ S_w)ᵀ X`,
//! `b̄_h = Σ Ḡ ⊙ S_b`, `S̄ = [Ḡ ⊙ Z_h, Ḡ ⊙ b_h]`, `V̄ = S̄ᵀ C`, `C̄ = S̄ V` (the context VJP, the
//! path of the hypergradient), JVP `Ẋ Wᵀ + S_w ⊙ (Ẋ W_hᵀ)`, context JVP
//! `S_w(Ċ) ⊙ Z_h + S_b(Ċ) ⊙ b_h` ([`StnDense::jvp_ctx`]).

use hyperprox_core::diff::Differentiable;
use hyperprox_core::error::Result;
use hyperprox_core::linalg::{check_len, Real};
use hyperprox_core::nn::{Dense, Layer, ParamGroupSpec};
use ndarray::{s, Array2, ArrayView2, Axis, Zip};
use rand::rngs::StdRng;

/// The STN dense layer (see the module docs).
#[derive(Clone, Debug)]
pub struct StnDense {
    n_in: usize,
    n_out: usize,
    n_hyper: usize,
    /// Width of the context; the hyperparameters are its first `n_hyper` columns.
    ctx: usize,
    bias: bool,
    /// The elementary and the hyper part, each a plain dense layer.
    dense: Dense,
}

impl StnDense {
    /// `n_in → n_out`, reading `n_hyper` hyperparameters from the context, with biases.
    pub fn new(n_in: usize, n_out: usize, n_hyper: usize) -> Self {
        Self {
            n_in,
            n_out,
            n_hyper,
            ctx: n_hyper,
            bias: true,
            dense: Dense::new(n_in, n_out),
        }
    }

    /// Reads the hyperparameters from the first `n_hyper` columns of a context of `width`
    /// columns (the others carry what further blocks read, e.g. dropout rates; their context
    /// gradient is zero). `width` below `n_hyper` is raised to it.
    pub fn with_context_width(mut self, width: usize) -> Self {
        self.ctx = width.max(self.n_hyper);
        self
    }

    /// Without biases (`b`, `b_h` and the rows of `V` that gate them).
    pub fn without_bias(mut self) -> Self {
        self.bias = false;
        self.dense = Dense::new(self.n_in, self.n_out).without_bias();
        self
    }

    /// Parameters of the elementary part (`W`, `b`); the rest (`W_h`, `b_h`, `V`) are the
    /// hypernetwork's.
    pub fn elementary_len(&self) -> usize {
        self.part()
    }

    /// Parameters of one dense part (`W` and `b`).
    fn part(&self) -> usize {
        self.n_out * self.n_in + if self.bias { self.n_out } else { 0 }
    }

    /// Rows of `V`: the number of gates.
    fn gates(&self) -> usize {
        if self.bias {
            2 * self.n_out
        } else {
            self.n_out
        }
    }

    /// `(elementary, hyper, V)` slices of the parameters.
    fn split<'a, T>(&self, p: &'a [T]) -> (&'a [T], &'a [T], &'a [T]) {
        let k = self.part();
        (&p[..k], &p[k..2 * k], &p[2 * k..])
    }

    fn v<'a, T: Real>(&self, p: &'a [T]) -> ArrayView2<'a, T> {
        ArrayView2::from_shape((self.gates(), self.n_hyper), self.split(p).2).expect("sized")
    }

    fn check<T: Real>(&self, p: &[T], x: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Result<()> {
        let np = Differentiable::<T>::num_params(self);
        check_len("StnDense", "parameters", np, p.len())?;
        check_len("StnDense", "input width", self.n_in, x.ncols())?;
        check_len("StnDense", "context width", self.ctx, c.ncols())?;
        check_len("StnDense", "context rows", x.nrows(), c.nrows())
    }

    /// The effective weights `W + diag(s_w) W_h` at one hyperparameter vector `u`.
    pub fn effective_weight<T: Real>(&self, p: &[T], u: &[T]) -> Result<Array2<T>> {
        check_len(
            "StnDense",
            "parameters",
            Differentiable::<T>::num_params(self),
            p.len(),
        )?;
        check_len("StnDense", "hyperparameters", self.n_hyper, u.len())?;
        let (e, h, _) = self.split(p);
        let sw = self.v(p).dot(&ndarray::ArrayView1::from(u));
        let k = self.n_out * self.n_in;
        let w = ArrayView2::from_shape((self.n_out, self.n_in), &e[..k]).expect("sized");
        let wh = ArrayView2::from_shape((self.n_out, self.n_in), &h[..k]).expect("sized");
        let mut out = w.to_owned();
        Zip::from(out.rows_mut())
            .and(wh.rows())
            .and(&sw.slice(s![..self.n_out]))
            .for_each(|mut o, r, &g| o.scaled_add(g, &r));
        Ok(out)
    }

    /// Given `Ḡ` (out × in), the gradient of a function of [`StnDense::effective_weight`]:
    /// adds the parameter gradient to `gp` and returns the gradient in `u`.
    pub fn effective_weight_vjp<T: Real>(
        &self,
        p: &[T],
        u: &[T],
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Vec<T>> {
        let np = Differentiable::<T>::num_params(self);
        check_len("StnDense", "parameters", np, p.len())?;
        check_len("StnDense", "parameter gradient", np, gp.len())?;
        check_len("StnDense", "hyperparameters", self.n_hyper, u.len())?;
        check_len("StnDense", "weight gradient rows", self.n_out, g.nrows())?;
        check_len("StnDense", "weight gradient columns", self.n_in, g.ncols())?;
        let (k, part, gates) = (self.n_out * self.n_in, self.part(), self.gates());
        let sw = self.v(p).dot(&ndarray::ArrayView1::from(u));
        let wh =
            ArrayView2::from_shape((self.n_out, self.n_in), &p[part..part + k]).expect("sized");
        // s̄_w[i] = ⟨Ḡ_i, W_h,i⟩.
        let sbar: Vec<T> = g
            .rows()
            .into_iter()
            .zip(wh.rows())
            .map(|(a, b)| a.dot(&b))
            .collect();
        for (gv, &gw) in gp[..k].iter_mut().zip(g.iter()) {
            *gv += gw;
        }
        for (i, gr) in g.rows().into_iter().enumerate() {
            for (j, &gw) in gr.iter().enumerate() {
                gp[part + i * self.n_in + j] += sw[i] * gw;
            }
        }
        let vstart = 2 * part;
        let mut ubar = vec![T::zero(); self.n_hyper];
        let v = self.v(p);
        for (i, &sb) in sbar.iter().enumerate() {
            for j in 0..self.n_hyper {
                gp[vstart + i * self.n_hyper + j] += sb * u[j];
                ubar[j] += sb * v[[i, j]];
            }
        }
        debug_assert!(gates >= self.n_out);
        Ok(ubar)
    }

    /// The weight decay of the effective weights, per example: with the example's
    /// hyperparameters in the rows of `c` (first `n_hyper` columns) and its decay `wd_i`,
    /// `P = (1/B) Σ_i ½ wd_i ‖W + diag(s_w,i) W_h‖²`. Adds `∂P/∂params` to `gp` and returns
    /// `(P, ∂P/∂c)` (B × context width). Evaluated row by row of `W` through
    /// `‖W_r‖², ⟨W_r, W_h,r⟩, ‖W_h,r‖²`, so it costs `O(out·(in + B))`, not `O(B·out·in)`.
    pub fn decay_penalty<T: Real>(
        &self,
        p: &[T],
        c: ArrayView2<'_, T>,
        wd: &[T],
        gp: &mut [T],
    ) -> Result<(T, Array2<T>)> {
        let np = Differentiable::<T>::num_params(self);
        check_len("StnDense", "parameters", np, p.len())?;
        check_len("StnDense", "parameter gradient", np, gp.len())?;
        check_len("StnDense", "context width", self.ctx, c.ncols())?;
        check_len(
            "StnDense",
            "decays (one per context row)",
            c.nrows(),
            wd.len(),
        )?;
        let (o, n, part) = (self.n_out, self.n_in, self.part());
        let k = o * n;
        let b = T::c(c.nrows().max(1) as f64);
        let w = ArrayView2::from_shape((o, n), &p[..k]).expect("sized");
        let wh = ArrayView2::from_shape((o, n), &p[part..part + k]).expect("sized");
        let u = c.slice(s![.., ..self.n_hyper]);
        let sw = u.dot(&self.v(p).slice(s![..o, ..]).t()); // B × out
        let (mut a, mut bb, mut cc) = (vec![T::zero(); o], vec![T::zero(); o], vec![T::zero(); o]);
        for r in 0..o {
            a[r] = w.row(r).dot(&w.row(r));
            bb[r] = w.row(r).dot(&wh.row(r));
            cc[r] = wh.row(r).dot(&wh.row(r));
        }
        let half = T::c(0.5);
        let (mut val, mut omega) = (T::zero(), T::zero());
        let (mut psi, mut chi) = (vec![T::zero(); o], vec![T::zero(); o]);
        let mut sbar = Array2::zeros((c.nrows(), o));
        for (i, &d) in wd.iter().enumerate() {
            omega += d / b;
            for r in 0..o {
                let s = sw[[i, r]];
                val += half * d * (a[r] + T::c(2.0) * s * bb[r] + s * s * cc[r]) / b;
                psi[r] += d * s / b;
                chi[r] += d * s * s / b;
                sbar[[i, r]] = d * (bb[r] + s * cc[r]) / b;
            }
        }
        for r in 0..o {
            for j in 0..n {
                gp[r * n + j] += omega * w[[r, j]] + psi[r] * wh[[r, j]];
                gp[part + r * n + j] += psi[r] * w[[r, j]] + chi[r] * wh[[r, j]];
            }
        }
        let vbar = sbar.t().dot(&u); // out × H
        let vstart = 2 * part;
        for r in 0..o {
            for j in 0..self.n_hyper {
                gp[vstart + r * self.n_hyper + j] += vbar[[r, j]];
            }
        }
        let mut cbar = Array2::zeros(c.raw_dim());
        cbar.slice_mut(s![.., ..self.n_hyper])
            .assign(&sbar.dot(&self.v(p).slice(s![..o, ..])));
        Ok((val, cbar))
    }

    /// The context JVP `(∂f/∂c) ẇ` row by row: `S_w(ẇ) ⊙ (X W_hᵀ) + S_b(ẇ) ⊙ b_h` with
    /// `S(ẇ) = ẇ Vᵀ` (the output is linear in the context, so this does not depend on `c`,
    /// which is only checked for its shape). Delta-STN's linearized best response adds it to
    /// the state JVP ([`Differentiable::jvp`]) layer by layer.
    pub fn jvp_ctx<T: Real>(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        w: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        self.check(p, x, c)?;
        check_len("StnDense", "context tangent width", self.ctx, w.ncols())?;
        check_len("StnDense", "context tangent rows", x.nrows(), w.nrows())?;
        let (s, mut out) = self.gates_and_hyper(p, x, w);
        let o = self.n_out;
        Zip::from(&mut out)
            .and(&s.slice(s![.., ..o]))
            .for_each(|y, &g| *y *= g);
        if self.bias {
            let bh = ndarray::ArrayView1::from(&self.split(p).1[o * self.n_in..]);
            for (mut row, srow) in out.rows_mut().into_iter().zip(s.rows()) {
                Zip::from(&mut row)
                    .and(&srow.slice(s![o..]))
                    .and(&bh)
                    .for_each(|y, &g, &b| *y += g * b);
            }
        }
        Ok(out)
    }

    /// `(S, Z_h)`: the gates `C Vᵀ` (B × gates) and the hyper part's linear output `X W_hᵀ`.
    fn gates_and_hyper<T: Real>(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
    ) -> (Array2<T>, Array2<T>) {
        let s = c.slice(s![.., ..self.n_hyper]).dot(&self.v(p).t());
        let zh = self.dense.apply(self.split(p).1, x);
        (s, zh)
    }

    /// The backward quantities: `C̄`, and with `gp` also `X̄` and the parameter gradient added
    /// to `gp` (without `gp`, `X̄` is empty).
    fn backward<T: Real>(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        gp: Option<&mut [T]>,
    ) -> Result<(Array2<T>, Array2<T>)> {
        self.check(p, x, c)?;
        check_len("StnDense", "output gradient width", self.n_out, g.ncols())?;
        let (e, h, _) = self.split(p);
        let (s, zh) = self.gates_and_hyper(p, x, c);
        let o = self.n_out;
        let gsw = &g * &s.slice(s![.., ..o]);
        let mut sbar = Array2::zeros(s.raw_dim());
        sbar.slice_mut(s![.., ..o]).assign(&(&g * &zh));
        if self.bias {
            let bh = ndarray::ArrayView1::from(&h[o * self.n_in..]);
            sbar.slice_mut(s![.., o..]).assign(&(&g * &bh));
        }
        let mut cbar = Array2::zeros(c.raw_dim());
        cbar.slice_mut(s![.., ..self.n_hyper])
            .assign(&sbar.dot(&self.v(p)));
        // The context VJP alone (the hyper step) needs no input gradient: `x̄` stays empty.
        let mut xbar = Array2::zeros((0, 0));
        if let Some(gp) = gp {
            let np = Differentiable::<T>::num_params(self);
            check_len("StnDense", "parameter gradient", np, gp.len())?;
            xbar = self.dense.apply_t(e, g);
            xbar += &self.dense.apply_t(h, gsw.view());
            let (part, k) = (self.part(), o * self.n_in);
            let (ge, rest) = gp.split_at_mut(part);
            let (gh, gv) = rest.split_at_mut(part);
            self.dense.add_weight_grad(ge, g, x);
            self.dense.add_weight_grad(gh, gsw.view(), x);
            if self.bias {
                for (b, col) in ge[k..].iter_mut().zip(g.axis_iter(Axis(1))) {
                    *b += col.sum();
                }
                let gsb = &g * &s.slice(s![.., o..]);
                for (b, col) in gh[k..].iter_mut().zip(gsb.axis_iter(Axis(1))) {
                    *b += col.sum();
                }
            }
            let vbar = sbar.t().dot(&c.slice(s![.., ..self.n_hyper]));
            for (a, &b) in gv.iter_mut().zip(vbar.iter()) {
                *a += b;
            }
        }
        Ok((xbar, cbar))
    }
}

impl<T: Real> Differentiable<T> for StnDense {
    fn name(&self) -> String {
        format!(
            "STN dense {}→{} ({} hyper)",
            self.n_in, self.n_out, self.n_hyper
        )
    }
    fn in_dim(&self) -> usize {
        self.n_in
    }
    fn out_dim(&self) -> usize {
        self.n_out
    }
    fn ctx_dim(&self) -> usize {
        self.ctx
    }
    fn num_params(&self) -> usize {
        2 * self.part() + self.gates() * self.n_hyper
    }
    fn forward(&self, p: &[T], x: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        self.check(p, x, c)?;
        let (e, h, _) = self.split(p);
        // The elementary output exactly as the plain dense layer computes it, then the gated
        // correction (zero gates add exact zeros).
        let mut out = self.dense.forward(e, x, c.slice(s![.., ..0]))?;
        let (s, zh) = self.gates_and_hyper(p, x, c);
        let o = self.n_out;
        Zip::from(&mut out)
            .and(&s.slice(s![.., ..o]))
            .and(&zh)
            .for_each(|y, &g, &z| *y += g * z);
        if self.bias {
            let bh = ndarray::ArrayView1::from(&h[o * self.n_in..]);
            for (mut row, srow) in out.rows_mut().into_iter().zip(s.rows()) {
                Zip::from(&mut row)
                    .and(&srow.slice(s![o..]))
                    .and(&bh)
                    .for_each(|y, &g, &b| *y += g * b);
            }
        }
        Ok(out)
    }
    fn vjp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        self.backward(p, x, c, g, Some(gp)).map(|r| r.0)
    }
    fn vjp_ctx(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        self.backward(p, x, c, g, None).map(|r| r.1)
    }
    fn jvp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        self.check(p, x, c)?;
        check_len("StnDense", "tangent width", self.n_in, v.ncols())?;
        let (e, _, _) = self.split(p);
        let (s, zh) = self.gates_and_hyper(p, v, c);
        let mut out = self.dense.apply(e, v);
        Zip::from(&mut out)
            .and(&s.slice(s![.., ..self.n_out]))
            .and(&zh)
            .for_each(|y, &g, &z| *y += g * z);
        Ok(out)
    }
}

impl<T: Real> Layer<T> for StnDense {
    fn init_params(&self, rng: &mut StdRng) -> Vec<T> {
        let mut p: Vec<T> = Layer::<T>::init_params(&self.dense, rng);
        p.extend(Layer::<T>::init_params(&self.dense, rng));
        p.extend(vec![T::zero(); self.gates() * self.n_hyper]);
        p
    }
    fn param_groups(&self) -> Vec<ParamGroupSpec> {
        let (k, part) = (self.n_out * self.n_in, self.part());
        let mut v = vec![ParamGroupSpec::new("weight", 0..k, true)];
        if self.bias {
            v.push(ParamGroupSpec::new("bias", k..part, false));
        }
        v.push(ParamGroupSpec::new("hyper_weight", part..part + k, true));
        if self.bias {
            v.push(ParamGroupSpec::new("hyper_bias", part + k..2 * part, false));
        }
        let np = Differentiable::<T>::num_params(self);
        v.push(ParamGroupSpec::new("gates", 2 * part..np, false));
        v
    }
}

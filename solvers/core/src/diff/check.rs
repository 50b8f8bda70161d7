//! The test kit for [`Differentiable`] blocks: every derivative a block states is compared with
//! central finite differences in random directions, and its JVP with its VJP.
//!
//! | check | compares |
//! |---|---|
//! | `state` | `⟨ḡ, (f(x+hv) − f(x−hv))/2h⟩` with `⟨vjp_x(ḡ), v⟩` |
//! | `params` | the same in the parameters, with the accumulated parameter gradient |
//! | `context` | the same in the context, with [`Differentiable::vjp_ctx`] |
//! | `jvp` | `(f(x+hv) − f(x−hv))/2h` with [`Differentiable::jvp`] (relative norm of the difference) |
//! | `transpose` | `⟨ḡ, jvp(v)⟩` with `⟨vjp_x(ḡ), v⟩` (no finite differences: exact up to rounding) |
//!
//! Each error is relative, `|fd − an| / max(|fd|, |an|)`, so a derivative that is 1 % off gives
//! an error near 1e-2 whatever its scale. Central differences have a truncation error of order
//! `h²` and a rounding error of order `ε/h`: `h = 1e-5` suits `f64` and `h = 1e-2` `f32`.
//! Nonsmooth blocks (ReLU, thresholds, max pooling, hard dropout) are differentiable almost
//! everywhere: keep `h` small enough that no entry crosses a kink.

use super::Differentiable;
use crate::error::Result;
use crate::linalg::Real;
use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// Relative errors of each derivative of a block (see the [module](self) docs).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct BlockCheck {
    /// State VJP against finite differences.
    pub state: f64,
    /// Parameter VJP against finite differences (0 without parameters).
    pub params: f64,
    /// Context VJP against finite differences (0 without a context).
    pub context: f64,
    /// State JVP against finite differences.
    pub jvp: f64,
    /// JVP against VJP.
    pub transpose: f64,
}

impl BlockCheck {
    /// The largest of the five errors.
    pub fn worst(&self) -> f64 {
        [
            self.state,
            self.params,
            self.context,
            self.jvp,
            self.transpose,
        ]
        .into_iter()
        .fold(0.0, f64::max)
    }
}

fn rel<T: Real>(fd: T, an: T) -> f64 {
    let (fd, an) = (fd.as_f64(), an.as_f64());
    let den = fd.abs().max(an.abs());
    if den == 0.0 {
        0.0
    } else {
        (fd - an).abs() / den
    }
}

fn inner<T: Real>(a: &Array2<T>, b: &Array2<T>) -> T {
    a.iter().zip(b).map(|(&x, &y)| x * y).sum()
}

/// Checks every derivative of `block` at `(p, x, c)` in seeded random directions with step `h`
/// (see the [module](self) docs). `Err` if the block lacks one of them (an `Unsupported` JVP or
/// context VJP) or a forward pass fails.
pub fn check_block<T: Real>(
    block: &dyn Differentiable<T>,
    p: &[T],
    x: ArrayView2<'_, T>,
    c: ArrayView2<'_, T>,
    seed: u64,
    h: T,
) -> Result<BlockCheck> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut randn = |r: usize, k: usize| {
        Array2::from_shape_fn((r, k), |_| T::c(StandardNormal.sample(&mut rng)))
    };
    let b = x.nrows();
    let g: Array2<T> = randn(b, block.out_dim());
    let vx: Array2<T> = randn(b, x.ncols());
    let vc: Array2<T> = randn(b, c.ncols());
    let vp: Vec<T> = randn(1, p.len()).into_raw_vec_and_offset().0;
    let two_h = T::c(2.0) * h;
    let mut gp = vec![T::zero(); p.len()];
    let gx = block.vjp(p, x, c, g.view(), &mut gp)?;
    // State: VJP and JVP against one central difference.
    let fp = block.forward(p, (&x + &(&vx * h)).view(), c)?;
    let fm = block.forward(p, (&x - &(&vx * h)).view(), c)?;
    let dfd = (fp - fm) / two_h;
    let state = rel(inner(&g, &dfd), inner(&gx, &vx));
    let jv = block.jvp(p, x, c, vx.view())?;
    let diff = (&dfd - &jv).mapv(|e| e * e).sum().sqrt();
    let scale = dfd
        .mapv(|e| e * e)
        .sum()
        .sqrt()
        .max(jv.mapv(|e| e * e).sum().sqrt());
    let jvp = if scale == T::zero() {
        0.0
    } else {
        (diff / scale).as_f64()
    };
    let transpose = rel(inner(&g, &jv), inner(&gx, &vx));
    let params = if p.is_empty() {
        0.0
    } else {
        let pp: Vec<T> = p.iter().zip(&vp).map(|(&a, &v)| a + h * v).collect();
        let pm: Vec<T> = p.iter().zip(&vp).map(|(&a, &v)| a - h * v).collect();
        let d = (block.forward(&pp, x, c)? - block.forward(&pm, x, c)?) / two_h;
        rel(
            inner(&g, &d),
            gp.iter().zip(&vp).map(|(&a, &b)| a * b).sum(),
        )
    };
    let context = if c.ncols() == 0 {
        0.0
    } else {
        let gc = block.vjp_ctx(p, x, c, g.view())?;
        let d = (block.forward(p, x, (&c + &(&vc * h)).view())?
            - block.forward(p, x, (&c - &(&vc * h)).view())?)
            / two_h;
        rel(inner(&g, &d), inner(&gc, &vc))
    };
    Ok(BlockCheck {
        state,
        params,
        context,
        jvp,
        transpose,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{HardThreshold, LearnedLinear, ResidualStep, SoftThreshold};
    use crate::error::Error;
    use std::sync::Arc;

    /// A block that wraps another and scales one of its derivatives by `1 + off`: the planted
    /// bug the kit must catch.
    struct Skewed<B> {
        inner: B,
        which: usize,
        off: f64,
    }

    impl<B: Differentiable<f64>> Differentiable<f64> for Skewed<B> {
        fn name(&self) -> String {
            "skewed".into()
        }
        fn in_dim(&self) -> usize {
            self.inner.in_dim()
        }
        fn out_dim(&self) -> usize {
            self.inner.out_dim()
        }
        fn ctx_dim(&self) -> usize {
            self.inner.ctx_dim()
        }
        fn num_params(&self) -> usize {
            self.inner.num_params()
        }
        fn forward(
            &self,
            p: &[f64],
            x: ArrayView2<'_, f64>,
            c: ArrayView2<'_, f64>,
        ) -> Result<Array2<f64>> {
            self.inner.forward(p, x, c)
        }
        fn vjp(
            &self,
            p: &[f64],
            x: ArrayView2<'_, f64>,
            c: ArrayView2<'_, f64>,
            g: ArrayView2<'_, f64>,
            gp: &mut [f64],
        ) -> Result<Array2<f64>> {
            let mut own = vec![0.0; gp.len()];
            let gx = self.inner.vjp(p, x, c, g, &mut own)?;
            let s = if self.which == 1 { 1.0 + self.off } else { 1.0 };
            for (a, b) in gp.iter_mut().zip(own) {
                *a += s * b;
            }
            Ok(gx * if self.which == 0 { 1.0 + self.off } else { 1.0 })
        }
        fn vjp_ctx(
            &self,
            p: &[f64],
            x: ArrayView2<'_, f64>,
            c: ArrayView2<'_, f64>,
            g: ArrayView2<'_, f64>,
        ) -> Result<Array2<f64>> {
            let s = if self.which == 2 { 1.0 + self.off } else { 1.0 };
            Ok(self.inner.vjp_ctx(p, x, c, g)? * s)
        }
        fn jvp(
            &self,
            p: &[f64],
            x: ArrayView2<'_, f64>,
            c: ArrayView2<'_, f64>,
            v: ArrayView2<'_, f64>,
        ) -> Result<Array2<f64>> {
            let s = if self.which == 3 { 1.0 + self.off } else { 1.0 };
            Ok(self.inner.jvp(p, x, c, v)? * s)
        }
    }

    fn randm(r: usize, k: usize, seed: u64) -> Array2<f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        Array2::from_shape_fn((r, k), |_| StandardNormal.sample(&mut rng))
    }

    #[test]
    fn the_kit_passes_the_unfolding_blocks_and_catches_one_percent_errors() {
        let (n, m, b) = (6, 4, 3);
        let a = Arc::new(randm(m, n, 1));
        let x = randm(b, n, 2);
        let c = randm(b, m, 3);
        let ll = LearnedLinear::new(n, n, m);
        let p_ll = randm(1, n * (n + m), 4).into_raw_vec_and_offset().0;
        let rs = ResidualStep::learned(a.clone());
        let p_rs = randm(1, m * n, 5).into_raw_vec_and_offset().0;
        let st = SoftThreshold::per_coordinate(n);
        let p_st = vec![0.3; n];
        let ht = HardThreshold::new(n);
        let blocks: Vec<(&dyn Differentiable<f64>, &[f64])> =
            vec![(&ll, &p_ll), (&rs, &p_rs), (&st, &p_st), (&ht, &[0.3][..])];
        for (blk, p) in blocks {
            let r = check_block(blk, p, x.view(), c.view(), 7, 1e-6).unwrap();
            assert!(r.worst() < 1e-6, "{}: {r:?}", blk.name());
        }
        // Each derivative 1 % off is caught (the error is about 1e-2, far above 1e-6).
        for which in 0..4 {
            let sk = Skewed {
                inner: LearnedLinear::new(n, n, m),
                which,
                off: 0.01,
            };
            let r = check_block(&sk, &p_ll, x.view(), c.view(), 7, 1e-6).unwrap();
            let caught = [r.state, r.params, r.context, r.jvp][which];
            assert!(caught > 5e-3, "which {which}: {r:?}");
        }
    }

    #[test]
    fn a_block_without_a_context_derivative_is_reported() {
        struct NoCtx;
        impl Differentiable<f64> for NoCtx {
            fn name(&self) -> String {
                "no ctx".into()
            }
            fn in_dim(&self) -> usize {
                1
            }
            fn out_dim(&self) -> usize {
                1
            }
            fn ctx_dim(&self) -> usize {
                1
            }
            fn num_params(&self) -> usize {
                0
            }
            fn forward(
                &self,
                _p: &[f64],
                x: ArrayView2<'_, f64>,
                c: ArrayView2<'_, f64>,
            ) -> Result<Array2<f64>> {
                Ok(&x + &c)
            }
            fn vjp(
                &self,
                _p: &[f64],
                _x: ArrayView2<'_, f64>,
                _c: ArrayView2<'_, f64>,
                g: ArrayView2<'_, f64>,
                _gp: &mut [f64],
            ) -> Result<Array2<f64>> {
                Ok(g.to_owned())
            }
        }
        let x = randm(2, 1, 1);
        let e = check_block(&NoCtx, &[], x.view(), x.view(), 1, 1e-6).unwrap_err();
        assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    }
}

//! Data-parallel bilevel problems: each rank holds a shard of the images or samples.
//!
//! The TV, field-of-experts and composed problems are sums over samples whose lower-level
//! variables are disjoint blocks of `x`:
//!
//! ```text
//! h(x, θ) = Σ_r h_r(x_r, θ),    g(x) = Σ_r g_r(x_r),    x = (x_0, x_1, …, x_{K−1}),
//! ```
//!
//! where rank `r` holds the samples of its shard with the whole problem's `1/N` (see
//! [`ComposedProblem::with_normalization`](crate::ComposedProblem::with_normalization)).
//! [`Sharded`] wraps rank `r`'s problem `h_r, g_r` and presents the whole problem to the
//! oracle, MAID and HOAG, which run unchanged:
//!
//! | quantity | how it is combined over the ranks |
//! |---|---|
//! | `∇ₓh`, `Hv`, `∇g` (blocks of `x`-space vectors) | stay on their rank |
//! | `h`, `g`, `Jᵀq = Σ_r J_rᵀ q_r` | summed |
//! | inner products and norms of `x`-space vectors (CG, FISTA, `‖∇ₓh‖` of the certificate `ε`, `‖∇g‖`, `‖Hq − ∇g‖`) | summed through [`ShardedVector`] and the oracle |
//! | `μ` | minimum (the Hessian is block diagonal) |
//! | `L`, `L_g`, `L_J`, `L_{H⁻¹}` | maximum (block-diagonal Hessian, separable `g`, stacked `J`) |
//! | `‖J‖` | exact from `Σ_r J_rᵀJ_r` where the problem gives its Gram matrix ([`BilevelProblem::j_gram`]); else the bound `(Σ_r ‖J_r‖²)^{1/2}` |
//!
//! **Reduction order.** Every sum is taken by an all-gather followed by the sum in rank order
//! `((v₀ + v₁) + v₂) + …` on every rank ([`Communicator::sum`]), so every rank holds the same
//! bits and takes the same decisions (FISTA's restarts and stopping test, CG's, MAID's line
//! search). A run on `K` ranks differs from the one-process run only by the rounding of these
//! sums (each rank's partial sum, then the ranks'), relative `~1e-16` per sum; the tests
//! compare the learned `θ` to 1e-10.
//!
//! **Failures.** Every method of [`Sharded`] is a collective that first agrees on success
//! ([`Communicator::agree`]): a rank whose local product fails makes every rank return
//! [`Error::RankFailed`] with that rank's message, at the same point, so none is left waiting.

use crate::composed::sym_max_eigenvalue;
use crate::problem::{BilevelProblem, Constant, Constants};
pub use hyperprox_core::comm::ShardedVector;
use hyperprox_core::comm::{agree_dyn, gather_checked, sum_in_order, Communicator};
use hyperprox_core::error::{Error, Result};
use ndarray::{Array1, ArrayView1, ArrayViewMut1};
use std::sync::Arc;

/// Where a shard sits: the communicator, and this rank's block of `x` in the whole.
#[derive(Clone, Copy)]
pub struct ShardInfo<'a> {
    /// The ranks.
    pub comm: &'a Arc<dyn Communicator>,
    /// Index of this rank's first entry of `x` in the whole `x`.
    pub offset: usize,
    /// Length of the whole `x`.
    pub global_len: usize,
}

/// The whole vector from every rank's block `local` (a collective: every rank calls it and
/// gets the whole vector, blocks in rank order).
pub fn gather_blocks(shard: ShardInfo<'_>, local: ArrayView1<'_, f64>) -> Result<Array1<f64>> {
    let comm = shard.comm.as_ref();
    let lens: Vec<usize> = comm
        .all_gather(&[local.len() as f64])
        .iter()
        .map(|&l| l as usize)
        .collect();
    let m = *lens.iter().max().unwrap_or(&0);
    let mut buf = vec![0.0; m];
    buf[..local.len()]
        .iter_mut()
        .zip(local.iter())
        .for_each(|(b, v)| *b = *v);
    let all = comm.all_gather(&buf);
    let mut out = Vec::with_capacity(lens.iter().sum());
    for (r, &l) in lens.iter().enumerate() {
        out.extend_from_slice(&all[r * m..r * m + l]);
    }
    Ok(Array1::from(out))
}

/// Rank `r`'s shard `h_r, g_r` presented as the whole problem (see the [module docs](self)).
pub struct Sharded<P> {
    local: P,
    comm: Arc<dyn Communicator>,
    /// Every rank's `dim_x`.
    lens: Vec<usize>,
    offset: usize,
}

impl<P: BilevelProblem> Sharded<P> {
    /// Rank `comm.rank()`'s shard. A collective: every rank calls it with its shard. `Err` on
    /// every rank if the shards disagree on the hyperparameters (their number or start).
    pub fn new(local: P, comm: Arc<dyn Communicator>) -> Result<Self> {
        let k = comm.size();
        let mine = [local.dim_x() as f64, local.dim_theta() as f64];
        let all = comm.all_gather(&mine);
        let p = local.dim_theta();
        if all.chunks(2).any(|c| c[1] != p as f64) {
            return Err(Error::param(
                "shards",
                "different numbers of hyperparameters",
                "every rank must build the same model on its own samples",
            ));
        }
        let theta0 = local.theta_start();
        let starts = comm.all_gather(theta0.as_slice().unwrap_or(&theta0.to_vec()));
        if starts.chunks(p.max(1)).any(|c| {
            c.iter()
                .zip(theta0.iter())
                .any(|(a, b)| a.to_bits() != b.to_bits())
        }) {
            return Err(Error::param(
                "shards",
                "different starting hyperparameters",
                "every rank must start from the same θ₀",
            ));
        }
        let lens: Vec<usize> = all.chunks(2).map(|c| c[0] as usize).collect();
        let offset = lens[..comm.rank()].iter().sum();
        debug_assert_eq!(lens.len(), k);
        Ok(Self {
            local,
            comm,
            lens,
            offset,
        })
    }

    /// This rank's problem.
    pub fn local(&self) -> &P {
        &self.local
    }

    /// The communicator.
    pub fn comm(&self) -> &Arc<dyn Communicator> {
        &self.comm
    }

    /// Every rank's length of `x`.
    pub fn lens(&self) -> &[usize] {
        &self.lens
    }

    /// The whole vector from every rank's block (a collective; every rank gets it).
    pub fn gather(&self, x_local: ArrayView1<'_, f64>) -> Result<Array1<f64>> {
        let me = self.lens[self.comm.rank()];
        let ok = if x_local.len() == me {
            Ok(())
        } else {
            Err(Error::shape(
                "Sharded::gather",
                "this rank's block",
                me,
                x_local.len(),
            ))
        };
        self.agreed(ok)?;
        gather_blocks(self.sharding_info(), x_local)
    }

    fn sharding_info(&self) -> ShardInfo<'_> {
        ShardInfo {
            comm: &self.comm,
            offset: self.offset,
            global_len: self.lens.iter().sum(),
        }
    }

    /// This rank's block of a whole vector (no communication).
    pub fn block(&self, whole: ArrayView1<'_, f64>) -> Result<Array1<f64>> {
        let total: usize = self.lens.iter().sum();
        hyperprox_core::linalg::check_len("Sharded::block", "whole vector", total, whole.len())?;
        let me = self.lens[self.comm.rank()];
        Ok(whole
            .slice(ndarray::s![self.offset..self.offset + me])
            .to_owned())
    }

    /// Agrees on a rank-local result (a collective).
    fn agreed<T>(&self, local: Result<T>) -> Result<T> {
        agree_dyn(self.comm.as_ref(), local)
    }

    fn summed(&self, local: Result<Vec<f64>>, len: usize) -> Result<Vec<f64>> {
        Ok(sum_in_order(&gather_checked(
            self.comm.as_ref(),
            local,
            len,
        )?))
    }
}

impl<P: BilevelProblem> BilevelProblem for Sharded<P> {
    fn name(&self) -> &str {
        self.local.name()
    }
    fn dim_x(&self) -> usize {
        self.local.dim_x()
    }
    fn dim_theta(&self) -> usize {
        self.local.dim_theta()
    }
    fn x_start(&self) -> Array1<f64> {
        self.local.x_start()
    }
    fn theta_start(&self) -> Array1<f64> {
        self.local.theta_start()
    }
    fn lower_value(&self, x: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<f64> {
        let v = self.local.lower_value(x, theta).map(|v| vec![v]);
        Ok(self.summed(v, 1)?[0])
    }
    fn lower_grad_into(
        &self,
        out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let r = self.local.lower_grad_into(out, x, theta);
        self.agreed(r)
    }
    fn lower_hvp_into(
        &self,
        out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
        v: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let r = self.local.lower_hvp_into(out, x, theta, v);
        self.agreed(r)
    }
    fn cross_jt_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
        q: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let p = self.dim_theta();
        let mut z = Array1::zeros(p);
        let r = self
            .local
            .cross_jt_into(z.view_mut(), x, theta, q)
            .map(|_| z.to_vec());
        let s = self.summed(r, p)?;
        out.iter_mut().zip(&s).for_each(|(o, v)| *o = *v);
        Ok(())
    }
    fn upper_value(&self, x: ArrayView1<'_, f64>) -> Result<f64> {
        let v = self.local.upper_value(x).map(|v| vec![v]);
        Ok(self.summed(v, 1)?[0])
    }
    fn upper_grad_into(&self, out: ArrayViewMut1<'_, f64>, x: ArrayView1<'_, f64>) -> Result<()> {
        let r = self.local.upper_grad_into(out, x);
        self.agreed(r)
    }
    fn upper_convex(&self) -> bool {
        self.local.upper_convex()
    }
    /// The ranks' constants combined (see the [module docs](self)).
    fn constants(&self, x: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<Constants> {
        let p = self.dim_theta();
        // The Gram matrices travel only where they are small.
        let gram_len = if p <= crate::composed::J_EXACT_MAX_DIM {
            p * p
        } else {
            0
        };
        let local = self.local.constants(x, theta).and_then(|c| {
            let unknown = |k: Constant| k.known().unwrap_or(f64::INFINITY);
            let mut v = vec![
                c.mu,
                c.lipschitz,
                c.l_g,
                unknown(c.j_norm),
                unknown(c.l_j),
                unknown(c.l_hinv),
                0.0,
            ];
            v.resize(7 + gram_len, 0.0);
            if gram_len > 0 && c.j_norm.known().is_some() {
                if let Some(g) = self.local.j_gram(x, theta)? {
                    if g.len() == gram_len {
                        v[6] = 1.0;
                        v[7..].copy_from_slice(&g);
                    }
                }
            }
            Ok(v)
        });
        let all = gather_checked(self.comm.as_ref(), local, 7 + gram_len)?;
        let fold =
            |i: usize, f: fn(f64, f64) -> f64| all[1..].iter().fold(all[0][i], |a, v| f(a, v[i]));
        let known = |v: f64| {
            if v.is_finite() {
                Constant::Known(v)
            } else {
                Constant::Unknown
            }
        };
        let j_norm = if fold(3, f64::max).is_finite() {
            if all.iter().all(|v| v[6] == 1.0) {
                let grams: Vec<Vec<f64>> = all.iter().map(|v| v[7..].to_vec()).collect();
                Constant::Known(sym_max_eigenvalue(sum_in_order(&grams), p).max(0.0).sqrt())
            } else {
                Constant::Known(all.iter().map(|v| v[3] * v[3]).sum::<f64>().sqrt())
            }
        } else {
            Constant::Unknown
        };
        Ok(Constants {
            mu: fold(0, f64::min),
            lipschitz: fold(1, f64::max),
            l_g: fold(2, f64::max),
            j_norm,
            l_j: known(fold(4, f64::max)),
            l_hinv: known(fold(5, f64::max)),
        })
    }
    fn sharding(&self) -> Option<ShardInfo<'_>> {
        Some(self.sharding_info())
    }
}

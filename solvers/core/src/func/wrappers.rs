//! Wrappers: conjugate, translation, precomposition with a tight frame, separable sums and the
//! Moreau envelope.

use super::{check_arg, check_prox_args, Function, Properties, Prox, Smooth};
use crate::error::{Error, Result};
use crate::linalg::{check_len, check_positive, norm2, randn, Real};
use crate::ops::LinearOperator;
use ndarray::{s, Array1, ArrayView1, ArrayViewMut1, Zip};
use rand::SeedableRng;

macro_rules! forward_function {
    ($($ty:ty),*) => {$(
        impl<T: Real, F: Function<T> + ?Sized> Function<T> for $ty {
            fn name(&self) -> String { (**self).name() }
            fn dim(&self) -> Option<usize> { (**self).dim() }
            fn value(&self, x: ArrayView1<'_, T>) -> Result<T> { (**self).value(x) }
            fn properties(&self) -> Properties { (**self).properties() }
            fn conj_value(&self, y: ArrayView1<'_, T>) -> Result<T> { (**self).conj_value(y) }
        }
        impl<T: Real, F: Prox<T> + ?Sized> Prox<T> for $ty {
            fn prox_into(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>, gamma: T) -> Result<()> {
                (**self).prox_into(out, x, gamma)
            }
            fn conj_prox_into(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>, gamma: T) -> Result<()> {
                (**self).conj_prox_into(out, x, gamma)
            }
            fn prox_jvp_into(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>, gamma: T, v: ArrayView1<'_, T>) -> Result<()> {
                (**self).prox_jvp_into(out, x, gamma, v)
            }
            fn prox_vjp_into(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>, gamma: T, w: ArrayView1<'_, T>) -> Result<()> {
                (**self).prox_vjp_into(out, x, gamma, w)
            }
            fn pdhg_dual_update_into(&self, y: ArrayViewMut1<'_, T>, y_old: ArrayViewMut1<'_, T>, save_old: bool, t: ArrayViewMut1<'_, T>, sigma: T, shift: Option<ArrayView1<'_, T>>) -> Result<()> {
                (**self).pdhg_dual_update_into(y, y_old, save_old, t, sigma, shift)
            }
            #[allow(clippy::too_many_arguments)]
            fn pdhg_primal_update_into(&self, x: ArrayViewMut1<'_, T>, x_old: ArrayViewMut1<'_, T>, save_old: bool, xbar: ArrayViewMut1<'_, T>, u: ArrayView1<'_, T>, tmp: ArrayViewMut1<'_, T>, steps: (T, T), shift: Option<ArrayView1<'_, T>>) -> Result<()> {
                (**self).pdhg_primal_update_into(x, x_old, save_old, xbar, u, tmp, steps, shift)
            }
        }
    )*};
}
forward_function!(&F, Box<F>, std::sync::Arc<F>);

/// The convex conjugate `f*` of a closed convex function, as a function with a prox
/// (`prox_{γf*}` by the Moreau identity, [`Prox::conj_prox_into`]); its value is `f`'s
/// closed-form conjugate and its conjugate is `f` itself (`f** = f`).
///
/// # References
/// H. H. Bauschke, P. L. Combettes, *Convex Analysis and Monotone Operator Theory in Hilbert
/// Spaces*, Thm. 14.3 (Moreau decomposition).
pub struct Conjugate<F> {
    f: F,
}

impl<F> Conjugate<F> {
    /// `f*`; `f` must be convex (checked through its [`Properties`]).
    pub fn new<T: Real>(f: F) -> Result<Self>
    where
        F: Prox<T>,
    {
        if !f.properties().convex {
            return Err(Error::param(
                "f",
                f.name(),
                "the conjugate wrapper needs a convex function (f** = f fails otherwise)",
            ));
        }
        Ok(Self { f })
    }
}

impl<T: Real, F: Prox<T>> Function<T> for Conjugate<F> {
    fn name(&self) -> String {
        format!("Conjugate({})", self.f.name())
    }
    fn dim(&self) -> Option<usize> {
        self.f.dim()
    }
    fn value(&self, x: ArrayView1<'_, T>) -> Result<T> {
        self.f.conj_value(x)
    }
    fn properties(&self) -> Properties {
        let p = self.f.properties();
        Properties {
            convex: true,
            separable: p.separable,
            exact_prox: p.exact_prox,
            ..Default::default()
        }
    }
    fn conj_value(&self, y: ArrayView1<'_, T>) -> Result<T> {
        self.f.value(y)
    }
}

impl<T: Real, F: Prox<T>> Prox<T> for Conjugate<F> {
    fn prox_into(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>, gamma: T) -> Result<()> {
        check_prox_args("Conjugate", self.f.dim(), out.len(), x, gamma)?;
        self.f.conj_prox_into(out, x, gamma)
    }
    fn prox_jvp_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
        v: ArrayView1<'_, T>,
    ) -> Result<()> {
        // d/dx [x − γ p(x/γ)] = I − J_{prox_{f/γ}}(x/γ).
        check_prox_args("Conjugate", self.f.dim(), out.len(), x, gamma)?;
        let xs = x.mapv(|v| v / gamma);
        self.f
            .prox_jvp_into(out.view_mut(), xs.view(), T::one() / gamma, v)?;
        Zip::from(&mut out).and(&v).for_each(|o, &vi| *o = vi - *o);
        Ok(())
    }
}

/// Translation `g(x) = f(x − z)`: `prox_{γg}(x) = z + prox_{γf}(x − z)`,
/// `g*(y) = f*(y) + ⟨z, y⟩`.
///
/// # References
/// N. Parikh, S. Boyd, "Proximal algorithms", Found. Trends Optim. 1 (2014), §2.2.
pub struct Translate<T: Real, F> {
    f: F,
    z: Array1<T>,
}

impl<T: Real, F: Prox<T>> Translate<T, F> {
    /// `x ↦ f(x − z)`.
    pub fn new(f: F, z: Array1<T>) -> Result<Self> {
        check_arg("Translate::new", "z", f.dim(), z.view())?;
        Ok(Self { f, z })
    }
    fn shifted(&self, x: ArrayView1<'_, T>) -> Result<Array1<T>> {
        check_len("Translate", "x", self.z.len(), x.len())?;
        Ok(&x - &self.z)
    }
}

impl<T: Real, F: Prox<T>> Function<T> for Translate<T, F> {
    fn name(&self) -> String {
        format!("Translate({})", self.f.name())
    }
    fn dim(&self) -> Option<usize> {
        Some(self.z.len())
    }
    fn value(&self, x: ArrayView1<'_, T>) -> Result<T> {
        self.f.value(self.shifted(x)?.view())
    }
    fn properties(&self) -> Properties {
        self.f.properties()
    }
    fn conj_value(&self, y: ArrayView1<'_, T>) -> Result<T> {
        check_len("Translate", "y", self.z.len(), y.len())?;
        Ok(self.f.conj_value(y)? + self.z.dot(&y))
    }
}

impl<T: Real, F: Prox<T>> Translate<T, F> {
    /// `z` plus a caller's shift (a translated translate).
    fn total_shift(&self, shift: Option<ArrayView1<'_, T>>) -> Option<Array1<T>> {
        shift.map(|s| &s + &self.z)
    }
}

impl<T: Real, F: Prox<T>> Prox<T> for Translate<T, F> {
    /// `f(· − z)`'s update is `f`'s with the shift `z` (fused if `f`'s is).
    fn pdhg_dual_update_into(
        &self,
        y: ArrayViewMut1<'_, T>,
        y_old: ArrayViewMut1<'_, T>,
        save_old: bool,
        t: ArrayViewMut1<'_, T>,
        sigma: T,
        shift: Option<ArrayView1<'_, T>>,
    ) -> Result<()> {
        let total = self.total_shift(shift);
        let z = total.as_ref().map_or(self.z.view(), |z| z.view());
        self.f
            .pdhg_dual_update_into(y, y_old, save_old, t, sigma, Some(z))
    }
    fn pdhg_primal_update_into(
        &self,
        x: ArrayViewMut1<'_, T>,
        x_old: ArrayViewMut1<'_, T>,
        save_old: bool,
        xbar: ArrayViewMut1<'_, T>,
        u: ArrayView1<'_, T>,
        tmp: ArrayViewMut1<'_, T>,
        steps: (T, T),
        shift: Option<ArrayView1<'_, T>>,
    ) -> Result<()> {
        let total = self.total_shift(shift);
        let z = total.as_ref().map_or(self.z.view(), |z| z.view());
        self.f
            .pdhg_primal_update_into(x, x_old, save_old, xbar, u, tmp, steps, Some(z))
    }
    fn prox_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
    ) -> Result<()> {
        check_prox_args("Translate", self.dim(), out.len(), x, gamma)?;
        let xs = self.shifted(x)?;
        self.f.prox_into(out.view_mut(), xs.view(), gamma)?;
        out += &self.z;
        Ok(())
    }
    fn prox_jvp_into(
        &self,
        out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
        v: ArrayView1<'_, T>,
    ) -> Result<()> {
        check_prox_args("Translate", self.dim(), out.len(), x, gamma)?;
        let xs = self.shifted(x)?;
        self.f.prox_jvp_into(out, xs.view(), gamma, v)
    }
}

/// Precomposition with a tight frame, `g(x) = f(Lx)` with `L Lᵀ = νI`, `ν > 0`:
/// `prox_{γg}(x) = x + ν⁻¹Lᵀ(prox_{γνf}(Lx) − Lx)`.
/// The constructor verifies `L Lᵀ u = νu` on two seeded random vectors.
///
/// # References
/// H. H. Bauschke, P. L. Combettes, *Convex Analysis and Monotone Operator Theory in Hilbert
/// Spaces*, Prop. 24.14.
pub struct Precompose<T: Real, F, L> {
    f: F,
    l: L,
    nu: T,
}

impl<T: Real, F: Prox<T>, L: LinearOperator<T>> Precompose<T, F, L> {
    /// `x ↦ f(Lx)` with `L Lᵀ = νI`.
    pub fn new(f: F, l: L, nu: T) -> Result<Self> {
        check_positive("nu", nu)?;
        let (m, n) = l.shape();
        if let Some(d) = f.dim() {
            check_len("Precompose::new", "range of L", d, m)?;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..2 {
            let u: Array1<T> = randn(m, &mut rng);
            let mut ltu = Array1::zeros(n);
            l.adjoint_into(ltu.view_mut(), u.view())?;
            let llt = l.apply(ltu.view())?;
            let err = norm2((&llt - &u.mapv(|v| v * nu)).view());
            if err > T::c(1e3) * T::epsilon().sqrt() * nu * norm2(u.view()) {
                return Err(Error::param(
                    "L",
                    l.name(),
                    "Precompose needs a tight frame (L Lᵀ = ν I); use a general splitting (ADMM/PDHG) otherwise",
                ));
            }
        }
        Ok(Self { f, l, nu })
    }
}

impl<T: Real, F: Prox<T>, L: LinearOperator<T>> Function<T> for Precompose<T, F, L> {
    fn name(&self) -> String {
        format!("Precompose({}, {})", self.f.name(), self.l.name())
    }
    fn dim(&self) -> Option<usize> {
        Some(self.l.shape().1)
    }
    fn value(&self, x: ArrayView1<'_, T>) -> Result<T> {
        self.f.value(self.l.apply(x)?.view())
    }
    fn properties(&self) -> Properties {
        let p = self.f.properties();
        Properties {
            convex: p.convex,
            indicator: p.indicator,
            exact_prox: p.exact_prox,
            ..Default::default()
        }
    }
}

impl<T: Real, F: Prox<T>, L: LinearOperator<T>> Prox<T> for Precompose<T, F, L> {
    fn prox_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
    ) -> Result<()> {
        check_prox_args("Precompose", self.dim(), out.len(), x, gamma)?;
        let lx = self.l.apply(x)?;
        let mut p = self.f.prox(lx.view(), gamma * self.nu)?;
        p -= &lx;
        self.l.adjoint_into(out.view_mut(), p.view())?;
        let inv = T::one() / self.nu;
        Zip::from(&mut out)
            .and(&x)
            .for_each(|o, &xi| *o = xi + inv * *o);
        Ok(())
    }
    fn prox_jvp_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
        v: ArrayView1<'_, T>,
    ) -> Result<()> {
        check_prox_args("Precompose", self.dim(), out.len(), x, gamma)?;
        let lx = self.l.apply(x)?;
        let lv = self.l.apply(v)?;
        let mut jlv = Array1::zeros(lv.len());
        self.f
            .prox_jvp_into(jlv.view_mut(), lx.view(), gamma * self.nu, lv.view())?;
        jlv -= &lv;
        self.l.adjoint_into(out.view_mut(), jlv.view())?;
        let inv = T::one() / self.nu;
        Zip::from(&mut out)
            .and(&v)
            .for_each(|o, &vi| *o = vi + inv * *o);
        Ok(())
    }
}

/// Separable sum over consecutive blocks, `f(x) = Σᵢ fᵢ(x_{Bᵢ})`: value, prox, conjugate and
/// prox Jacobian block by block.
///
/// # References
/// N. Parikh, S. Boyd, "Proximal algorithms", Found. Trends Optim. 1 (2014), §2.1.
pub struct SeparableSum<T: Real> {
    parts: Vec<(usize, Box<dyn Prox<T>>)>,
}

impl<T: Real> SeparableSum<T> {
    /// Blocks `(size, function)` in order; sizes must be ≥ 1 and match fixed dimensions.
    pub fn new(parts: Vec<(usize, Box<dyn Prox<T>>)>) -> Result<Self> {
        if parts.is_empty() {
            return Err(Error::param("parts", "[]", "need at least one block"));
        }
        for (i, (n, f)) in parts.iter().enumerate() {
            if *n == 0 {
                return Err(Error::param(
                    format!("block {i} size"),
                    0,
                    "blocks must be non-empty",
                ));
            }
            if let Some(d) = f.dim() {
                check_len("SeparableSum::new", &format!("block {i} size"), d, *n)?;
            }
        }
        Ok(Self { parts })
    }
    fn total(&self) -> usize {
        self.parts.iter().map(|p| p.0).sum()
    }
    fn blocks(&self) -> impl Iterator<Item = (usize, usize, &dyn Prox<T>)> {
        let mut start = 0;
        self.parts.iter().map(move |(n, f)| {
            let s0 = start;
            start += n;
            (s0, s0 + n, &**f)
        })
    }
}

impl<T: Real> Function<T> for SeparableSum<T> {
    fn name(&self) -> String {
        let names: Vec<String> = self.parts.iter().map(|p| p.1.name()).collect();
        format!("SeparableSum({})", names.join(", "))
    }
    fn dim(&self) -> Option<usize> {
        Some(self.total())
    }
    fn value(&self, x: ArrayView1<'_, T>) -> Result<T> {
        check_len("SeparableSum", "x", self.total(), x.len())?;
        let mut s = T::zero();
        for (a, b, f) in self.blocks() {
            s += f.value(x.slice(s![a..b]))?;
        }
        Ok(s)
    }
    fn properties(&self) -> Properties {
        let all = |g: fn(&Properties) -> bool| self.parts.iter().all(|p| g(&p.1.properties()));
        Properties {
            convex: all(|p| p.convex),
            separable: all(|p| p.separable),
            indicator: all(|p| p.indicator),
            smooth: false,
            exact_prox: all(|p| p.exact_prox),
        }
    }
    fn conj_value(&self, y: ArrayView1<'_, T>) -> Result<T> {
        check_len("SeparableSum", "y", self.total(), y.len())?;
        let mut s = T::zero();
        for (a, b, f) in self.blocks() {
            s += f.conj_value(y.slice(s![a..b]))?;
        }
        Ok(s)
    }
}

impl<T: Real> Prox<T> for SeparableSum<T> {
    /// Each block's own (fused) update on its slices.
    fn pdhg_dual_update_into(
        &self,
        mut y: ArrayViewMut1<'_, T>,
        mut y_old: ArrayViewMut1<'_, T>,
        save_old: bool,
        mut t: ArrayViewMut1<'_, T>,
        sigma: T,
        shift: Option<ArrayView1<'_, T>>,
    ) -> Result<()> {
        for (a, b, f) in self.blocks() {
            f.pdhg_dual_update_into(
                y.slice_mut(s![a..b]),
                y_old.slice_mut(s![a..b]),
                save_old,
                t.slice_mut(s![a..b]),
                sigma,
                shift.as_ref().map(|z| z.slice(s![a..b])),
            )?;
        }
        Ok(())
    }
    /// Each block's own (fused) update on its slices.
    fn pdhg_primal_update_into(
        &self,
        mut x: ArrayViewMut1<'_, T>,
        mut x_old: ArrayViewMut1<'_, T>,
        save_old: bool,
        mut xbar: ArrayViewMut1<'_, T>,
        u: ArrayView1<'_, T>,
        mut tmp: ArrayViewMut1<'_, T>,
        steps: (T, T),
        shift: Option<ArrayView1<'_, T>>,
    ) -> Result<()> {
        for (a, b, f) in self.blocks() {
            f.pdhg_primal_update_into(
                x.slice_mut(s![a..b]),
                x_old.slice_mut(s![a..b]),
                save_old,
                xbar.slice_mut(s![a..b]),
                u.slice(s![a..b]),
                tmp.slice_mut(s![a..b]),
                steps,
                shift.as_ref().map(|z| z.slice(s![a..b])),
            )?;
        }
        Ok(())
    }
    fn prox_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
    ) -> Result<()> {
        check_prox_args("SeparableSum", self.dim(), out.len(), x, gamma)?;
        for (a, b, f) in self.blocks() {
            f.prox_into(out.slice_mut(s![a..b]), x.slice(s![a..b]), gamma)?;
        }
        Ok(())
    }
    fn prox_jvp_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
        v: ArrayView1<'_, T>,
    ) -> Result<()> {
        check_prox_args("SeparableSum", self.dim(), out.len(), x, gamma)?;
        check_len("SeparableSum::prox_jvp", "v", x.len(), v.len())?;
        for (a, b, f) in self.blocks() {
            f.prox_jvp_into(
                out.slice_mut(s![a..b]),
                x.slice(s![a..b]),
                gamma,
                v.slice(s![a..b]),
            )?;
        }
        Ok(())
    }
}

/// Moreau envelope `M(x) = min_z f(z) + ‖x − z‖²/(2μ)` of a function with a prox, `μ > 0`.
///
/// Smooth with `∇M = (x − prox_{μf}(x))/μ` (`L = 1/μ` for convex `f`) and
/// `∇²M v = (v − J_{prox_{μf}}(x) v)/μ`; `prox_{γM}(x) = x + γ/(μ+γ)·(prox_{(μ+γ)f}(x) − x)`;
/// `M* = f* + (μ/2)‖·‖²`.
///
/// # References
/// J.-J. Moreau, "Proximité et dualité dans un espace hilbertien", Bull. Soc. Math. France 93
/// (1965); Bauschke, Combettes, Prop. 12.30.
pub struct MoreauEnvelope<T: Real, F> {
    f: F,
    mu: T,
}

impl<T: Real, F: Prox<T>> MoreauEnvelope<T, F> {
    /// The envelope of `f` with parameter `μ > 0`.
    pub fn new(f: F, mu: T) -> Result<Self> {
        check_positive("mu", mu)?;
        Ok(Self { f, mu })
    }
}

impl<T: Real, F: Prox<T>> Function<T> for MoreauEnvelope<T, F> {
    fn name(&self) -> String {
        format!("MoreauEnvelope({}, mu = {})", self.f.name(), self.mu)
    }
    fn dim(&self) -> Option<usize> {
        self.f.dim()
    }
    fn value(&self, x: ArrayView1<'_, T>) -> Result<T> {
        let p = self.f.prox(x, self.mu)?;
        let d = &x - &p;
        Ok(self.f.value(p.view())? + d.dot(&d) / (T::c(2.0) * self.mu))
    }
    fn properties(&self) -> Properties {
        let p = self.f.properties();
        Properties {
            convex: p.convex,
            separable: p.separable,
            smooth: p.convex,
            exact_prox: p.exact_prox,
            ..Default::default()
        }
    }
    fn conj_value(&self, y: ArrayView1<'_, T>) -> Result<T> {
        Ok(self.f.conj_value(y)? + T::c(0.5) * self.mu * y.dot(&y))
    }
}

impl<T: Real, F: Prox<T>> Smooth<T> for MoreauEnvelope<T, F> {
    fn gradient_into(&self, mut out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) -> Result<()> {
        check_prox_args(
            "MoreauEnvelope::gradient",
            self.dim(),
            out.len(),
            x,
            self.mu,
        )?;
        self.f.prox_into(out.view_mut(), x, self.mu)?;
        let inv = T::one() / self.mu;
        Zip::from(&mut out)
            .and(&x)
            .for_each(|o, &xi| *o = (xi - *o) * inv);
        Ok(())
    }
    fn hvp_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        v: ArrayView1<'_, T>,
    ) -> Result<()> {
        self.f.prox_jvp_into(out.view_mut(), x, self.mu, v)?;
        let inv = T::one() / self.mu;
        Zip::from(&mut out)
            .and(&v)
            .for_each(|o, &vi| *o = (vi - *o) * inv);
        Ok(())
    }
    fn lipschitz(&self) -> Option<T> {
        self.f.properties().convex.then(|| T::one() / self.mu)
    }
}

impl<T: Real, F: Prox<T>> Prox<T> for MoreauEnvelope<T, F> {
    fn prox_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
    ) -> Result<()> {
        check_prox_args("MoreauEnvelope", self.dim(), out.len(), x, gamma)?;
        self.f.prox_into(out.view_mut(), x, self.mu + gamma)?;
        let c = gamma / (self.mu + gamma);
        Zip::from(&mut out)
            .and(&x)
            .for_each(|o, &xi| *o = xi + c * (*o - xi));
        Ok(())
    }
    fn prox_jvp_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
        v: ArrayView1<'_, T>,
    ) -> Result<()> {
        self.f
            .prox_jvp_into(out.view_mut(), x, self.mu + gamma, v)?;
        let c = gamma / (self.mu + gamma);
        Zip::from(&mut out)
            .and(&v)
            .for_each(|o, &vi| *o = vi + c * (*o - vi));
        Ok(())
    }
}

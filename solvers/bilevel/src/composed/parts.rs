//! The smooth regularizers `R(z; p)` of a composed lower level, with their own parameters `p`
//! (smoothings) and the mixed derivatives the hypergradient needs.
//!
//! Each part states, for the constants of the error bound:
//! * `L_R ≥ ‖∇²R(z)‖` ([`ParametricSmooth::curvature`]);
//! * `μ_R`, a strong-convexity modulus (0 for all but [`SquaredL2`]);
//! * `T` with `‖∇²R(z) − ∇²R(z')‖ ≤ T·max_g ‖z_g − z'_g‖` over its groups `g` (single entries,
//!   or the pairs of isotropic TV) ([`ParametricSmooth::hessian_lipschitz`]): with the
//!   operator's row-group bound `κ ≥ max_g ‖K_g‖` it gives `‖K‖²·κ·T` for the Lipschitz
//!   constant of `x ↦ Kᵀ∇²R(Kx)K`;
//! * for every own parameter `p_k`, the Lipschitz constant of `z ↦ ∂_{p_k}∇R(z)` (for `L_J`).
//!
//! A bound is [`Bound::proven`] or an estimate; the problem's error bound is certified only
//! when every bound it uses is proven.

/// A bound on a constant: a proven upper bound (keeps the error bound certified) or an
/// estimate.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Bound {
    /// The value.
    pub value: f64,
    /// Whether it is a proven upper bound.
    pub proven: bool,
}

impl Bound {
    /// A proven upper bound.
    pub fn proven(value: f64) -> Self {
        Self {
            value,
            proven: true,
        }
    }
    /// An estimate (the error bound using it is reported as estimated).
    pub fn estimated(value: f64) -> Self {
        Self {
            value,
            proven: false,
        }
    }
    /// The product of two bounds (proven if both are).
    pub fn times(self, o: Bound) -> Self {
        Self {
            value: self.value * o.value,
            proven: self.proven && o.proven,
        }
    }
    /// The bound scaled by a known factor `c ≥ 0`.
    pub fn scaled(self, c: f64) -> Self {
        Self {
            value: self.value * c,
            proven: self.proven,
        }
    }
    /// The sum of two bounds (proven if both are).
    pub fn plus(self, o: Bound) -> Self {
        Self {
            value: self.value + o.value,
            proven: self.proven && o.proven,
        }
    }
}

/// How a part groups the entries of its input for the Hessian-Lipschitz bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    /// Entry by entry (separable parts).
    Scalar,
    /// `z = [a; b]` (two halves) in pairs `(a_p, b_p)` (isotropic TV on the gradient).
    Pairs,
}

/// A smooth convex function `R(z; p)` of `z = Kx` with parameters `p` (indices into `θ`
/// assigned by the composed problem). Everything accumulates (`out += s·…`).
pub trait ParametricSmooth: Send + Sync {
    /// A short name for reports.
    fn name(&self) -> String;
    /// The number of own parameters.
    fn n_params(&self) -> usize {
        0
    }
    /// Their starting values (length `n_params`).
    fn initial_params(&self) -> Vec<f64> {
        Vec::new()
    }
    /// The input length the part requires (`None`: any).
    fn dim(&self) -> Option<usize> {
        None
    }
    /// The grouping of the input.
    fn grouping(&self) -> Grouping {
        Grouping::Scalar
    }
    /// `R(z; p)`.
    fn value(&self, z: &[f64], p: &[f64]) -> f64;
    /// `out += s·∇R(z; p)`.
    fn grad_add(&self, z: &[f64], p: &[f64], s: f64, out: &mut [f64]);
    /// `out += s·∇²R(z; p) v`.
    fn hvp_add(&self, z: &[f64], p: &[f64], v: &[f64], s: f64, out: &mut [f64]);
    /// `out[k] += s·∂_{p_k}⟨∇R(z; p), q⟩` (length `n_params`).
    fn cross_add(&self, _z: &[f64], _p: &[f64], _q: &[f64], _s: f64, _out: &mut [f64]) {}
    /// `out += s·∂_{p_k}∇R(z; p)` (a column of `J`).
    fn param_column_add(&self, _z: &[f64], _p: &[f64], _k: usize, _s: f64, _out: &mut [f64]) {}
    /// `L_R ≥ ‖∇²R(z; p)‖` for all `z`.
    fn curvature(&self, p: &[f64]) -> Bound;
    /// The strong-convexity modulus `μ_R` (0 unless strongly convex; negative for a weakly
    /// convex part: `∇²R ⪰ μ_R·I`).
    fn strong_convexity(&self, _p: &[f64]) -> f64 {
        0.0
    }
    /// `T`: `‖∇²R(z) − ∇²R(z')‖ ≤ T·max_g‖z_g − z'_g‖`; `None` when `∇²R` is not Lipschitz.
    fn hessian_lipschitz(&self, p: &[f64]) -> Option<Bound>;
    /// The Lipschitz constant of `z ↦ ∂_{p_k}∇R(z; p)`.
    fn param_column_lipschitz(&self, _p: &[f64], _k: usize) -> Option<Bound> {
        None
    }
}

/// A smoothing `ν`: learned (one parameter `ln ν`) or fixed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Smoothing {
    /// Learned from the start value `ν₀`: the parameter is `ln ν`.
    Learned(f64),
    /// Fixed at `ν`.
    Fixed(f64),
}

impl Smoothing {
    fn n(&self) -> usize {
        matches!(self, Smoothing::Learned(_)) as usize
    }
    fn init(&self) -> Vec<f64> {
        match self {
            Smoothing::Learned(nu) => vec![nu.ln()],
            Smoothing::Fixed(_) => Vec::new(),
        }
    }
    fn nu(&self, p: &[f64]) -> f64 {
        match self {
            Smoothing::Learned(_) => p[0].exp(),
            Smoothing::Fixed(nu) => *nu,
        }
    }
    fn check(&self) -> hyperprox_core::Result<()> {
        let (Smoothing::Learned(v) | Smoothing::Fixed(v)) = *self;
        if v > 0.0 && v.is_finite() {
            Ok(())
        } else {
            Err(hyperprox_core::Error::param(
                "smoothing",
                v,
                "must be finite and > 0 (e.g. 0.01)",
            ))
        }
    }
}

/// `max |d³/dt³ √(t² + 1)| = 1.5/1.25^{5/2}`, attained at `t = 1/2`.
pub fn c3() -> f64 {
    1.5 / 1.25f64.powf(2.5)
}

/// `c₃ᵢ = √(8/27 + 2304/3125)`: a bound on the Lipschitz constant (spectral norm) of the
/// Hessian of `g ↦ √(1 + |g|²)` on `ℝ²` (derived in the TV problem's docs).
pub fn c3_isotropic() -> f64 {
    (8.0 / 27.0 + 2304.0 / 3125.0f64).sqrt()
}

/// The Charbonnier (smoothed ℓ1) penalty `R(z) = Σ_k √(z_k² + ν²)`: anisotropic smoothed TV
/// on the image differences, and the field-of-experts penalty on filter responses.
///
/// `∇R = z/r`, `∇²R = diag(ν²/r³)` (`r = √(z² + ν²)`), so `L_R = 1/ν`; `T = c₃/ν²`
/// ([`c3`]: `φ_ν(t) = ν·φ₁(t/ν)`); the parameter `ln ν` has `∂_{ln ν}∇R = −ν²z/r³`, whose
/// derivative in `z`, `ν²(2z² − ν²)/r⁵`, is at most `1/ν` in size.
#[derive(Clone, Copy, Debug)]
pub struct Charbonnier {
    nu: Smoothing,
}

impl Charbonnier {
    /// With a learned (`Smoothing::Learned`) or fixed smoothing (finite, `> 0`).
    pub fn new(nu: Smoothing) -> hyperprox_core::Result<Self> {
        nu.check()?;
        Ok(Self { nu })
    }
}

impl ParametricSmooth for Charbonnier {
    fn name(&self) -> String {
        "charbonnier".into()
    }
    fn n_params(&self) -> usize {
        self.nu.n()
    }
    fn initial_params(&self) -> Vec<f64> {
        self.nu.init()
    }
    fn value(&self, z: &[f64], p: &[f64]) -> f64 {
        let nu2 = self.nu.nu(p).powi(2);
        z.iter().map(|t| (t * t + nu2).sqrt()).sum()
    }
    fn grad_add(&self, z: &[f64], p: &[f64], s: f64, out: &mut [f64]) {
        let nu2 = self.nu.nu(p).powi(2);
        for (o, t) in out.iter_mut().zip(z) {
            *o += s * t / (t * t + nu2).sqrt();
        }
    }
    fn hvp_add(&self, z: &[f64], p: &[f64], v: &[f64], s: f64, out: &mut [f64]) {
        let nu2 = self.nu.nu(p).powi(2);
        for ((o, t), vi) in out.iter_mut().zip(z).zip(v) {
            let r2 = t * t + nu2;
            *o += s * nu2 / (r2 * r2.sqrt()) * vi;
        }
    }
    fn cross_add(&self, z: &[f64], p: &[f64], q: &[f64], s: f64, out: &mut [f64]) {
        if self.nu.n() == 0 {
            return;
        }
        let nu2 = self.nu.nu(p).powi(2);
        let d: f64 = z
            .iter()
            .zip(q)
            .map(|(t, qi)| {
                let r2 = t * t + nu2;
                -t * nu2 / (r2 * r2.sqrt()) * qi
            })
            .sum();
        out[0] += s * d;
    }
    fn param_column_add(&self, z: &[f64], p: &[f64], _k: usize, s: f64, out: &mut [f64]) {
        let nu2 = self.nu.nu(p).powi(2);
        for (o, t) in out.iter_mut().zip(z) {
            let r2 = t * t + nu2;
            *o -= s * t * nu2 / (r2 * r2.sqrt());
        }
    }
    fn curvature(&self, p: &[f64]) -> Bound {
        Bound::proven(1.0 / self.nu.nu(p))
    }
    fn hessian_lipschitz(&self, p: &[f64]) -> Option<Bound> {
        Some(Bound::proven(c3() / self.nu.nu(p).powi(2)))
    }
    fn param_column_lipschitz(&self, p: &[f64], _k: usize) -> Option<Bound> {
        Some(Bound::proven(1.0 / self.nu.nu(p)))
    }
}

/// Isotropic smoothed TV on the gradient: `R(z) = Σ_p √(a_p² + b_p² + ν²)`, `z = [a; b]`
/// (the layout of the Neumann gradient: horizontal then vertical differences).
///
/// With `g = (a_p, b_p)`, `r = √(|g|² + ν²)`: `∇R = g/r`, `∇²R = I/r − ggᵀ/r³` (eigenvalues
/// `1/r`, `ν²/r³`, so `L_R = 1/ν`), `T = c₃ᵢ/ν²` ([`c3_isotropic`]), `∂_{ln ν}∇R = −ν²g/r³`
/// (`1/ν`-Lipschitz).
#[derive(Clone, Copy, Debug)]
pub struct IsotropicTvPenalty {
    nu: Smoothing,
}

impl IsotropicTvPenalty {
    /// With a learned or fixed smoothing (finite, `> 0`).
    pub fn new(nu: Smoothing) -> hyperprox_core::Result<Self> {
        nu.check()?;
        Ok(Self { nu })
    }
}

/// The two halves of `z`.
fn halves(z: &[f64]) -> (&[f64], &[f64]) {
    z.split_at(z.len() / 2)
}

impl ParametricSmooth for IsotropicTvPenalty {
    fn name(&self) -> String {
        "isotropic-tv".into()
    }
    fn n_params(&self) -> usize {
        self.nu.n()
    }
    fn initial_params(&self) -> Vec<f64> {
        self.nu.init()
    }
    fn grouping(&self) -> Grouping {
        Grouping::Pairs
    }
    fn value(&self, z: &[f64], p: &[f64]) -> f64 {
        let nu2 = self.nu.nu(p).powi(2);
        let (a, b) = halves(z);
        a.iter()
            .zip(b)
            .map(|(x, y)| (x * x + y * y + nu2).sqrt())
            .sum()
    }
    fn grad_add(&self, z: &[f64], p: &[f64], s: f64, out: &mut [f64]) {
        let nu2 = self.nu.nu(p).powi(2);
        let (a, b) = halves(z);
        let (oa, ob) = out.split_at_mut(a.len());
        for (((x, y), u), w) in a.iter().zip(b).zip(oa).zip(ob) {
            let r = (x * x + y * y + nu2).sqrt();
            *u += s * x / r;
            *w += s * y / r;
        }
    }
    fn hvp_add(&self, z: &[f64], p: &[f64], v: &[f64], s: f64, out: &mut [f64]) {
        let nu2 = self.nu.nu(p).powi(2);
        let (a, b) = halves(z);
        let (va, vb) = halves(v);
        let (oa, ob) = out.split_at_mut(a.len());
        for i in 0..a.len() {
            let (x, y) = (a[i], b[i]);
            let r2 = x * x + y * y + nu2;
            let r = r2.sqrt();
            let gv = (x * va[i] + y * vb[i]) / r2;
            oa[i] += s * (va[i] - x * gv) / r;
            ob[i] += s * (vb[i] - y * gv) / r;
        }
    }
    fn cross_add(&self, z: &[f64], p: &[f64], q: &[f64], s: f64, out: &mut [f64]) {
        if self.nu.n() == 0 {
            return;
        }
        let nu2 = self.nu.nu(p).powi(2);
        let (a, b) = halves(z);
        let (qa, qb) = halves(q);
        let mut d = 0.0;
        for i in 0..a.len() {
            let r2 = a[i] * a[i] + b[i] * b[i] + nu2;
            d -= nu2 / (r2 * r2.sqrt()) * (a[i] * qa[i] + b[i] * qb[i]);
        }
        out[0] += s * d;
    }
    fn param_column_add(&self, z: &[f64], p: &[f64], _k: usize, s: f64, out: &mut [f64]) {
        let nu2 = self.nu.nu(p).powi(2);
        let (a, b) = halves(z);
        let (oa, ob) = out.split_at_mut(a.len());
        for i in 0..a.len() {
            let r2 = a[i] * a[i] + b[i] * b[i] + nu2;
            let c = s * nu2 / (r2 * r2.sqrt());
            oa[i] -= c * a[i];
            ob[i] -= c * b[i];
        }
    }
    fn curvature(&self, p: &[f64]) -> Bound {
        Bound::proven(1.0 / self.nu.nu(p))
    }
    fn hessian_lipschitz(&self, p: &[f64]) -> Option<Bound> {
        Some(Bound::proven(c3_isotropic() / self.nu.nu(p).powi(2)))
    }
    fn param_column_lipschitz(&self, p: &[f64], _k: usize) -> Option<Bound> {
        Some(Bound::proven(1.0 / self.nu.nu(p)))
    }
}

/// `R(z) = ½‖z‖²` (Tikhonov): `L_R = μ_R = 1`, `T = 0`. On the identity it makes any lower
/// level strongly convex.
#[derive(Clone, Copy, Debug, Default)]
pub struct SquaredL2;

impl ParametricSmooth for SquaredL2 {
    fn name(&self) -> String {
        "squared-l2".into()
    }
    fn value(&self, z: &[f64], _p: &[f64]) -> f64 {
        0.5 * z.iter().map(|v| v * v).sum::<f64>()
    }
    fn grad_add(&self, z: &[f64], _p: &[f64], s: f64, out: &mut [f64]) {
        out.iter_mut().zip(z).for_each(|(o, v)| *o += s * v);
    }
    fn hvp_add(&self, _z: &[f64], _p: &[f64], v: &[f64], s: f64, out: &mut [f64]) {
        out.iter_mut().zip(v).for_each(|(o, vi)| *o += s * vi);
    }
    fn curvature(&self, _p: &[f64]) -> Bound {
        Bound::proven(1.0)
    }
    fn strong_convexity(&self, _p: &[f64]) -> f64 {
        1.0
    }
    fn hessian_lipschitz(&self, _p: &[f64]) -> Option<Bound> {
        Some(Bound::proven(0.0))
    }
}

/// The smoothed generalized Gaussian `R(z) = Σ_k (z_k² + ν²)^{p/2}`, `1 < p ≤ 2` (fixed `p`
/// and `ν`): `ψ'' = p·r^{p/2−2}((p−1)t² + ν²) ≤ p·ν^{p−2}` (`r = t² + ν²`, largest at
/// `t = 0`), and `ψ''' = p(p−2)·t·r^{p/2−3}((p−1)t² + 3ν²)`, which with `t = νu`,
/// `(p−1)u² + 3 ≤ 3(1 + u²)` and `(1 + u²)^{p/2−2} ≤ (1 + u²)^{−1}` gives
/// `|ψ'''| ≤ p(2−p)·(3/2)·ν^{p−3}` (`|u|/(1 + u²) ≤ ½`): `T` is that bound.
#[derive(Clone, Copy, Debug)]
pub struct GeneralizedGaussian {
    p: f64,
    nu: f64,
}

impl GeneralizedGaussian {
    /// `1 < p ≤ 2`, `ν > 0` (both finite).
    pub fn new(p: f64, nu: f64) -> hyperprox_core::Result<Self> {
        if !(p > 1.0 && p <= 2.0) {
            return Err(hyperprox_core::Error::param(
                "p",
                p,
                "the generalized Gaussian needs 1 < p ≤ 2 to be smooth and convex (p = 2 is Tikhonov)",
            ));
        }
        Smoothing::Fixed(nu).check()?;
        Ok(Self { p, nu })
    }
}

impl ParametricSmooth for GeneralizedGaussian {
    fn name(&self) -> String {
        format!("generalized-gaussian(p={})", self.p)
    }
    fn value(&self, z: &[f64], _p: &[f64]) -> f64 {
        let nu2 = self.nu * self.nu;
        z.iter().map(|t| (t * t + nu2).powf(0.5 * self.p)).sum()
    }
    fn grad_add(&self, z: &[f64], _p: &[f64], s: f64, out: &mut [f64]) {
        let (nu2, p) = (self.nu * self.nu, self.p);
        for (o, t) in out.iter_mut().zip(z) {
            *o += s * p * t * (t * t + nu2).powf(0.5 * p - 1.0);
        }
    }
    fn hvp_add(&self, z: &[f64], _p: &[f64], v: &[f64], s: f64, out: &mut [f64]) {
        let (nu2, p) = (self.nu * self.nu, self.p);
        for ((o, t), vi) in out.iter_mut().zip(z).zip(v) {
            let r = t * t + nu2;
            *o += s * p * r.powf(0.5 * p - 2.0) * ((p - 1.0) * t * t + nu2) * vi;
        }
    }
    fn curvature(&self, _p: &[f64]) -> Bound {
        Bound::proven(self.p * self.nu.powf(self.p - 2.0))
    }
    fn hessian_lipschitz(&self, _p: &[f64]) -> Option<Bound> {
        let p = self.p;
        Some(Bound::proven(p * (2.0 - p) * 1.5 * self.nu.powf(p - 3.0)))
    }
}

/// Any core smooth function without parameters (e.g. [`hyperprox_core::func::Huber`]): its
/// gradient, Hessian-vector product and Lipschitz constant (`L_R`; required). Its Hessian is
/// not known to be Lipschitz (the Huber function's jumps), so a problem using it reports an
/// estimated error bound.
#[derive(Clone)]
pub struct CoreSmooth {
    f: std::sync::Arc<dyn hyperprox_core::func::Smooth<f64>>,
    l: f64,
}

impl CoreSmooth {
    /// Wraps `f`; `Err` if it states no Lipschitz constant.
    pub fn new(
        f: impl hyperprox_core::func::Smooth<f64> + 'static,
    ) -> hyperprox_core::Result<Self> {
        let l = f.lipschitz().ok_or_else(|| {
            hyperprox_core::Error::param(
                "regularizer",
                f.name(),
                "states no Lipschitz constant of its gradient; a composed lower level needs one",
            )
        })?;
        Ok(Self {
            f: std::sync::Arc::new(f),
            l,
        })
    }
}

impl ParametricSmooth for CoreSmooth {
    fn name(&self) -> String {
        self.f.name()
    }
    fn value(&self, z: &[f64], _p: &[f64]) -> f64 {
        self.f
            .value(ndarray::ArrayView1::from(z))
            .unwrap_or(f64::NAN)
    }
    fn grad_add(&self, z: &[f64], _p: &[f64], s: f64, out: &mut [f64]) {
        let g = self
            .f
            .gradient(ndarray::ArrayView1::from(z))
            .unwrap_or_else(|_| ndarray::Array1::from_elem(z.len(), f64::NAN));
        out.iter_mut().zip(g).for_each(|(o, v)| *o += s * v);
    }
    fn hvp_add(&self, z: &[f64], _p: &[f64], v: &[f64], s: f64, out: &mut [f64]) {
        let mut hv = ndarray::Array1::zeros(z.len());
        if self
            .f
            .hvp_into(
                hv.view_mut(),
                ndarray::ArrayView1::from(z),
                ndarray::ArrayView1::from(v),
            )
            .is_err()
        {
            hv.fill(f64::NAN);
        }
        out.iter_mut().zip(hv).for_each(|(o, h)| *o += s * h);
    }
    fn curvature(&self, _p: &[f64]) -> Bound {
        Bound::proven(self.l)
    }
    fn hessian_lipschitz(&self, _p: &[f64]) -> Option<Bound> {
        None
    }
}

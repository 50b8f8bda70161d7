//! The GPU backend (feature `cuda`): device vectors, cuBLAS matrices, NVRTC kernels.
//!
//! The solvers are not written again here: [`GpuVec`] implements [`Vector`](crate::linalg::Vector), the device
//! operators implement [`OperatorOn`](crate::backend::OperatorOn), the functions implement
//! [`FunctionOn`](crate::backend::FunctionOn)/[`ProxOn`](crate::backend::ProxOn) on it, and
//! [`GpuFgp`] supplies the two kernels of the TV prox's loop
//! ([`fgp_iterations`](crate::func::fgp_iterations)); FISTA, PDHG, the power and Lanczos
//! iterations and CG then run unchanged on device buffers, with no copy of an iterate to the
//! host per iteration (only the scalars of inner products come back).
//!
//! # Set-up
//! [cudarc](https://docs.rs/cudarc) 0.19 with **dynamic loading**, pinned to CUDA 13.0
//! (`cuda-13000`: it looks for `libcublas.so.13`, `libnvrtc.so.13`): the crate builds with no
//! CUDA toolkit and no driver, and [`Gpu::new`] checks for the driver library, the device,
//! cuBLAS and NVRTC before the first call that would abort, returning [`Error::Device`]
//! otherwise. The kernels (`kernels.cu`, CUDA C) are compiled by NVRTC at run time for the
//! device's compute capability (`sm_90` on Hopper), once per process and device.
//!
//! # Numerics
//! Elementwise kernels do the CPU's operations in the CPU's order (the 2-D gradient, its
//! adjoint and the fused FGP step are the formulas of [`Gradient2d`](crate::ops::Gradient2d)
//! and [`CpuFgp`](crate::func::CpuFgp)); reductions sum one partial per thread on the
//! device and the partials on the host in a fixed order, so a run is deterministic on a given
//! GPU. Results match the CPU to rounding (fused multiply–adds, summation order): the
//! conformance tests ask 1e-12 relative in f64 and 1e-5 in f32.
//!
//! # Errors
//! Creating a [`Gpu`], uploading and downloading return `Result`. The [`Vector`](crate::linalg::Vector) operations
//! have no error channel (they are the CPU's BLAS-1): a driver error inside one (the device
//! lost, memory exhausted in `clone`) panics with the CUDA error, as an allocation failure does
//! on the host.

pub mod batch;
pub mod bench;
mod fgp;
mod func;
pub mod host;
mod lasso;
mod ops;
mod vec;

pub use batch::{cached_matrix, gemm_rows_on, GpuMat};
pub use fgp::{solve_rof, GpuFgp};
pub use func::{GpuNormL21, GpuSeparable};
pub use host::{OnDevice, ProxOnDevice};
pub use lasso::{solve_lasso, DeviceFistaSolution, GpuLasso};
pub use ops::{GpuConv2d, GpuDense, GpuDenseBatch, GpuGradient2d, GpuMask};
pub use vec::GpuVec;

use crate::error::{Error, Result};
use crate::linalg::Real;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, Gemv, GemvConfig, StridedBatchedConfig};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, ValidAsZeroBits,
};
use cudarc::nvrtc::{CompileOptions, Ptx};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The kernels' CUDA C source (compiled by NVRTC; also compiled for the host by the kernel
/// tests, with `HP_HOST` defined).
pub const KERNEL_SOURCE: &str = include_str!("kernels.cu");

/// Every kernel of [`KERNEL_SOURCE`], without the precision suffix (`_f32`, `_f64`).
pub const KERNEL_NAMES: &[&str] = &[
    "fill",
    "scale",
    "axpy",
    "set_axpy",
    "xpay",
    "extrap",
    "mul",
    "sep_prox",
    "sep_conj_prox",
    "fb_step",
    "group_l21",
    "group_l21_value",
    "grad2d",
    "negdiv2d",
    "conv2d",
    "conv2d_adj",
    "fgp_step",
    "fgp_x",
    "fgp_cert",
    "dot",
    "asum",
    "amax",
    "maxdiff",
    "nonfinite",
    "diffdot",
    "scaled_diff_sq",
    "sep_value",
    "sep_conj_value",
    "sep_prox_pc",
    "sep_conj_prox_pc",
    "fb_step_pc",
    "sep_value_pc",
    "sep_conj_value_pc",
    "act",
    "act_vjp",
    "bias_rows",
    "col_sums",
    "sqerr",
    "penalty_grad",
    "shrink_step",
    "shrink_vjp",
];

/// Threads per block of every launch.
pub(crate) const BLOCK: u32 = 256;

/// The element types the device kernels exist for (`f32`, `f64`).
pub trait GpuReal: Real + DeviceRepr + ValidAsZeroBits + Unpin {
    /// The kernels' name suffix.
    const SUFFIX: &'static str;
    /// `y ← α op(A) x + β y` by cuBLAS.
    ///
    /// # Safety
    /// The lengths in `cfg` must match the buffers.
    #[doc(hidden)]
    unsafe fn gemv(
        blas: &CudaBlas,
        cfg: GemvConfig<Self>,
        a: &CudaSlice<Self>,
        x: &CudaSlice<Self>,
        y: &mut CudaSlice<Self>,
    ) -> Result<()>;
    /// `C ← α op(A) op(B) + β C` by cuBLAS (column-major).
    ///
    /// # Safety
    /// The sizes in `cfg` must match the buffers.
    #[doc(hidden)]
    unsafe fn gemm(
        blas: &CudaBlas,
        cfg: GemmConfig<Self>,
        a: &CudaSlice<Self>,
        b: &CudaSlice<Self>,
        c: &mut CudaSlice<Self>,
    ) -> Result<()>;
    /// The strided batched GEMM of cuBLAS.
    ///
    /// # Safety
    /// The sizes and strides in `cfg` must match the buffers.
    #[doc(hidden)]
    unsafe fn gemm_batched(
        blas: &CudaBlas,
        cfg: StridedBatchedConfig<Self>,
        a: &CudaSlice<Self>,
        b: &CudaSlice<Self>,
        c: &mut CudaSlice<Self>,
    ) -> Result<()>;
    #[doc(hidden)]
    fn scratch(inner: &Inner) -> &Mutex<Option<CudaSlice<Self>>>;
}

macro_rules! gpu_real {
    ($t:ty, $s:literal, $field:ident) => {
        impl GpuReal for $t {
            const SUFFIX: &'static str = $s;
            unsafe fn gemv(
                blas: &CudaBlas,
                cfg: GemvConfig<Self>,
                a: &CudaSlice<Self>,
                x: &CudaSlice<Self>,
                y: &mut CudaSlice<Self>,
            ) -> Result<()> {
                // SAFETY: the caller checked the lengths against `cfg`.
                unsafe { Gemv::<$t>::gemv(blas, cfg, a, x, y) }
                    .map_err(|e| Error::Device(format!("cuBLAS gemv failed: {e:?}")))
            }
            unsafe fn gemm(
                blas: &CudaBlas,
                cfg: GemmConfig<Self>,
                a: &CudaSlice<Self>,
                b: &CudaSlice<Self>,
                c: &mut CudaSlice<Self>,
            ) -> Result<()> {
                // SAFETY: the caller checked the sizes against `cfg`.
                unsafe { Gemm::<$t>::gemm(blas, cfg, a, b, c) }
                    .map_err(|e| Error::Device(format!("cuBLAS gemm failed: {e:?}")))
            }
            unsafe fn gemm_batched(
                blas: &CudaBlas,
                cfg: StridedBatchedConfig<Self>,
                a: &CudaSlice<Self>,
                b: &CudaSlice<Self>,
                c: &mut CudaSlice<Self>,
            ) -> Result<()> {
                // SAFETY: the caller checked the sizes and strides against `cfg`.
                unsafe { Gemm::<$t>::gemm_strided_batched(blas, cfg, a, b, c) }
                    .map_err(|e| Error::Device(format!("cuBLAS batched gemm failed: {e:?}")))
            }
            fn scratch(inner: &Inner) -> &Mutex<Option<CudaSlice<Self>>> {
                &inner.$field
            }
        }
    };
}
gpu_real!(f32, "_f32", scratch_f32);
gpu_real!(f64, "_f64", scratch_f64);

/// A handle on one CUDA device: its context, stream, cuBLAS handle and compiled kernels.
/// Cheap to clone; [`Gpu::new`] returns the same handle for the same ordinal in a process.
#[derive(Clone)]
pub struct Gpu {
    inner: Arc<Inner>,
}

#[doc(hidden)]
pub struct Inner {
    ordinal: usize,
    name: String,
    capability: (i32, i32),
    multiprocessors: usize,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    funcs: HashMap<String, CudaFunction>,
    scratch_f32: Mutex<Option<CudaSlice<f32>>>,
    scratch_f64: Mutex<Option<CudaSlice<f64>>>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Gpu(cuda:{} {} sm_{}{})",
            self.inner.ordinal, self.inner.name, self.inner.capability.0, self.inner.capability.1
        )
    }
}

fn driver_err(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::Device(format!("CUDA error in {what}: {e:?}"))
}

/// Panics on a driver error inside an operation without an error channel (see the module
/// docs).
#[track_caller]
pub(crate) fn fatal<V>(r: Result<V>) -> V {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// Whether the CUDA 13 runtime compiler library can be loaded (needed to compile the kernels;
/// no driver or device needed).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to open the shared library.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Compiles [`KERNEL_SOURCE`] to PTX with NVRTC for the compute capability `(major, minor)`.
/// Needs only `libnvrtc.so.13` (no driver, no device): the tests compile the kernels this way
/// on machines without a GPU where the library is installed.
pub fn compile_kernels(capability: (i32, i32)) -> Result<Ptx> {
    if !nvrtc_present() {
        return Err(Error::Device(
            "the CUDA runtime compiler (libnvrtc.so.13) was not found: install CUDA 13's NVRTC \
             (e.g. `pip install nvidia-cuda-nvrtc==13.0.*`) and add its lib folder to \
             LD_LIBRARY_PATH, or use --device cpu"
                .into(),
        ));
    }
    let opts = CompileOptions {
        options: vec![
            format!("--gpu-architecture=sm_{}{}", capability.0, capability.1),
            "-std=c++17".into(),
        ],
        name: Some("hyperprox_kernels.cu".into()),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(KERNEL_SOURCE, opts)
        .map_err(|e| Error::Device(format!("NVRTC could not compile the kernels: {e:?}")))
}

static DEVICES: OnceLock<Mutex<HashMap<usize, Gpu>>> = OnceLock::new();

impl Gpu {
    /// The device with this ordinal (0: the first GPU), created once per process. `Err` with a
    /// one-line reason (no driver, no such device, no cuBLAS or NVRTC, kernels failing to
    /// compile) where it cannot be used; never a panic.
    pub fn new(ordinal: usize) -> Result<Gpu> {
        let map = DEVICES.get_or_init(|| Mutex::new(HashMap::new()));
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = map.get(&ordinal) {
            return Ok(g.clone());
        }
        let g = Self::create(ordinal)?;
        map.insert(ordinal, g.clone());
        Ok(g)
    }

    fn create(ordinal: usize) -> Result<Gpu> {
        // SAFETY: only tries to open the shared libraries.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(Error::Device(
                "no NVIDIA driver on this machine (libcuda.so not found): run on a machine with \
                 an NVIDIA GPU and its driver, or use --device cpu"
                    .into(),
            ));
        }
        let count = CudaContext::device_count().map_err(|e| driver_err("cuDeviceGetCount", e))?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::Device(format!(
                "no CUDA device {ordinal}: this machine has {count} (use cuda:0 … cuda:{}, or \
                 --device cpu)",
                (count - 1).max(0)
            )));
        }
        // SAFETY: only tries to open the shared library.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(Error::Device(
                "cuBLAS (libcublas.so.13) was not found: install CUDA 13's cuBLAS and add its \
                 lib folder to LD_LIBRARY_PATH, or use --device cpu"
                    .into(),
            ));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| driver_err("cuCtxCreate", e))?;
        // One stream: the event tracking for multi-stream safety is not needed.
        // SAFETY: every buffer of this handle is used on its one stream.
        unsafe { ctx.disable_event_tracking() };
        let capability = ctx
            .compute_capability()
            .map_err(|e| driver_err("compute capability", e))?;
        let name = ctx.name().unwrap_or_else(|_| "CUDA device".into());
        let multiprocessors = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map_err(|e| driver_err("multiprocessor count", e))?
            .max(1) as usize;
        let ptx = compile_kernels(capability)?;
        let module = ctx
            .load_module(ptx)
            .map_err(|e| driver_err("loading the kernels", e))?;
        let mut funcs = HashMap::new();
        for base in KERNEL_NAMES {
            for s in ["_f32", "_f64"] {
                let name = format!("{base}{s}");
                let f = module
                    .load_function(&name)
                    .map_err(|e| driver_err(&name, e))?;
                funcs.insert(name, f);
            }
        }
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone())
            .map_err(|e| Error::Device(format!("cuBLAS could not start: {e:?}")))?;
        Ok(Gpu {
            inner: Arc::new(Inner {
                ordinal,
                name,
                capability,
                multiprocessors,
                stream,
                blas,
                funcs,
                scratch_f32: Mutex::new(None),
                scratch_f64: Mutex::new(None),
            }),
        })
    }

    /// The device's name (e.g. `NVIDIA H200`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> usize {
        self.inner.ordinal
    }

    /// The compute capability `(major, minor)`.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.inner.capability
    }

    /// Waits for the device's queued work (for timing).
    pub fn synchronize(&self) -> Result<()> {
        self.inner
            .stream
            .synchronize()
            .map_err(|e| driver_err("synchronize", e))
    }

    /// Copies `x` to the device.
    pub fn upload<T: GpuReal>(&self, x: &[T]) -> Result<GpuVec<T>> {
        if x.is_empty() {
            return self.zeros(0);
        }
        let buf = self
            .inner
            .stream
            .clone_htod(x)
            .map_err(|e| driver_err("upload", e))?;
        Ok(GpuVec::from_parts(buf, x.len(), self.clone()))
    }

    /// A zero vector of length `n` on the device.
    pub fn zeros<T: GpuReal>(&self, n: usize) -> Result<GpuVec<T>> {
        Ok(GpuVec::from_parts(self.alloc(n)?, n, self.clone()))
    }

    pub(crate) fn alloc<T: GpuReal>(&self, n: usize) -> Result<CudaSlice<T>> {
        self.inner
            .stream
            .alloc_zeros::<T>(n.max(1))
            .map_err(|e| driver_err(&format!("allocating {n} numbers"), e))
    }

    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.inner.stream
    }

    pub(crate) fn blas(&self) -> &CudaBlas {
        &self.inner.blas
    }

    pub(crate) fn same(&self, other: &Gpu) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub(crate) fn func<T: GpuReal>(&self, base: &str) -> &CudaFunction {
        let name = format!("{base}{}", T::SUFFIX);
        self.inner
            .funcs
            .get(&name)
            .unwrap_or_else(|| panic!("kernel {name} is not in KERNEL_NAMES"))
    }

    /// The launch shape of an elementwise kernel over `n` items (grid-stride loops).
    pub(crate) fn cfg(&self, n: usize) -> LaunchConfig {
        let blocks = n
            .div_ceil(BLOCK as usize)
            .clamp(1, 32 * self.inner.multiprocessors);
        LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// The fixed launch shape of the reductions (one partial per thread).
    pub(crate) fn red_cfg(&self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (self.red_blocks() as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    fn red_blocks(&self) -> usize {
        4 * self.inner.multiprocessors
    }

    /// Threads of a reduction launch (= partials per reduced quantity).
    pub(crate) fn red_threads(&self) -> usize {
        self.red_blocks() * BLOCK as usize
    }

    /// Runs `launch` with a scratch buffer of at least `k·red_threads()` partials and returns
    /// them on the host.
    pub(crate) fn reduce<T: GpuReal>(
        &self,
        k: usize,
        launch: impl FnOnce(&mut CudaSlice<T>) -> Result<()>,
    ) -> Result<Vec<T>> {
        let need = k * self.red_threads();
        let mut guard = T::scratch(&self.inner)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_none_or(|s| s.len() < need) {
            *guard = Some(self.alloc::<T>(need)?);
        }
        let s = guard.as_mut().expect("allocated above");
        launch(s)?;
        let mut host = vec![T::zero(); need];
        self.inner
            .stream
            .memcpy_dtoh(&s.slice(0..need), &mut host[..])
            .map_err(|e| driver_err("reading partial sums", e))?;
        Ok(host)
    }
}

/// Launches kernel `$name` (precision `$t`) with launch shape `$cfg` and the arguments.
macro_rules! launch {
    ($gpu:expr, $t:ty, $name:expr, $cfg:expr; $($arg:expr),* $(,)?) => {{
        use cudarc::driver::PushKernelArg;
        let gpu: &$crate::cuda::Gpu = $gpu;
        let f = gpu.func::<$t>($name);
        let mut b = gpu.stream().launch_builder(f);
        $( b.arg($arg); )*
        // SAFETY: the argument list matches the kernel's signature in kernels.cu and the
        // buffers hold the lengths passed.
        unsafe { b.launch($cfg) }
            .map(|_| ())
            .map_err(|e| $crate::error::Error::Device(format!("CUDA error in kernel {}: {e:?}", $name)))
    }};
}
pub(crate) use launch;

/// Converts between the two precisions (`T` and `U` are `f32` or `f64`): the generic entry
/// points (`solve_rof`, `solve_lasso`) take any `Real` and run the kernels of the same type.
pub(crate) fn convert<T: Real, U: Real>(x: impl IntoIterator<Item = T>) -> Vec<U> {
    x.into_iter().map(|v| U::c(v.as_f64())).collect()
}

/// Sums the partials of a reduction in a fixed order (in f64).
pub(crate) fn sum_partials<T: Real>(p: &[T]) -> T {
    T::c(p.iter().map(|v| v.as_f64()).sum::<f64>())
}

/// The largest partial, NaN once any partial is NaN.
pub(crate) fn max_partials<T: Real>(p: &[T]) -> T {
    let mut m = T::zero();
    for &v in p {
        if v.is_nan() {
            return v;
        }
        if v > m {
            m = v;
        }
    }
    m
}

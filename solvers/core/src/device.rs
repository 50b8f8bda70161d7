//! Where the numbers live: [`Device::Cpu`] (ndarray, faer, rayon) or [`Device::Cuda`] (an
//! NVIDIA GPU through the [`cuda`](crate::cuda) backend, feature `cuda`).
//!
//! A user moves a computation to the GPU by choosing the device (`--device cuda` on the
//! command line, `Device::Cuda(0)` in the library); the algorithms are the same code on both
//! (see [`backend`](crate::backend)). Asking for a GPU where there is none is an error, never a
//! panic: a build without the `cuda` feature says how to rebuild; a build with it checks for
//! the driver library (`libcuda.so`), a device and the runtime compiler (`libnvrtc.so.13`)
//! before any call that could abort.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A compute device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Device {
    /// The host CPU (the default).
    #[default]
    Cpu,
    /// The CUDA device with this ordinal.
    Cuda(usize),
}

impl Device {
    /// True for [`Device::Cpu`].
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }

    /// Whether this build can use a GPU at all (the `cuda` feature).
    pub fn cuda_compiled() -> bool {
        cfg!(feature = "cuda")
    }

    /// The GPU handle of a [`Device::Cuda`] (`None` for the CPU): the driver, the device, the
    /// compiled kernels. `Err` with a one-line reason where no GPU can be used.
    #[cfg(feature = "cuda")]
    pub fn gpu(&self) -> Result<Option<crate::cuda::Gpu>> {
        match self {
            Device::Cpu => Ok(None),
            Device::Cuda(k) => crate::cuda::Gpu::new(*k).map(Some),
        }
    }

    /// Checks that the device can be used (always for the CPU).
    pub fn check(&self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            Device::Cuda(k) => crate::cuda::Gpu::new(*k).map(|_| ()),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => Err(no_cuda_build()),
        }
    }
}

/// The error of a build without the `cuda` feature asked for a GPU.
#[cfg(not(feature = "cuda"))]
pub(crate) fn no_cuda_build() -> Error {
    Error::Device(
        "no GPU support in this build: rebuild with `cargo build --release --features cuda` \
         (it needs no CUDA toolkit to build; running needs an NVIDIA driver), or use --device cpu"
            .into(),
    )
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(0) => write!(f, "cuda"),
            Device::Cuda(k) => write!(f, "cuda:{k}"),
        }
    }
}

impl FromStr for Device {
    type Err = Error;
    /// `cpu`, `cuda` (device 0) or `cuda:N`.
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        if t == "cpu" {
            return Ok(Device::Cpu);
        }
        if t == "cuda" || t == "gpu" {
            return Ok(Device::Cuda(0));
        }
        if let Some(k) = t.strip_prefix("cuda:").and_then(|k| k.parse().ok()) {
            return Ok(Device::Cuda(k));
        }
        Err(Error::param(
            "device",
            s,
            "use cpu, cuda (the first GPU) or cuda:N",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print_back() {
        for (s, d) in [
            ("cpu", Device::Cpu),
            ("CUDA", Device::Cuda(0)),
            ("cuda:3", Device::Cuda(3)),
        ] {
            let p: Device = s.parse().unwrap();
            assert_eq!(p, d);
            assert_eq!(p.to_string().parse::<Device>().unwrap(), d);
        }
        for bad in ["", "tpu", "cuda:", "cuda:x", "cuda:-1"] {
            assert!(bad.parse::<Device>().is_err(), "{bad}");
        }
    }

    #[test]
    fn asking_for_a_gpu_where_there_is_none_is_an_error_that_says_what_to_do() {
        assert!(Device::Cpu.check().is_ok());
        // No GPU on a build machine without the feature, or without a driver with it; where
        // one exists (a GPU machine), the check passes.
        match Device::Cuda(0).check() {
            Ok(()) => assert!(Device::cuda_compiled()),
            Err(e) => {
                let m = e.to_string();
                assert!(matches!(e, Error::Device(_)), "{m}");
                if Device::cuda_compiled() {
                    assert!(
                        m.contains("driver") || m.contains("device") || m.contains("nvrtc"),
                        "{m}"
                    );
                } else {
                    assert!(m.contains("--features cuda"), "{m}");
                }
            }
        }
        // A device number beyond any machine's: an error, not a panic.
        assert!(Device::Cuda(1_000_000).check().is_err());
    }
}

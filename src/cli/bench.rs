//! `hyperprox bench`: the bench report, one JSON line per case and solver.

use super::common::CliResult;
use hyperprox::core::device::Device;

/// Runs the bench cases of [`hyperprox::bench_cases::run`] (or, on a GPU, those of
/// `hyperprox::core::cuda::bench`) and prints each line as it comes.
pub fn run(quick: bool, device: Device) -> CliResult<()> {
    let mut sink = |line: serde_json::Value| println!("{line}");
    match device {
        Device::Cpu => hyperprox::bench_cases::run(quick, &mut sink)?,
        #[cfg(feature = "cuda")]
        Device::Cuda(_) => {
            let gpu = device.gpu()?.expect("a CUDA device");
            hyperprox::core::cuda::bench::run(&gpu, quick, &mut sink)?;
            // DU-ISTA / DU-IHT training on the device against the CPU, in the same run.
            hyperprox::unfolded::experiments::bench_device(
                device,
                if quick { 3 } else { 20 },
                &mut sink,
            )?;
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => device.check()?,
    }
    Ok(())
}

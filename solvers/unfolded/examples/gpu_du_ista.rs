//! DU-ISTA trained on a GPU beside the same training on the CPU: the device is a setting of
//! the training configuration, nothing else changes.
//!
//! ```sh
//! cargo run --release -p hyperprox-unfolded --features cuda --example gpu_du_ista [-- cuda:0]
//! ```
//!
//! Trains 16 layers on the default setting (N = 500, M = 250, p = 0.1, 40 dB), 5 minibatches of
//! 100 per layer (incremental), on the CPU and on the device; prints both times and the largest
//! relative difference of the learned step sizes (rounding only). Without a usable GPU (or a
//! build without `--features cuda`) it prints why and exits with status 1.

use hyperprox_core::device::Device;
use hyperprox_unfolded::train::{train, TrainConfig};
use hyperprox_unfolded::{ModelKind, ModelSpec, Problem, Unfolded, UnfoldedModel};
use std::time::Instant;

fn main() {
    let device: Device = match std::env::args().nth(1).unwrap_or("cuda".into()).parse() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(device) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(device: Device) -> hyperprox_core::Result<()> {
    device.check()?;
    let problem = Problem::gaussian(250, 500, 1)?;
    let mut steps = vec![];
    for dev in [Device::Cpu, device] {
        let mut model = Unfolded::new(ModelSpec::new(ModelKind::DuIsta, 16), &problem)?;
        let cfg = TrainConfig {
            steps_per_layer: 5,
            final_steps: 0,
            val_size: 200,
            device: dev,
            ..Default::default()
        };
        let t = Instant::now();
        let st = train(&mut model, &problem, &cfg, None, None, &mut |_| {})?;
        let dt = t.elapsed().as_secs_f64();
        let last = st.history.last().map_or(f64::NAN, |h| h.val_loss);
        println!(
            "{dev:>5}: {} minibatches in {dt:.2} s ({:.1}/s), validation loss {last:.4e}",
            st.step,
            st.step as f64 / dt
        );
        steps.push(model.params().to_vec());
    }
    let diff = steps[0]
        .iter()
        .zip(&steps[1])
        .map(|(a, b)| (a - b).abs() / a.abs())
        .fold(0.0f64, f64::max);
    println!("learned step sizes α_t (CPU): {:.4?}", steps[0]);
    println!("largest relative difference CPU vs {device}: {diff:.2e}");
    Ok(())
}

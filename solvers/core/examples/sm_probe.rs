use hyperprox_core::diff::Differentiable;
use hyperprox_core::nn::train::Arch;
use hyperprox_core::nn::{DropoutControl, ImageShape};
use ndarray::Array2;
fn main() {
    let ctl = DropoutControl::new(0);
    let net = Arch::parse("mlp:256,256")
        .unwrap()
        .build::<f32>(ImageShape::new(1, 8, 8), 10, 0.0, &ctl)
        .unwrap();
    let p = net.init(0);
    let x = Array2::<f32>::from_shape_fn((128, 64), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 0.1);
    let o = net
        .forward(&p, x.view(), Array2::zeros((128, 0)).view())
        .unwrap();
    println!("{:?}", o.row(0));
    println!(
        "min {} max {}",
        o.iter().cloned().fold(f32::INFINITY, f32::min),
        o.iter().cloned().fold(f32::NEG_INFINITY, f32::max)
    );
}

#!/usr/bin/env python3
"""Neural-network training throughput against PyTorch on the CPU, in one run (issue 12).

The same architectures on both sides, float32, 8x8 single-channel inputs, 10 classes,
minibatch 128, random inputs in [0, 1] and random labels; one step is the forward pass, the
softmax cross-entropy and the backward pass (parameter and input gradients), no optimizer
step. Each side is timed for at least --seconds after two warm-up steps, with the same number
of threads (torch.set_num_threads(k), `hyperprox --threads k`).

* MLP 64-256-256-10 (ReLU): `--arch mlp:256,256`
* CNN: conv 3x3 (1->16, padding 1), ReLU, max-pool 2; conv 3x3 (16->32, padding 1), ReLU,
  max-pool 2; dense 128->10: `--arch cnn:16,32`

Prints one JSON line per case with both throughputs and the ratio hyperprox / PyTorch
(> 1: hyperprox is faster).

Usage (a local venv; CI does not need it):
    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch
    cargo build --release --bin hyperprox
    /tmp/torchenv/bin/python benches/peers_nn.py [--bin target/release/hyperprox] \
        [--threads 1,2] [--seconds 3]
"""
import argparse
import json
import subprocess
import time

import torch


def mlp():
    return torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )


def cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32 * 2 * 2, 10),
    )


def torch_throughput(model, image, batch, seconds):
    g = torch.Generator().manual_seed(0)
    shape = (batch, 1, 8, 8) if image else (batch, 64)
    x = torch.rand(shape, generator=g, requires_grad=True)
    y = torch.randint(0, 10, (batch,), generator=g)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        model.zero_grad(set_to_none=True)
        x.grad = None
        loss_fn(model(x), y).backward()

    step()
    step()
    steps, t0 = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - t0 < seconds:
        step()
        steps += 1
    return steps * batch / (time.perf_counter() - t0)


def ours(binary, threads, arch, batch, seconds):
    out = subprocess.run(
        [binary, "--threads", str(threads), "nn", "bench", "--arch", arch,
         "--batch", str(batch), "--seconds", str(seconds)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["samples_per_second"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/hyperprox")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--batch", type=int, default=128)
    a = ap.parse_args()
    for k in [int(t) for t in a.threads.split(",")]:
        torch.set_num_threads(k)
        for name, arch, make, image in [
            ("mlp 64-256-256-10", "mlp:256,256", mlp, False),
            ("cnn 16,32", "cnn:16,32", cnn, True),
        ]:
            torch.manual_seed(0)
            t = torch_throughput(make(), image, a.batch, a.seconds)
            h = ours(a.bin, k, arch, a.batch, a.seconds)
            print(json.dumps({
                "case": name, "threads": k, "batch": a.batch,
                "torch_samples_per_s": round(t), "hyperprox_samples_per_s": round(h),
                "ratio": round(h / t, 3), "torch": torch.__version__,
            }))


if __name__ == "__main__":
    main()

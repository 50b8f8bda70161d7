#!/usr/bin/env python3
"""Kill/resume table for the long commands (issue 17).

For each command: one uninterrupted run; one run killed with SIGKILL at about half of the
uninterrupted run's time (after its first checkpoint), then resumed with `--resume`. Reports
the work lost (kill time minus the time the last checkpoint was written), the resumed run's
time, and whether the result is identical (θ and history for `tune`, the model file for
`lpn train` and `unfold train`).

Usage: scripts/kill_resume.py [path/to/hyperprox] [--small]
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BIN = next((a for a in sys.argv[1:] if not a.startswith("--")), "target/release/hyperprox")
SMALL = "--small" in sys.argv

CASES = [
    ("tune tv (MAID, 8 images 64²)",
     ["tune", "tv", "--images", "8", "--size", "64", "--max-iters", "40"], "tune"),
    ("tune foe (MAID, 2 images 32²)",
     ["tune", "foe", "--images", "2", "--size", "32", "--max-iters", "12"], "tune"),
    ("tune logreg (MAID)",
     ["tune", "logreg", "--max-iters", "15"], "tune"),
    ("lpn train (digits, quick)",
     ["lpn", "train", "--data", "digits", "--quick", "--checkpoint-every", "50"], "model"),
    ("unfold train (LISTA, quick)",
     ["unfold", "train", "--model", "lista", "--quick"], "model"),
]
if SMALL:
    CASES = [
        ("tune tv", ["tune", "tv", "--images", "3", "--size", "24", "--max-iters", "10"], "tune"),
        ("unfold train", ["unfold", "train", "--model", "du-ista", "--quick", "--layers", "4",
                          "--n", "60", "--m", "30"], "model"),
    ]


def run(args, out, extra=()):
    t0 = time.time()
    subprocess.run([BIN, *args, "--out", out, *extra], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.time() - t0


def result(out, kind):
    if kind == "tune":
        r = json.load(open(os.path.join(out, "report.json")))
        return (json.dumps(r["theta"]), open(os.path.join(out, "history.json")).read())
    return open(os.path.join(out, "model.json"), "rb").read()


def main():
    root = tempfile.mkdtemp(prefix="kill_resume_")
    rows = []
    for name, args, kind in CASES:
        full, cut = os.path.join(root, "full"), os.path.join(root, "cut")
        for d in (full, cut):
            shutil.rmtree(d, ignore_errors=True)
        t_full = run(args, full)
        ckpt = os.path.join(cut, "checkpoint.json")
        t0 = time.time()
        child = subprocess.Popen([BIN, *args, "--out", cut],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not os.path.exists(ckpt) and child.poll() is None:
            time.sleep(0.001)
        # Kill at half the uninterrupted time (or at once if the first checkpoint came later).
        while time.time() - t0 < 0.5 * t_full and child.poll() is None:
            time.sleep(0.001)
        t_kill = time.time()
        child.send_signal(signal.SIGKILL)
        child.wait()
        if os.path.exists(os.path.join(cut, "report.json")):
            rows.append((name, t_full, None, None, None, "finished before the kill"))
            continue
        lost = t_kill - os.path.getmtime(ckpt)
        t_res = run(args, cut, ["--resume"])
        same = result(full, kind) == result(cut, kind)
        rows.append((name, t_full, t_kill - t0, lost, t_res, "yes" if same else "NO"))
    shutil.rmtree(root, ignore_errors=True)
    print("| command | uninterrupted | killed at | work lost | resumed run | identical |")
    print("|---|---|---|---|---|---|")
    for name, tf, tk, lost, tr, same in rows:
        fmt = lambda v: "–" if v is None else f"{v:.2f} s"
        print(f"| {name} | {fmt(tf)} | {fmt(tk)} | {fmt(lost)} | {fmt(tr)} | {same} |")
    return 0 if all(r[5] == "yes" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

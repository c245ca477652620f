"""Do the authors' Keras training details help or hurt? One short CPU run per variant on the generated
sample, everything else equal, scored on its held-out videos as the benchmark scores them.

    python benchmarks/keras_defaults.py [--train 4] [--val 2] [--frames 12] [--seeds 0 1]

Variants: ``keras`` (glorot_uniform kernels, zero biases, BatchNorm momentum 0.01 / eps 1e-3: the
defaults) and ``pytorch`` (PyTorch's layer initialization, momentum 0.1 / eps 1e-5). Each trains one
epoch (lr 1e-3, batches of 2, precise BN on 16 windows) from the same random-weight trunk features,
then predicts every frame of the validation videos with `sal3d predict` and scores CC and NSS
against the sample's maps and fixations with `sal3d evaluate`. Prints one line per run and the mean
per variant.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import sal3d
from sal3d.pipeline.choices import DEFAULT_INITIALIZATION, KERAS_BATCHNORM, TORCH_BATCHNORM
from sal3d.pipeline.progress import say
from sal3d.pipeline.sample import SampleSpec, make_sample

VARIANTS = {"keras": dict(init="glorot_uniform", **KERAS_BATCHNORM),
            "pytorch": dict(init=DEFAULT_INITIALIZATION, **TORCH_BATCHNORM)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=4)
    parser.add_argument("--val", type=int, default=2)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    results = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_sample(work / "data", SampleSpec(train=args.train, val=args.val, frames=args.frames))
        sal3d.extract(work / "data", str(work / "features.zarr"), weights="random", device="cpu")
        for seed in args.seeds:
            for name, variant in VARIANTS.items():
                run = work / f"{name}-{seed}"
                summary = sal3d.train_decoder(str(work / "features.zarr"), run, epochs=1, lr=1e-3, batch_size=2,
                                              val_windows=4, bn_windows=16, seed=seed, device="cpu", **variant)
                sal3d.predict(str(work / "features.zarr"), summary.best_path, run / "maps", split="val",
                              device="cpu")
                scores = sal3d.evaluate(run / "maps", work / "data", split="val")
                results[name].append((scores["cc"], scores["nss"]))
                say(f"keras_defaults: {name} seed {seed}: held-out CC {scores['cc']:.3f}, NSS {scores['nss']:.3f}")
    for name, runs in results.items():
        print(f"{name:8s} mean over {len(runs)} seeds: CC {statistics.mean(r[0] for r in runs):.3f}, "
              f"NSS {statistics.mean(r[1] for r in runs):.3f}  (runs: "
              + ", ".join(f"{c:.3f}/{n:.3f}" for c, n in runs) + ")")


if __name__ == "__main__":
    main()

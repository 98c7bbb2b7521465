"""``python -m datamodules.synthetic --out data/synthetic-sst``: write the synthetic SST corpus."""

from __future__ import annotations

import argparse
import time

from datamodules.synthetic.sentiment import write_synthetic_sst


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and write the corpus."""
    parser = argparse.ArgumentParser(
        prog="python -m datamodules.synthetic",
        description="Write a synthetic sentiment corpus (SST trees + GLUE SST-2 TSVs) whose "
        "labels need negation, intensifiers and contrast.",
    )
    parser.add_argument("--out", default="data/synthetic-sst", help="output folder")
    parser.add_argument("--n-train", type=int, default=2000, help="training sentences")
    parser.add_argument("--n-dev", type=int, default=400, help="dev sentences")
    parser.add_argument("--n-test", type=int, default=400, help="test sentences")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = write_synthetic_sst(args.out, args.n_train, args.n_dev, args.n_test, args.seed)
    files = ", ".join(sorted(p.name for p in out.iterdir() if p.is_file()))
    print(f"wrote {files} to {out} in {time.perf_counter() - start:.2f}s")


if __name__ == "__main__":
    main()

"""``python -m datamodules.synthetic --out data/synthetic-sst``: write the synthetic SST corpus.

``python -m datamodules.synthetic images --format cifar10 --out data/synthetic-cifar10``: write
a synthetic CIFAR-10 (or ``--format stl10``: STL-10) set in the official file format.

``python -m datamodules.synthetic face --format vocaset --out data/synthetic-vocaset``: write
talking heads as the converted VOCASET layout (``--format voca-release``: the four release
files, for ``make prepare-voca``; ``--format biwi``: the BIWI layout).
"""

from __future__ import annotations

import argparse
import time

from datamodules.text.synthetic import write_synthetic_sst


def _images(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from datamodules.images.synthetic import write_synthetic_cifar10, write_synthetic_stl10

    start = time.perf_counter()
    out = args.out or f"data/synthetic-{args.format}"
    try:
        if args.format == "cifar10":
            written = write_synthetic_cifar10(out, args.n_train, args.n_test, args.seed)
        else:
            written = write_synthetic_stl10(
                out, args.n_train, args.n_test, args.n_unlabeled, args.seed
            )
    except ValueError as exc:
        parser.error(f"images: {exc}")
    files = ", ".join(sorted(p.name for p in written.folder.iterdir() if p.is_file()))
    print(f"wrote {files} to {written.folder} in {time.perf_counter() - start:.2f}s")


def _face(args: argparse.Namespace) -> None:
    from datamodules.face import synthetic as face

    start = time.perf_counter()
    out = args.out or f"data/synthetic-{args.format}"
    write = {
        "vocaset": face.ensure_synthetic_voca,
        "voca-release": face.write_synthetic_voca_release,
        "biwi": face.write_synthetic_biwi,
    }[args.format]
    folder = write(out, seed=args.seed, engine=args.engine)
    names = ", ".join(sorted(p.name for p in folder.iterdir()))
    print(f"wrote {names} to {folder} in {time.perf_counter() - start:.2f}s")


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
    commands = parser.add_subparsers(dest="command", title="other data sets")
    images = commands.add_parser(
        "images",
        help="CIFAR-10 / STL-10 files of class-coloured shapes",
        description="Write images of class-dependent shapes and colours in the official "
        "CIFAR-10 (cifar-10-batches-py/) or STL-10 (stl10_binary/) file format.",
    )
    images.add_argument("--format", choices=("cifar10", "stl10"), default="cifar10")
    images.add_argument(
        "--out",
        help="folder that receives cifar-10-batches-py/ or "
        "stl10_binary/ (default: data/synthetic-FORMAT)",
    )
    images.add_argument("--n-train", type=int, default=2000, help="training images")
    images.add_argument("--n-test", type=int, default=500, help="test images")
    images.add_argument("--n-unlabeled", type=int, default=0, help="STL-10 unlabeled images")
    images.add_argument("--seed", type=int, default=0)
    face = commands.add_parser(
        "face",
        help="talking heads: VOCASET (converted or release files) or BIWI layout",
        description="Write speech (espeak-ng, else formants) and a procedural head whose jaw "
        "and lips move with it, in the VOCASET or BIWI file layout.",
    )
    face.add_argument("--format", choices=("vocaset", "voca-release", "biwi"), default="vocaset")
    face.add_argument("--out", help="output folder (default: data/synthetic-FORMAT)")
    face.add_argument("--engine", choices=("auto", "espeak", "formant"), default="auto")
    face.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "images":
        _images(parser, args)
        return
    if args.command == "face":
        _face(args)
        return
    start = time.perf_counter()
    out = write_synthetic_sst(args.out, args.n_train, args.n_dev, args.n_test, args.seed)
    files = ", ".join(sorted(p.name for p in out.iterdir() if p.is_file()))
    print(f"wrote {files} to {out} in {time.perf_counter() - start:.2f}s")


if __name__ == "__main__":
    main()

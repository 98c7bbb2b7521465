"""Read an offline wandb run's ``run-<id>.wandb`` file back: the records the client wrote.

The file is a LevelDB-style log (a 7-byte header ``:W&B`` + magic + version, then 32 KiB
blocks of chunks, each with a 7-byte header: CRC32, length, type FULL/FIRST/MIDDLE/LAST) whose
payloads are ``wandb_internal_pb2.Record`` messages."""

from __future__ import annotations

import struct
import time
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[pb.Record]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb log"
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # the rest of a block too small for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        if kind == FULL:
            pending = chunk
        elif kind == FIRST:
            pending = chunk
            continue
        elif kind == MIDDLE:
            pending += chunk
            continue
        elif kind == LAST:
            pending += chunk
        record = pb.Record()
        record.ParseFromString(pending)
        records.append(record)
        pending = b""
    return records


def finished_run_records(run_dir: Path, timeout: float = 60.0) -> list[pb.Record]:
    """The records of the offline run in ``run_dir`` once its ``exit`` record is on disk (the
    wandb service writes the log asynchronously, after ``wandb.finish`` returns)."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_records(offline_run_file(run_dir))
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"the wandb run in {run_dir} wrote no exit record")
        time.sleep(0.5)


def offline_run_file(run_dir: Path) -> Path:
    """The one ``run-*.wandb`` file under ``run_dir/wandb/offline-run-*``."""
    files = list(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    return files[0]

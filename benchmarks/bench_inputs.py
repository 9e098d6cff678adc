"""Benchmark: events/s from a file to E2E jet frames, for the two input forms, against the E2E converters' way.

The same events (the shipped sample, or --input) are read in three ways, each ending with the 125 x 125 frames
of every jet in the 8 channels of tau_cnn.yaml (track pT/d0/dz, ECAL, HCAL, BPIX1-3):

  hits     RootSource (hits tree) -> JetFrameProducer
  rhtree   RHTreeSource (the same events written as an MLAnalyzer fevt/RHTree by e2e-convert) -> JetFrameProducer
  baseline a plain-uproot per-event loop over the RHTree that crops the dense maps as the E2E converters do:
           for each entry read the branches of that entry, reshape each map to 280 x 360, upsample HBHE 5 x 5 at
           E/25, stack the channels and crop 125 x 125 around each seed crystal (tower x 5 + 2) with phi
           wrap-around (np.concatenate of the two sides) and zero rows beyond the grid;
  bulk     the same crop loop over maps read in bulk (uproot.iterate), to show what the per-event reading costs;
  floor    only the decompression of the 8 maps' baskets (zlib/lz4 on bytes already in memory, one thread).

Each way runs --repeats times, interleaved; min and median events/s are printed with the 1-minute load average,
and the ratios to the baseline (goal: rhtree >= 20x). Frames of the four ways are checked equal first. The
RHTree file is written as ROOT writes MLAnalyzer's maps: one entry per basket, ZLIB level 1 (--compression lz4
to see what a faster codec gives).

    python benchmarks/bench_inputs.py [--input data/sample_tau_qcd.root] [--events 150] [--repeats 3]
           [--compression zlib|lz4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
sys.path.insert(0, str(REPO))

import uproot  # noqa: E402

from e2e.config import load_process  # noqa: E402
from e2e.io.rhtree_writer import write_rhtree  # noqa: E402
from e2e.process import Process  # noqa: E402

CHANNELS = ("track_pt", "track_d0", "track_dz", "ecal", "hcal", "bpix1", "bpix2", "bpix3")
MAPS = (
    "ECAL_tracksPt_atECALfixIP",
    "ECAL_tracksD0_atECALfixIP",
    "ECAL_tracksDz_atECALfixIP",
    "ECAL_energy",
    "HBHE_energy",
    "BPIX_layer1_ECAL_atPV",
    "BPIX_layer2_ECAL_atPV",
    "BPIX_layer3_ECAL_atPV",
)
W = 125


def frames_with_e2e(source: dict) -> list[np.ndarray]:
    """Frames of every jet through a source and JetFrameProducer (the process's own plan and read)."""
    desc = load_process(
        {
            "source": source,
            "modules": {"f": {"type": "JetFrameProducer", "channels": list(CHANNELS), "window": W}},
            "outputs": [{"file": "unused.root"}],
        }
    )
    Process(desc)
    src, prod = desc.source, desc.modules["f"]
    src.begin()
    out = []
    try:
        for item in src.plan():
            batch = src.read(item)
            prod.produce(batch)
            out.append(batch.get("f").data)
    finally:
        src.end()
    return out


def crop_event(maps: list[np.ndarray], seeds_ieta, seeds_iphi) -> list[np.ndarray]:
    """The E2E converters' crop of one event: full image [C, 280, 360], then one 125 x 125 crop per jet."""
    layers = []
    for name, m in zip(MAPS, maps, strict=True):
        m = np.asarray(m, dtype=np.float32)
        if name == "HBHE_energy":
            img = np.kron(m.reshape(56, 72), np.ones((5, 5), dtype=np.float32)) / np.float32(25)
        else:
            img = m.reshape(280, 360)
        layers.append(img)
    img = np.stack(layers)
    padded = np.zeros((len(CHANNELS), 280 + 2 * (W // 2), 360), dtype=np.float32)  # rows beyond the grid: zero
    padded[:, W // 2 : W // 2 + 280] = img
    crops = []
    off = W // 2
    for ti, tp in zip(seeds_ieta, seeds_iphi, strict=True):
        ieta, iphi = int(ti) * 5 + 2, int(tp) * 5 + 2
        rows = padded[:, ieta : ieta + W]  # padded row ieta + off = grid row ieta
        if iphi < off:  # wrap-around on the left
            crop = np.concatenate((rows[:, :, iphi - off :], rows[:, :, : iphi + off + 1]), axis=-1)
        elif iphi + off >= 360:  # wrap-around on the right
            crop = np.concatenate((rows[:, :, iphi - off :], rows[:, :, : iphi + off + 1 - 360]), axis=-1)
        else:
            crop = rows[:, :, iphi - off : iphi + off + 1]
        crops.append(crop)
    return crops


def frames_per_event(path: Path, n: int) -> list[np.ndarray]:
    """The baseline: one uproot read per entry, then the converters' crop."""
    tree = uproot.open(path)["fevt/RHTree"]
    branches = [*MAPS, "jetSeed_ieta", "jetSeed_iphi"]
    out = []
    for i in range(n):
        a = tree.arrays(branches, entry_start=i, entry_stop=i + 1, library="np")
        out += crop_event([a[m][0] for m in MAPS], a["jetSeed_ieta"][0], a["jetSeed_iphi"][0])
    return out


def frames_bulk(path: Path, n: int) -> list[np.ndarray]:
    """The converters' crop over maps read in chunks with uproot.iterate (no per-entry reads)."""
    tree = uproot.open(path)["fevt/RHTree"]
    out = []
    for a in tree.iterate([*MAPS, "jetSeed_ieta", "jetSeed_iphi"], entry_stop=n, step_size=50, library="np"):
        for e in range(len(a["jetSeed_ieta"])):
            out += crop_event([a[m][e] for m in MAPS], a["jetSeed_ieta"][e], a["jetSeed_iphi"][e])
    return out


def decompression_floor(path: Path, n: int) -> float:
    """Seconds to only decompress the baskets of the 8 maps of ``n`` entries (raw bytes already in memory, one
    thread): no reader of this file can be faster than this."""
    import struct
    import zlib

    import lz4.block

    tree = uproot.open(path)["fevt/RHTree"]
    blobs = []
    with open(path, "rb") as f:
        for name in MAPS:
            branch = tree[name]
            for i in range(branch.num_baskets):
                if branch.basket_entry_start_stop(i)[0] >= n:
                    break
                f.seek(int(branch.member("fBasketSeek")[i]))
                raw = f.read(int(branch.member("fBasketBytes")[i]))
                keylen = struct.unpack(">h", raw[14:16])[0]  # TKey: fNbytes, fVersion, fObjlen, fDatime, fKeylen
                blobs.append(raw[keylen:])
    t0 = time.perf_counter()
    for data in blobs:
        pos = 0
        while pos < len(data):  # ROOT compression blocks: 9-byte header, then the compressed bytes
            algo, csize = data[pos : pos + 2], int.from_bytes(data[pos + 3 : pos + 6], "little")
            usize = int.from_bytes(data[pos + 6 : pos + 9], "little")
            body = data[pos + 9 : pos + 9 + csize]
            if algo == b"ZL":
                zlib.decompress(body)
            elif algo == b"L4":
                lz4.block.decompress(body[8:], uncompressed_size=usize)  # 8 bytes of checksum first
            else:
                raise ValueError(f"decompression floor: compression {algo!r} not handled")
            pos += 9 + csize
    return time.perf_counter() - t0


def timed(fn: Callable[[], list[np.ndarray]]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def stacked(frames: list[np.ndarray]) -> np.ndarray:
    """[n_jets, C, W, W] of per-batch [n, C, W, W] or per-jet [C, W, W] arrays."""
    return np.concatenate([f if f.ndim == 4 else f[None] for f in frames])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", default=str(REPO / "data" / "sample_tau_qcd.root"), help="hits file")
    p.add_argument("--events", type=int, default=150, help="events to read (default 150: the shipped sample)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each way (default 3)")
    p.add_argument("--compression", default="zlib", choices=("zlib", "lz4", "zstd", "lzma"),
                   help="compression of the RHTree file (default zlib, ROOT's general-purpose default)")  # fmt: skip
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rh = Path(tmp) / "rhtree.root"
        n = write_rhtree([args.input], rh, max_events=args.events, compression=args.compression)
        size = rh.stat().st_size / 1e6
        print(
            f"{n} events; RHTree form {size:.1f} MB ({args.compression}, one entry per basket as ROOT writes them); "
            f"frames: {len(CHANNELS)} channels x {W}^2"
        )
        # the source block of process_configs/tau_cnn_rhtree.yaml: layer maps no channel uses are not read
        unused = {m: None for m in ("bpix4", "tib1", "tib2", "tob1", "tob2")}
        rhtree = {"type": "RHTreeSource", "files": [str(rh)], "step_size": 50, "maps": unused}
        ways: dict[str, Callable[[], list[np.ndarray]]] = {
            "hits": lambda: frames_with_e2e({"type": "RootSource", "files": [args.input], "max_events": n}),
            "rhtree": lambda: frames_with_e2e(rhtree),
            "baseline": lambda: frames_per_event(rh, n),
            "bulk": lambda: frames_bulk(rh, n),
        }
        reference = None
        for name, fn in ways.items():  # warm-up (numba cache, imports) and the equality check
            frames = stacked(fn())
            if reference is None:
                reference = frames
            np.testing.assert_allclose(frames, reference, rtol=1e-6, atol=0, err_msg=name)
        assert reference is not None
        print(f"frames of the four ways agree ({len(reference)} jets)")
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.repeats):
            for name, fn in ways.items():
                times[name].append(timed(fn))
        floor = min(decompression_floor(rh, n) for _ in range(args.repeats))
        load = os.getloadavg()[0]
        print(f"load average (1 min) {load:.2f}, {os.cpu_count()} cores, {args.repeats} repeats interleaved")
        print(f"{'way':10s} {'events/s min':>14s} {'median':>10s} {'x baseline (median)':>20s}")
        base = statistics.median(times["baseline"])
        for name, ts in times.items():
            rates = [n / t for t in ts]
            ratio = base / statistics.median(ts)
            print(f"{name:10s} {min(rates):14.1f} {statistics.median(rates):10.1f} {ratio:20.1f}")
        print(
            f"floor: decompressing the 8 maps alone (one thread, bytes in memory) {n / floor:.1f} events/s = "
            f"{base / floor:.1f}x the baseline's time: the most any reader of this file can gain on one core"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Graph nodes straight from the hits: the non-zero pixels of each jet's window (frameproducers.kernels.window).

Nodes are the window pixels where at least one channel is non-zero after thresholding, in ascending
p = r * W + c: exactly the non-zero pixels of the jet image with the same settings.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from dataformats.geometry import ECAL_N_IETA, ECAL_N_IPHI
from frameproducers.kernels.inputs import ChannelMap, JetSeeds, WindowHits, check_channels, check_seeds, check_window
from frameproducers.kernels.inputs import window_hits as checked_hits
from frameproducers.kernels.params import SERIAL_BELOW, frame_params, n_chunks, pool_for
from frameproducers.kernels.window import accumulate_window, effective_thresholds, scratch_length, window_scratch

_DPHI = 2.0 * math.pi / ECAL_N_IPHI  # rad per ECAL column
#: Graph-node pass modes: count only; write at given offsets; write speculatively into per-chunk regions.
_COUNT, _FILL, _SPECULATE = 0, 1, 2
_NO_I64 = np.zeros(0, np.int64)
#: One-pass node build: jets sampled per chunk to size the write regions, and the margin over their mean.
_NODE_SAMPLE_PER_CHUNK = 4
_NODE_CAPACITY_MARGIN = 1.5


class GraphNodes(NamedTuple):
    """The nodes of a batch of graphs (node_offsets kept apart)."""

    x: np.ndarray  # float32 [N, C (+ 2)]: channel values (then delta_eta, delta_phi [rad])
    pos: np.ndarray  # float32 [N, 2]: (r - h, c - h), crystals from the seed
    pixel: np.ndarray  # int32 [N]: r * W + c


@njit(cache=True)
def _sort_pixels(touched, n, flag, W, row_count, tmp):
    """Sort the distinct pixels ``touched[:n]`` ascending: a scan of the flagged bounding box when it is small
    for n, else a counting sort by row (``row_count`` [W + 1], ``tmp`` [n] scratch) and an insertion sort of
    the few columns of each row."""
    rmin = W
    rmax = -1
    cmin = W
    cmax = -1
    for q in range(n):
        p = touched[q]
        r = p // W
        c = p - r * W
        rmin = min(rmin, r)
        rmax = max(rmax, r)
        cmin = min(cmin, c)
        cmax = max(cmax, c)
    if (rmax - rmin + 1) * (cmax - cmin + 1) <= 16 * n:
        m = np.int64(0)
        for r in range(rmin, rmax + 1):
            for c in range(cmin, cmax + 1):
                if flag[r * W + c]:
                    touched[m] = r * W + c
                    m += 1
        return
    for r in range(rmin, rmax + 2):
        row_count[r] = 0
    for q in range(n):
        row_count[touched[q] // W + 1] += 1
    for r in range(rmin, rmax + 1):
        row_count[r + 1] += row_count[r]
    for q in range(n):
        p = touched[q]
        r = p // W
        tmp[row_count[r]] = p
        row_count[r] += 1
    # row_count[r] is now the end of row r (= the start of row r + 1); rows before rmin are empty
    start = np.int64(0)
    for r in range(rmin, rmax + 1):
        end = row_count[r]
        for i in range(start, end):
            p = tmp[i]
            j = i
            while j > start and touched[j - 1] > p:
                touched[j] = touched[j - 1]
                j -= 1
            touched[j] = p
        start = end


@njit(cache=True)
def _nodes_of_chunk(mode, t, j0, j1, offs, region, done, nodes, thr, n_mask, seeds, ecal, hcal, tracks, tracker,
                    channels, par, eta_centre):  # fmt: skip
    """The graph nodes of jets j0..j1-1 (chunk t of :func:`_graph_nodes`) with one scratch (a [C, W*W] window,
    its touched flags and list) reused across jets."""
    C = channels.scale.shape[0]
    W = par[0].window
    coordinates = par[0].coordinates
    h = W // 2
    WW = W * W
    sc = window_scratch(n_mask, WW)
    flag, touched = sc.flag, sc.touched  # locals: numba increfs a tuple attribute at each read in a loop
    x, pos, pixel = nodes
    buf = np.zeros((C, WW), np.float32)  # the window as an image: one compiled accumulate_window for both
    row_count = np.empty(W + 1, np.int64)
    tmp = np.empty(WW, np.int32)
    write = mode != _COUNT
    row = region[t] if mode == _SPECULATE else 0
    for j in range(j0, j1):
        n_t = accumulate_window(
            buf, sc, seeds.event[j], seeds.ieta[j], seeds.iphi[j], ecal, hcal, tracks, tracker, channels, par
        )
        if write and n_t > 1:
            _sort_pixels(touched, n_t, flag, W, row_count, tmp)
        seed_ieta = seeds.ieta[j]
        k0 = offs[j] if mode == _FILL else row
        k = k0
        for q in range(n_t):
            p = touched[q]
            flag[p] = 0
            nonzero = False
            for ch in range(C):
                v = buf[ch, p]
                if abs(v) <= thr[ch]:
                    buf[ch, p] = 0.0
                elif v != 0.0:
                    nonzero = True
            if nonzero:
                if mode == _SPECULATE and k >= region[t + 1]:
                    write = False  # the region is full: this jet and the rest of the chunk are only counted
                if write:  # node k: the channel values, the coordinates from the seed, the pixel
                    for ch in range(C):
                        x[k, ch] = buf[ch, p]
                    r = p // W
                    c = p - r * W
                    if coordinates:
                        x[k, C] = eta_centre[seed_ieta - h + r] - eta_centre[seed_ieta]
                        x[k, C + 1] = (c - h) * _DPHI
                    pos[k, 0] = r - h
                    pos[k, 1] = c - h
                    pixel[k] = p
                k += 1
            for ch in range(C):
                buf[ch, p] = 0.0
        if mode != _FILL:
            offs[j] = k - k0
        if mode == _SPECULATE and write:
            row = k
            done[2 * t] = j + 1 - j0
            done[2 * t + 1] = row - region[t]


@njit(parallel=True, cache=True)
def _graph_nodes(mode, offs, region, done, nodes, nch, seeds, ecal, hcal, tracks, tracker, channels, par, eta_centre):
    """The graph nodes of every jet, parallel over ``nch`` chunks of consecutive jets (the named tuples only pass
    through the prange body: numba drops writes through them there, numba#7135).

    mode _COUNT: offs[j] = node count. _FILL: write jet j's nodes from row offs[j] of ``nodes``.
    _SPECULATE: offs[j] = node count; chunk t writes its jets one after the other from row region[t] while
    they fit below region[t + 1]; done[2 t] = jets written (a prefix of the chunk), done[2 t + 1] = rows.
    """
    n_jets = seeds.event.shape[0]
    thr = effective_thresholds(channels)
    n_mask = scratch_length(ecal, hcal, tracks, tracker)
    for t in prange(nch):
        j0, j1 = t * n_jets // nch, (t + 1) * n_jets // nch
        _nodes_of_chunk(mode, t, j0, j1, offs, region, done, nodes, thr, n_mask, seeds, ecal, hcal, tracks, tracker,
                        channels, par, eta_centre)  # fmt: skip


@njit(cache=True)
def _graph_nodes_serial(mode, offs, region, done, nodes, seeds, ecal, hcal, tracks, tracker, channels, par, eta_centre):
    """:func:`_graph_nodes` with one chunk, in the calling thread without numba's parallel launch (a few jets:
    one event of the in-memory API)."""
    thr = effective_thresholds(channels)
    n_mask = scratch_length(ecal, hcal, tracks, tracker)
    _nodes_of_chunk(mode, 0, 0, seeds.event.shape[0], offs, region, done, nodes, thr, n_mask, seeds, ecal, hcal,
                    tracks, tracker, channels, par, eta_centre)  # fmt: skip


def _offsets_of(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _node_arrays(n: int, F: int) -> GraphNodes:
    return GraphNodes(np.empty((n, F), np.float32), np.empty((n, 2), np.float32), np.empty(n, np.int32))


def _seed_subset(seeds: JetSeeds, idx: np.ndarray) -> JetSeeds:
    return JetSeeds(seeds.event[idx], seeds.ieta[idx], seeds.iphi[idx])


def build_graph_nodes(
    seeds: JetSeeds,
    hits: WindowHits,
    channels: ChannelMap,
    W: int,
    dz_max: float,
    hcal_upsample: bool,
    coordinates: bool,
    eta_centre: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Graph nodes of every jet of ``seeds`` straight from the hits, parallel over chunks of jets.

    Nodes = window pixels with at least one non-zero channel after thresholding, in ascending
    p = r * W + c; a jet without hits in its window has 0 nodes. Returns
    ``node_offsets`` int64 [n_jets + 1], ``x`` float32 [N, C (+ 2)]: the image values (same units as
    :func:`~frameproducers.kernels.images.fill_jet_images`), then with ``coordinates`` (delta_eta,
    delta_phi [rad]) of the crystal centre from the seed crystal centre (``eta_centre`` float64 [280]: ECAL
    row centres, geometry.ecal_eta), ``pos`` float32 [N, 2] = (r - h, c - h) (crystals from the seed) and
    ``pixel`` int32 [N] = r * W + c.
    """
    n_jets = len(seeds.event)
    C = int(np.count_nonzero(np.asarray(channels.of_code) >= 0))
    channels = check_channels(channels, C)
    W = check_window(W)
    hits = checked_hits(hits)
    seeds = check_seeds(seeds, hits)
    eta_centre = np.ascontiguousarray(eta_centre, dtype=np.float64)
    if eta_centre.shape != (ECAL_N_IETA,):
        raise ValueError(f"eta_centre must have {ECAL_N_IETA} entries")
    F = C + (2 if coordinates else 0)
    par = frame_params(window=W, dz_max=float(dz_max), hcal_upsample=bool(hcal_upsample), coordinates=bool(coordinates))
    nch = n_chunks(n_jets)

    def run(
        mode: int,
        offs: np.ndarray,
        region: np.ndarray,
        done: np.ndarray,
        nodes: GraphNodes,
        jets: JetSeeds,
        chunks: int,
    ) -> None:
        with pool_for(len(jets.event)):
            _graph_nodes(mode, offs, region, done, nodes, chunks, jets, *hits, channels, par, eta_centre)

    counts = np.empty(n_jets, np.int64)
    if n_jets < SERIAL_BELOW:
        # a few jets (one event): one pass into room for every pixel of every window (at most W^2 nodes per
        # jet: nothing spills), then the rows written, copied out; one kernel call instead of two
        room = _node_arrays(n_jets * W * W, F)
        done = np.zeros(2, np.int64)
        region = np.array([0, n_jets * W * W], np.int64)
        _graph_nodes_serial(_SPECULATE, counts, region, done, room, seeds, *hits, channels, par, eta_centre)
        if n_jets == 0:  # (the setup warm-up's empty batch: the parallel kernel is compiled or loaded now too)
            run(_SPECULATE, counts, region, done, room, seeds, 1)
        assert done[0] == n_jets  # every jet fitted (its window's pixels at most)
        node_offsets = _offsets_of(counts)
        n = int(node_offsets[-1])
        return node_offsets, room.x[:n].copy(), room.pos[:n].copy(), room.pixel[:n].copy()
    none = _node_arrays(0, F)
    n_sample = _NODE_SAMPLE_PER_CHUNK * nch
    if n_jets <= 2 * n_sample:
        # small batch: count, then fill
        run(_COUNT, counts, _NO_I64, _NO_I64, none, seeds, nch)
        node_offsets = _offsets_of(counts)
        nodes = _node_arrays(int(node_offsets[-1]), F)
        run(_FILL, node_offsets, _NO_I64, _NO_I64, nodes, seeds, nch)
        return node_offsets, *nodes
    # one pass: chunks write into regions sized from the mean count of a sample of jets; the jets that do not
    # fit (rare) are filled afterwards at their final offsets
    sample = np.linspace(0, n_jets - 1, n_sample).astype(np.int64)
    sample_counts = np.empty(n_sample, np.int64)
    run(_COUNT, sample_counts, _NO_I64, _NO_I64, none, _seed_subset(seeds, sample), nch)
    per_jet = min(W * W, int(_NODE_CAPACITY_MARGIN * sample_counts.mean()) + 16)
    bounds = np.arange(nch + 1, dtype=np.int64) * n_jets // nch
    region = np.concatenate([[0], np.cumsum(np.diff(bounds) * per_jet)]).astype(np.int64)
    done = np.zeros(2 * nch, np.int64)
    regions = _node_arrays(int(region[-1]), F)
    run(_SPECULATE, counts, region, done, regions, seeds, nch)
    node_offsets = _offsets_of(counts)
    nodes = _node_arrays(int(node_offsets[-1]), F)
    spilled = []
    for t in range(nch):
        j_ok = bounds[t] + done[2 * t]
        dst = slice(node_offsets[bounds[t]], node_offsets[j_ok])
        src = slice(region[t], region[t] + done[2 * t + 1])
        for a, b in zip(nodes, regions, strict=True):
            a[dst] = b[src]
        spilled.append(np.arange(j_ok, bounds[t + 1]))
    spill = np.concatenate(spilled)
    if len(spill):
        run(_FILL, node_offsets[spill], _NO_I64, _NO_I64, nodes, _seed_subset(seeds, spill), n_chunks(len(spill)))
    return node_offsets, *nodes

"""Jet images: the W x W window of every jet as a dense [C, W, W] image (frameproducers.kernels.window)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from frameproducers.kernels.inputs import ChannelMap, JetSeeds, WindowHits, check_channels, check_seeds, check_window
from frameproducers.kernels.inputs import window_hits as checked_hits
from frameproducers.kernels.params import frame_params, n_chunks, pool_for
from frameproducers.kernels.window import (
    accumulate_window,
    effective_thresholds,
    scratch_length,
    threshold_touched,
    window_scratch,
)


@njit(cache=True)
def _fill_chunk(out, j0, j1, thr, n_mask, seeds, ecal, hcal, tracks, tracker, channels, par):
    """Images of jets j0..j1-1 into ``out`` [n_jets, C, W, W], with one scratch; thresholds ``thr`` (if any > 0)."""
    C = out.shape[1]
    W = out.shape[2]
    any_thr = False
    for c in range(C):
        if thr[c] > 0:
            any_thr = True
    sc = window_scratch(n_mask, W * W if any_thr else 0)  # touched pixels are recorded only for the thresholds
    for j in range(j0, j1):
        img = out[j].reshape((C, W * W))
        img[:] = 0.0
        n_t = accumulate_window(
            img, sc, seeds.event[j], seeds.ieta[j], seeds.iphi[j], ecal, hcal, tracks, tracker, channels, par
        )
        if any_thr:
            threshold_touched(img, sc, n_t, thr)


@njit(parallel=True, cache=True)
def _fill_jet_images(out, nch, seeds, ecal, hcal, tracks, tracker, channels, par):
    """Images of the jets ``seeds`` into ``out`` [n_jets, C, W, W], parallel over ``nch`` chunks of jets (the
    named tuples only pass through the prange body: numba drops writes through them there, numba#7135)."""
    n_jets = out.shape[0]
    thr = effective_thresholds(channels)
    n_mask = scratch_length(ecal, hcal, tracks, tracker)
    for t in prange(nch):
        j0, j1 = t * n_jets // nch, (t + 1) * n_jets // nch
        _fill_chunk(out, j0, j1, thr, n_mask, seeds, ecal, hcal, tracks, tracker, channels, par)


def fill_jet_images(
    out: np.ndarray, seeds: JetSeeds, hits: WindowHits, channels: ChannelMap, dz_max: float, hcal_upsample: bool
) -> np.ndarray:
    """Fill ``out`` float32 [n_jets, C, W, W] (C-contiguous, any content: each jet's slab is zeroed here)
    with the jet images of ``seeds``; returns ``out``. Parallel over jets.

    Units: ecal/hcal GeV, track_pt GeV, track_d0/track_dz the caller's d0v/dzv (cm or significance),
    tracker layers hit counts, all times ``channels.scale``; ``dz_max`` cm. Thresholds are applied (only when
    some threshold > 0) to the pixels the hits touched, recorded on the way, never by a pass over the whole image.
    """
    if out.ndim != 4 or out.dtype != np.float32 or not out.flags.c_contiguous or out.shape[2] != out.shape[3]:
        raise ValueError(f"out must be a C-contiguous float32 [n_jets, C, W, W] array, got {out.dtype} {out.shape}")
    n_jets, C, W, _ = out.shape
    check_window(W)
    if len(seeds.event) != n_jets:
        raise ValueError("jet_event must have n_jets = out.shape[0] entries")
    hits = checked_hits(hits)
    seeds = check_seeds(seeds, hits)
    channels = check_channels(channels, C)
    par = frame_params(window=W, dz_max=float(dz_max), hcal_upsample=bool(hcal_upsample))
    with pool_for(n_jets):
        _fill_jet_images(out, n_chunks(n_jets), seeds, *hits, channels, par)
    return out

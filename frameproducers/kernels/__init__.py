"""Numba kernels of the frame producers: jet images, jet graphs (nodes, kNN / radius edges) and jet shapes.

=================  ==========================================================================================
module             what
=================  ==========================================================================================
``cache``          numba's on-disk cache of the kernels, stale after a change to any of their sources
``jit``            the decorator of the functions compiled without reference counting
``inputs``         named tuples of the arrays the kernels read (hit collections, jets, channel map); checks
``params``         ``FRAME_PARAM_DTYPE``: the scalar settings as one numpy record; the work chunks
``window``         hits on the pixels of a jet window (shared by images and graph nodes)
``images``         :func:`fill_jet_images`: dense [C, W, W] images
``nodes``          :func:`build_graph_nodes`: the non-zero window pixels as graph nodes
``hitnodes``       :func:`build_hit_nodes`: tracks, crystals, towers and tracker hits of the window as nodes
``neighbors``      neighbour tables: sort keys, the padding rule, :func:`edge_index_from_neighbors`
``knn``            :func:`knn_pixels` (small / dense strategies), :func:`brute_force_knn_pixels`
``knn_sparse``     the tile-and-block strategy of :func:`knn_pixels` for sparse graphs
``knn_features``   :func:`knn_features`: kNN in feature space
``radius``         :func:`radius_pixels`: radius graphs in pixel space
``shapes``         :func:`fill_jet_shapes`, :data:`SHAPE_NAMES`
=================  ==========================================================================================

Data layout: a batch of events, each hit collection a named tuple of flat arrays plus ``offsets`` int64
[n_events + 1] (frameproducers.kernels.inputs); jets as :class:`JetSeeds` (event index and the ECAL crystal of
the frame centre) or :class:`JetAxes`. Channel configuration (:class:`ChannelMap`): ``of_code`` int64 [13]:
output channel of each channel code of :mod:`frameproducers.channels` (-1: not requested; any subset in any
order), ``scale`` float32 [C] and ``threshold`` float32 [C] (unscaled units: GeV, cm, counts).

Graph nodes are the window pixels where at least one channel is non-zero (ascending pixel index
p = r * W + c), or for hit graphs the detector objects themselves (:class:`HitJets`, :class:`NodeTracks`; by type,
then rank); edges come from kNN / radius searches on the pixel coordinates or on the node features.
No fastmath anywhere: the kernels reproduce the slow references of tests/frame_references.py and
tests/hit_graph_references.py.

Numba notes. (1) The per-window and per-graph functions are compiled without reference counting
(frameproducers.kernels.jit): numba would otherwise pay atomic increfs for the arrays of every inlined helper
call. (2) Numba drops writes through a named tuple's arrays inside a ``prange`` body (numba#7135): the
parallel drivers only pass named tuples on to a per-chunk function. (3) Numba stamps a function's cache with
its own file only; ``cache`` stamps the kernels' entries with all their sources, so an edit of window.py
recompiles images.py and nodes.py.

The public functions are thin Python wrappers: they check shapes, the channel configuration and the jets
(events and seeds in range), fill the settings record and call the parallel ``@njit`` kernels. Hit indices
must be on their grids (dataformats.schema validates them on reading); the kernels do no bounds checks.
"""

# first, before any kernel is defined: numba's cache entries of the kernels are stamped with all their sources
from frameproducers.kernels import cache  # noqa: F401
from frameproducers.kernels.hitnodes import HIT_FEATURES, HIT_PARAM_DTYPE, HIT_TYPES, build_hit_nodes, hit_node_params
from frameproducers.kernels.images import fill_jet_images
from frameproducers.kernels.inputs import (
    CaloHits,
    CellCentres,
    ChannelMap,
    HitJets,
    JetAxes,
    JetSeeds,
    NodeTracks,
    ShapeTracks,
    TrackerHits,
    WindowHits,
    WindowTracks,
    in_ieta_order,
)
from frameproducers.kernels.knn import brute_force_knn_pixels, knn_pixels
from frameproducers.kernels.knn_features import knn_features
from frameproducers.kernels.knn_select import smallest_per_row
from frameproducers.kernels.neighbors import edge_index_from_neighbors
from frameproducers.kernels.nodes import build_graph_nodes
from frameproducers.kernels.params import FRAME_PARAM_DTYPE, frame_params
from frameproducers.kernels.radius import radius_pixels
from frameproducers.kernels.shapes import SHAPE_NAMES, fill_jet_shapes

__all__ = [
    "SHAPE_NAMES",
    "in_ieta_order",
    "FRAME_PARAM_DTYPE",
    "frame_params",
    "CaloHits",
    "WindowTracks",
    "TrackerHits",
    "WindowHits",
    "JetSeeds",
    "ChannelMap",
    "JetAxes",
    "ShapeTracks",
    "CellCentres",
    "HitJets",
    "NodeTracks",
    "HIT_FEATURES",
    "HIT_TYPES",
    "HIT_PARAM_DTYPE",
    "hit_node_params",
    "build_hit_nodes",
    "fill_jet_images",
    "build_graph_nodes",
    "knn_pixels",
    "knn_features",
    "smallest_per_row",
    "radius_pixels",
    "edge_index_from_neighbors",
    "brute_force_knn_pixels",
    "fill_jet_shapes",
]

"""JetGraphProducer: jet graphs built directly from hits (nodes = non-empty pixels of the jet window)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataformats.geometry import ECAL_N_IETA, ecal_eta
from dataformats.products import JetGraphs
from e2e.event import EventBatch
from e2e.params import MAX_NEIGHBOURS, param
from frameproducers import kernels
from frameproducers.pixels import PixelParams, PixelProducer

#: ECAL row centres in eta, for the (delta_eta, delta_phi) node features.
ECAL_ETA_CENTRES = np.ascontiguousarray(ecal_eta(np.arange(ECAL_N_IETA)), dtype=np.float64)


def graph_edges(
    pixel: np.ndarray, x: np.ndarray, node_offsets: np.ndarray, params: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray | None]:
    """The fixed-k neighbour index (and, for radius graphs, the real neighbour counts) of graphs from their nodes.

    ``params``: the graph rule as JetGraphProducer's parameters or the record of a JetGraphs product (``edges``,
    ``space``, ``k``, ``radius``, ``self_loops``, ``window``). The one function that makes edges, for the
    producer and for training datasets (which rebuild them per minibatch), so both see the same graph.
    ``space: delta`` (hit graphs, frameproducers.hitgraphs): kNN in (delta_eta, delta_phi), the columns of ``x``
    named so in ``params['features']``, with knn_features' distance, tie and padding rules.
    """
    k, self_loops, window = int(params["k"]), bool(params["self_loops"]), int(params["window"])
    if params["edges"] == "radius":
        return kernels.radius_pixels(pixel, node_offsets, window, float(params["radius"]), k, self_loops)
    if params["space"] == "delta":
        features = list(params.get("features", ()))
        if "delta_eta" not in features or "delta_phi" not in features:
            raise ValueError(f"space 'delta' needs node features delta_eta and delta_phi; the graphs have {features}")
        columns = [features.index("delta_eta"), features.index("delta_phi")]
        return kernels.knn_features(np.ascontiguousarray(x[:, columns]), node_offsets, k, self_loops), None
    if params["space"] == "features":
        return kernels.knn_features(x, node_offsets, k, self_loops), None
    return kernels.knn_pixels(pixel, node_offsets, window, k, self_loops), None


class JetGraphProducer(PixelProducer):
    """Jet graphs from hits, never from a dense image.

    Nodes are the pixels of the jet window where any channel is non-zero (exactly the non-zero pixels
    of JetFrameProducer's frame with the same parameters), in row-major pixel order. Features: the
    channel values, then with ``coordinates`` the (delta_eta, delta_phi) of the crystal centre from
    the seed. Edges: the ``k`` nearest neighbours in pixel coordinates or in feature space, or all
    nodes within ``radius`` pixels (at most ``k`` per node). Jets with no hit in the window give empty
    graphs, counted in the run summary.

    Product ``<label>``: :class:`~dataformats.products.JetGraphs` with both the COO ``edge_index`` and
    the fixed-k ``neighbors`` index (padding rule: frameproducers.kernels.knn_pixels).
    """

    @dataclass
    class Params(PixelParams):
        coordinates: bool = param(True, "append (delta_eta, delta_phi) of each node to its features")
        edges: str = param(
            "knn", "edge rule: 'knn' (k nearest) or 'radius' (within radius, at most k)", choices=("knn", "radius")
        )
        space: str = param(
            "coordinates",
            "kNN distance: 'coordinates' (pixel row/column) or 'features'",
            choices=("coordinates", "features"),
        )
        k: int = param(
            16, "neighbours per node (kNN) or the most kept per node (radius)", minimum=1, maximum=MAX_NEIGHBOURS
        )
        radius: float = param(5.0, "radius in pixels (edges: radius)", minimum=0.0)
        self_loops: bool = param(False, "count each node as one of its own neighbours")

    def __init__(self, label: str, params: Any) -> None:
        super().__init__(label, params)
        if params.edges == "radius" and params.space == "features":
            from e2e.errors import ConfigError

            raise ConfigError(
                f"modules.{label}.space: radius graphs are built in pixel coordinates; "
                "use space: coordinates with edges: radius"
            )
        self.feature_names = self.pixels.channels + (("delta_eta", "delta_phi") if params.coordinates else ())

    def produces(self) -> dict[str, type]:
        return {"": JetGraphs}

    def produce(self, batch: EventBatch) -> None:
        px, p = self.pixels, self.params
        jets, seeds, jet_index = px.jets(batch)
        cut, dz_max = px.track_dz_cut(batch)
        if cut == math.inf:
            self.count("jets whose track pixels are the source's PV-track sums (dz_max not applied again)", len(jets))
        node_offsets, x, pos, pixel = kernels.build_graph_nodes(
            seeds,
            px.window_hits(batch),
            px.channel_map,
            p.window,
            cut,
            bool(p.hcal_upsample),
            bool(p.coordinates),
            ECAL_ETA_CENTRES,
        )
        neighbors, num_neighbors = graph_edges(pixel, x, node_offsets, vars(p))
        n_nodes = np.diff(node_offsets)
        self.count("empty graphs (no hit in the window)", int(np.count_nonzero(n_nodes == 0)))
        self.count("nodes", int(node_offsets[-1]))
        self.count("jets at the eta edge (rows beyond the grid are empty)", px.eta_edge_jets(seeds.ieta))
        record = {
            **px.record(dz_max),
            "coordinates": p.coordinates,
            "edges": p.edges,
            "space": p.space,
            "k": p.k,
            "radius": p.radius,
            "self_loops": p.self_loops,
            "features": list(self.feature_names),
        }
        batch.put(
            self.label,
            JetGraphs(
                jets.offsets,
                jet_index,
                record,
                x=x,
                pos=pos,
                pixel=pixel,
                node_offsets=node_offsets,
                neighbors=neighbors,
                num_neighbors=num_neighbors,
                feature_names=self.feature_names,
            ),
        )

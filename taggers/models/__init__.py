"""Tagger architectures: graph layers (gather form and PyG), graph and image networks."""

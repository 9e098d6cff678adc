"""Data formats of e2e: detector geometry and the hits-tree schema."""

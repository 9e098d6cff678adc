"""Console scripts of e2e (one file per script)."""

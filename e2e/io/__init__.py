"""ROOT input/output of e2e (uproot)."""

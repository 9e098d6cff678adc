"""Frame producers: E2E jet images, jet graphs and classical jet shapes from hits (numba kernels)."""

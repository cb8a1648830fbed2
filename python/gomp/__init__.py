"""gomp: a drop-in replacement for multiprocessing with a Go core."""

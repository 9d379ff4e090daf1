"""numba kernels: arrays and scalars in, caller-allocated arrays filled, row counts out."""

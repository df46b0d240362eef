"""minigrad: a tape-based autograd framework with Cython recurrent kernels."""

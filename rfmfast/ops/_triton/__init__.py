"""Kernels and host-side preparation shared by the Triton backends of several ops:
common (precision, point preparation, distance tiles, epilogues), product (the fused
kernel-times-values product), matrix (dense tiles). No op's triton.py imports another op's."""

"""Glue shared by the CPU backends of several ops: glue (torch tensors to the compiled C++
kernels rfmfast._C, point mapping and packing) and custom_op (the torch.library registration)."""

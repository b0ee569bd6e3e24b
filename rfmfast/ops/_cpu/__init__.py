"""Glue shared by the CPU backends of several ops: glue (torch tensors to the compiled C++
kernels rfmfast._C, point mapping and packing), custom_op (the torch.library registration, with
backward formulas where an op has them) and grads (the raw predictor gradients of kernel_grads,
agop and kernel_matmul's backward pass)."""

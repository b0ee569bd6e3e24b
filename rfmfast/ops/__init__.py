"""Fused kernel ops, one folder each: reference.py (plain PyTorch, the truth), cpu.py (C++),
triton.py (GPU), and __init__.py (the public function and its backend choice)."""

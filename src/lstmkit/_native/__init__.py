"""The fused native CPU engine: C++ kernels in csrc/, their binding in ops.py, autograd registration in formulas.py."""

"""The fused native CPU engine: C++ kernels in csrc/, their binding and autograd registration in ops.py."""

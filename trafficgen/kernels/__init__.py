"""numba kernels: arrays and scalars in, caller-allocated arrays filled, row counts out.

Kernels import only numpy, numba and each other (the ``kernels`` contract in pyproject.toml):
the codes they write (labels, TCP flags, protocols) are in ``codes``, header layouts in
``headers``, the decorators (``kernel``, ``helper``, ``inline``) in ``jit``. A kernel's tables
travel as a few named values (namedtuples of arrays and scalars, e.g. ``chat.ChatParams``,
``frames.PacketRows``), built once per model by ``trafficgen.classes``.

May import: numpy, numba (llvmlite for the sender) and other kernels; nothing else of the
package, which is why every other layer may import kernels.
"""

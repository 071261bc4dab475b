"""The mode of a run, chosen once: which arithmetic (default physics or nanoBragg.c's, quirks
included), where (device), in which precision, and whether autograd records the render.

The simulate command builds it from --c-parity/--device/--dtype (:meth:`Mode.from_tool`), the
Python API from its keywords (:meth:`Mode.choose`); :func:`nanobragg_cli.scene.build_scene` sets
``differentiable`` from the scene's parameters and the :class:`~nanobragg_cli.scene.Scene` holds
the result, which the kernel and the renderer read instead of deciding again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Mode:
    """c_parity: nanoBragg.c's single-threaded arithmetic (``--c-parity``); device; dtype: the
    geometry, Miller indices and scaling (float64 also for ``--dtype float32``: h = a·S loses
    digits to cancellation near the beam); work_dtype: the user's ``--dtype``, for the lattice
    transform, structure factors and the image; differentiable: a scene parameter requires
    grad, so the renderer differentiates the image chunk by chunk (render_grad); compile: when
    the fused kernel is used, ``auto``/``on``/``off`` (:mod:`nanobragg_cli.fused`)."""
    c_parity: bool = False
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float64
    work_dtype: torch.dtype = torch.float64
    differentiable: bool = False
    compile: str = "auto"

    @classmethod
    def choose(cls, *, c_parity: bool = False, dtype: torch.dtype = torch.float64,
               device="cpu", differentiable: bool = False, compile: str = "auto") -> "Mode":
        """The mode for a working precision ``dtype`` (float32 is mixed precision: geometry stays
        float64, see the class docstring)."""
        return cls(c_parity=bool(c_parity), device=torch.device(device),
                   dtype=torch.float64 if dtype == torch.float32 else dtype, work_dtype=dtype,
                   differentiable=bool(differentiable), compile=compile)

    @classmethod
    def from_tool(cls, tool) -> "Mode":
        """The mode of the command line's --c-parity, --dtype and --device
        (:class:`nanobragg_cli.tool_options.ToolOptions`)."""
        dtype = torch.float64 if tool.dtype == "float64" else torch.float32
        return cls.choose(c_parity=tool.c_parity, dtype=dtype, device=tool.device,
                          compile=tool.compile)

    @property
    def recording(self) -> bool:
        """Autograd records this render: a differentiable scene, outside ``torch.no_grad()``."""
        return self.differentiable and torch.is_grad_enabled()

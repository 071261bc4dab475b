"""Gradients of a chunked render in the memory of one chunk, whatever the detector size.

Left to itself, autograd keeps the intermediates of every pixel chunk until the backward pass
(about 1.6 kB per evaluation: gigabytes for a full detector). Here the rendered pixel values are
the output of one custom autograd function (:class:`ChunkedRender`) whose inputs are the scene's
differentiable tensors (those that require grad: detector frame, orientations, F grid, ...):

- forward: the no-grad render (:func:`nanobragg_cli.chunks.forward_chunks`), chunks concurrent
  on the CPU cores as without gradients; it saves only the inputs and, for ``--c-parity``'s
  interpolation kill-switch, the state before each chunk;
- backward: each chunk is rendered again with autograd recording, on detached copies of the
  inputs, and differentiated at once (a vector-Jacobian product with the incoming gradient of its
  pixels); its graph is freed before the next, chunks run concurrently, their input gradients
  are summed in chunk order (deterministic), and autograd carries the sum from the scene tensors
  back to the user's parameters. Chunks whose pixels receive no gradient are skipped.
  Under ``create_graph=True`` (double backward) the chunks are differentiated one after the other
  on the inputs themselves, so the result is differentiable again (memory then grows with the
  image, as the graph of the gradient must be kept).

:func:`chunked_loss` goes one step further for a loss that is a sum over pixel chunks: each
chunk is rendered with its graph, its loss differentiated at once, and only the loss and its
gradient in the scene's tensors accumulate, so the image is never held (:class:`ChunkedLoss`).
"""

from dataclasses import fields, is_dataclass, replace
from typing import Callable

import torch
from torch import Tensor

from .kernel import render_chunk
from .chunks import ChunkPlan, forward_chunks, map_chunks, sequential_state
from .scene import Scene

# Scene fields that hold no tensors of the parameters (walking them would only cost time)
_NOT_TENSORS = frozenset({"cfg", "mode", "mask"})


def _children(obj):
    return [(f.name, getattr(obj, f.name)) for f in fields(obj) if f.name not in _NOT_TENSORS]


def scene_inputs(scene: Scene) -> list:
    """The distinct tensors of ``scene`` (nested dataclasses and tuples included) that require
    grad, in field order: the inputs through which the kernel depends on the parameters."""
    found = {}

    def visit(v):
        if isinstance(v, Tensor):
            if v.requires_grad:
                found.setdefault(id(v), v)
        elif is_dataclass(v) and not isinstance(v, type):
            for _, x in _children(v):
                visit(x)
        elif isinstance(v, (tuple, list)):
            for x in v:
                visit(x)

    visit(scene)
    return list(found.values())


def with_inputs(scene: Scene, old: list, new: list) -> Scene:
    """A copy of ``scene`` in which every occurrence of the tensors ``old`` is ``new`` (same
    order); everything else is shared."""
    table = {id(o): n for o, n in zip(old, new)}

    def swap(v):
        if isinstance(v, Tensor):
            return table.get(id(v), v)
        if is_dataclass(v) and not isinstance(v, type):
            changes = {}
            for name, x in _children(v):
                y = swap(x)
                if y is not x:
                    changes[name] = y
            return replace(v, **changes) if changes else v
        if isinstance(v, (tuple, list)):
            items = [swap(x) for x in v]
            if all(a is b for a, b in zip(items, v)):
                return v
            return type(v)(*items) if hasattr(v, "_fields") else type(v)(items)
        return v

    return swap(scene)


class _RenderJob:
    """What the autograd function needs between its passes: the plan, the scene's inputs, the
    kill-switch state before each chunk, and the forward pass's by-products."""

    def __init__(self, plan: ChunkPlan, inputs: list, trace_pixels, progress):
        self.plan, self.inputs = plan, inputs
        self.trace_pixels, self.progress = trace_pixels, progress
        self.states, self.traces, self.omega_sum = {}, {}, None

    def forward(self) -> Tensor:
        plan = self.plan
        n = plan.pix.numel()
        values = torch.zeros(n, dtype=plan.scene.dtype, device=plan.scene.device)
        where = torch.arange(n, device=plan.scene.device)
        self.omega_sum, self.traces, self.states = forward_chunks(
            plan, self.trace_pixels, self.progress, values, where)
        return values

    def backward(self, grad_values: Tensor, create_graph: bool) -> list:
        plan = self.plan
        if create_graph:
            targets, scene = self.inputs, plan.scene
        else:
            targets = [x.detach().requires_grad_() for x in self.inputs]
            scene = with_inputs(plan.scene, self.inputs, targets)

        def job(start, _):
            stop = plan.stop(start)
            g = grad_values[start:stop]
            if not create_graph and not bool(g.any()):
                return None   # no gradient reaches these pixels: nothing to recompute
            with torch.enable_grad():
                out = render_chunk(scene, plan.pix[start:stop], self.states[start],
                                   plan.first_local(start))
                return torch.autograd.grad(out.values, targets, g, allow_unused=True,
                                           create_graph=create_graph)

        total = [None] * len(targets)

        def collect(grads):
            if grads is not None:
                for i, gi in enumerate(grads):
                    if gi is not None:
                        total[i] = gi if total[i] is None else total[i] + gi

        # states are known for every chunk, so only double backward needs one chunk at a time
        map_chunks(plan, job, collect, sequential=create_graph)
        return total


class ChunkedRender(torch.autograd.Function):
    """values (N,) of the plan's pixels as a function of the scene's inputs (module docstring)."""

    @staticmethod
    def forward(ctx, job: _RenderJob, *inputs):
        ctx.job = job
        return job.forward()

    @staticmethod
    def backward(ctx, grad_values):
        grads = ctx.job.backward(grad_values, create_graph=torch.is_grad_enabled())
        return (None, *grads)


def chunked_render(plan: ChunkPlan, trace_pixels=(), progress=None) -> tuple:
    """(values (N,) of ``plan.pix``, differentiable in the scene's parameters; Σ solid angles
    (0-dim, not differentiated); traces) at the memory of one chunk per worker."""
    job = _RenderJob(plan, scene_inputs(plan.scene), trace_pixels, progress)
    values = ChunkedRender.apply(job, *job.inputs)
    return values, job.omega_sum, job.traces


class _LossJob:
    def __init__(self, plan: ChunkPlan, inputs: list, loss_of_chunk: Callable):
        self.plan, self.inputs, self.loss_of_chunk = plan, inputs, loss_of_chunk
        self.grads = None

    def run(self, differentiate: bool) -> Tensor:
        plan = self.plan
        targets = [x.detach().requires_grad_() for x in self.inputs] if differentiate else []
        scene = with_inputs(plan.scene, self.inputs, targets) if differentiate else plan.scene
        work = scene.work_dtype

        def job(start, killed):
            stop = plan.stop(start)
            pix = plan.pix[start:stop]
            with torch.set_grad_enabled(differentiate):
                out = render_chunk(scene, pix, killed, plan.first_local(start))
                loss = self.loss_of_chunk(out.values.to(work), pix)
                if not isinstance(loss, Tensor) or loss.dim() != 0:
                    raise TypeError("the loss of a pixel chunk must be a 0-dim tensor")
                grads = None
                if differentiate and loss.requires_grad:
                    grads = torch.autograd.grad(loss, targets, allow_unused=True)
            return loss.detach(), grads, out.killed

        total = {"loss": torch.zeros((), dtype=work, device=scene.device),
                 "grads": [None] * len(targets)}

        def collect(result):
            loss, grads, killed = result
            total["loss"] = total["loss"] + loss
            for i, gi in enumerate(grads or ()):
                if gi is not None:
                    acc = total["grads"][i]
                    total["grads"][i] = gi if acc is None else acc + gi
            return killed

        killed = torch.zeros((), dtype=torch.bool, device=scene.device)
        map_chunks(plan, job, collect, sequential=sequential_state(scene), state=killed)
        self.grads = total["grads"]
        return total["loss"]


class ChunkedLoss(torch.autograd.Function):
    """Σ over chunks of a per-chunk loss, as a function of the scene's inputs: the forward pass
    computes the loss and its gradient together; the backward pass scales that gradient."""

    @staticmethod
    def forward(ctx, job: _LossJob, *inputs):
        ctx.job = job
        return job.run(differentiate=True)

    @staticmethod
    def backward(ctx, grad_loss):
        return (None, *[None if g is None else grad_loss * g for g in ctx.job.grads])


def chunked_loss(plan: ChunkPlan, loss_of_chunk: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Σ_chunks ``loss_of_chunk(values, pix)`` (values (P,) photons in the work dtype, pix (P,)
    flat pixel indices), differentiable in the scene's parameters when autograd records, with
    only one chunk's graph per worker alive at any time. Not differentiable twice."""
    inputs = scene_inputs(plan.scene)
    job = _LossJob(plan, inputs, loss_of_chunk)
    if inputs and torch.is_grad_enabled():
        return ChunkedLoss.apply(job, *inputs)
    return job.run(differentiate=False)

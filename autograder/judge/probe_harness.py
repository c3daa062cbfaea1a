"""The models and harnesses judge and probe share, so a reference is computed exactly as learner code is run.

The judge builds its models from plain specs (``build``) and runs a policy or
a pipeline the same way the probe runs the learner's (``run_isolated``,
``stages_for_step``, ``torch_pipeline_grads``). Standard library, torch and
gpipe_core only: the sandbox copies this file beside ``probe.py``, where
``gpipe_core`` is the assignment's grading view.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

LAYERS = {"Linear", "ReLU", "Tanh", "Sigmoid", "GELU", "SELU", "Softsign", "Flatten", "Dropout", "AlphaDropout",
          "LayerNorm"}


def build(spec: dict) -> nn.Sequential:
    """A model from a plain spec, weights fixed by ``spec["seed"]`` (judge and probe build the same one).

    ``{"seed": 3, "layers": [["Linear", 6, 16], ["Tanh"], ["Seq", [...]]]}`` or
    ``{"seed": 3, "factory": ["mlp", [5, 20], {"classes": 5, "dropout": 0.5}]}`` (gpipe_core.workloads.models).
    """
    torch.manual_seed(spec["seed"])
    if "factory" in spec:
        from gpipe_core.workloads import models

        name, args, kwargs = spec["factory"]
        if name not in ("mlp", "residual_mlp"):
            raise ValueError(f"unknown model factory {name!r}")
        return getattr(models, name)(*args, **kwargs)
    return nn.Sequential(*[_layer(item) for item in spec["layers"]])


def _layer(item: list) -> nn.Module:
    name, *args = item
    if name == "Seq":
        return nn.Sequential(*[_layer(i) for i in args[0]])
    if name not in LAYERS:
        raise ValueError(f"unknown layer {name!r}")
    return getattr(nn, name)(*args)


def loss_function(name: str) -> Any:
    if name == "energy":
        return lambda out, target: out.pow(2).mean()
    if name not in ("cross_entropy", "mse_loss"):
        raise ValueError(f"unknown loss {name!r}")
    return getattr(nn.functional, name)


def grads(model: nn.Module) -> list[Tensor | None]:
    return [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()]


class CountingRandom:
    """The stage's RNG as a policy sees it, counting what the policy does with it."""

    def __init__(self, rng: Any) -> None:
        self._rng, self.gets, self.sets, self.late = rng, 0, 0, False
        self._start = rng.get_state()

    def get_state(self) -> Tensor:
        self.gets += 1
        state = self._rng.get_state()
        if self.gets == 1:  # the first record taken after a dropout mask was drawn: the forward ran before it
            self.late = not torch.equal(state, self._start)
        return state

    def set_state(self, state: Tensor) -> None:
        self.sets += 1
        self._rng.set_state(state)


def run_isolated(policy: Any, model: nn.Module, x: Tensor, seed: int, grad_output: Tensor | None = None,
                 loss: bool = False) -> dict:
    """Forward then backward of one micro-batch under ``policy``, as a stage runs them (notebook 04's harness)."""
    from gpipe_core.engine.rng import StageRandom

    stage_rng = StageRandom(model, torch.device("cpu"))
    stage_rng.generator.manual_seed(seed)
    rng = CountingRandom(stage_rng)
    run = (lambda h: model(h).pow(2).mean()) if loss else model
    global_calls: list[str] = []  # torch's global RNG, which the stage's dropout does not draw from
    originals = {name: getattr(torch, name) for name in ("get_rng_state", "set_rng_state")}

    def counted(name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            global_calls.append(name)
            return originals[name](*args, **kwargs)
        return call

    try:
        for name in originals:
            setattr(torch, name, counted(name))
        with stage_rng.active():
            out, saved = policy.forward(run, x, rng)
            forward_sets = rng.sets
            if not loss and grad_output is None:
                grad_output = torch.ones_like(out)
            grad = policy.backward(run, saved, grad_output, rng)
    finally:
        for name, original in originals.items():
            setattr(torch, name, original)
        stage_rng.remove()
    return {"out": out, "grad": grad, "grads": grads(model), "rng_gets": rng.gets,
            "rng_sets_backward": rng.sets - forward_sets, "rng_recorded_late": rng.late,
            "global_rng": bool(global_calls)}


def stages_for_step(net: nn.Sequential, balance: list[int], x: Tensor, y: Tensor, M: int, seed: int,
                    checkpoint: object = "never") -> tuple:
    """The engine's stages over ``net``, ready for one training step of M micro-batches (notebook 05's helper).

    The probe passes its own storing ``checkpoint`` policy: the grading view of 05 has none with a body.
    """
    from gpipe_core.engine.common import Loss
    from gpipe_core.engine.partition import split_module
    from gpipe_core.engine.stage import Stage

    stages = [Stage(j, part, torch.device("cpu"), checkpoint) for j, part in enumerate(split_module(net, balance))]
    xs, ys = list(torch.tensor_split(x, M)), list(torch.tensor_split(y, M))
    loss = Loss(nn.functional.cross_entropy, ys, [len(t) / len(x) for t in xs])
    for stage in stages:
        stage.begin_step(M, seed, loss if stage.index == len(stages) - 1 else None, None)
    return stages, xs


def make_optimizer(spec: list, params: Any) -> torch.optim.Optimizer:
    name, kwargs = spec
    if name not in ("SGD", "Adam"):
        raise ValueError(f"unknown optimizer {name!r}")
    return getattr(torch.optim, name)(params, **kwargs)


def torch_pipeline_grads(model: nn.Module, x: Tensor, y: Tensor, loss_fn: Any, M: int, steps: int) -> list:
    """The gradients torch's ScheduleGPipe leaves after ``steps`` steps with scale_grads=False (notebook 06)."""
    from torch.distributed.pipelining import PipelineStage, ScheduleGPipe

    from gpipe_core.distributed import one_process

    model.zero_grad(set_to_none=True)
    with one_process():
        stage = PipelineStage(model, 0, 1, torch.device("cpu"))
        schedule = ScheduleGPipe(stage, M, loss_fn=loss_fn, scale_grads=False)
        for _ in range(steps):
            schedule.step(x, target=y)
    return grads(model)

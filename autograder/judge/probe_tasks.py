"""The probe's tasks: each calls the learner's definitions on the judge's inputs and returns plain values.

One task is one question the judge asks (``ask.task(name, ...)`` in a judge
module): call a learner function, run a learner policy inside the engine,
train through the learner's loop. The probe process (``probe.py``) runs each
task in a fresh child process, so nothing one task's learner code did is
there for the next, and encodes what it returns (``probe_codec.encode``).
Measured tasks (memory held, calls made) measure here, beside learner code:
what CPython cannot stop there, the review holds (review/capabilities.py).
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import Tensor, nn

if __package__:  # imported by the judge and its tests
    from . import probe_codec as codec
    from . import probe_harness as harness
else:  # run in the sandbox, beside copies of its helpers
    import probe_codec as codec
    import probe_harness as harness

# Tasks whose learner code runs beside a measurement (or a whole training step): each gets a process of its
# own. Plain calls of one check share one child (they only return data the judge compares).
MEASURED = frozenset({"accumulate", "measure_costs", "engine_run", "recompute_isolated", "recompute_gpipe",
                      "recompute_saved", "recompute_memory", "assemble", "execute", "train", "micro_batch_loss"})


def error_data(exc: BaseException) -> dict:
    """An exception as plain data: type, message, and the learner's line it came from."""
    message = str(exc) if not isinstance(exc, KeyboardInterrupt) else "interrupted"
    where = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith("learner.py"):
            where = f"{tb.tb_frame.f_code.co_name}, line {tb.tb_lineno}"
        tb = tb.tb_next
    return {"type": type(exc).__name__, "message": message[:3000], "where": where}


def _learner(module: Any, name: str) -> Any:
    if not hasattr(module, name):
        raise NameError(f"your notebook defines no {name!r} that the grader could load")
    return getattr(module, name)


def task_loaded(m: Any) -> None:
    """Nothing: the child that runs it only shows whether the learner's module loads."""


def task_call(m: Any, fn: str, args: list, kwargs: dict) -> Any:
    return _learner(m, fn)(*args, **kwargs)


def task_accumulate(m: Any, model: dict, x: Tensor, y: Tensor, loss: str, cuts: list[int], repeat: bool) -> dict:
    net = harness.build(model)
    seen: list[int] = []
    order: list[str] = []  # "F" per forward of the model, "B" when a backward goes through that forward's output

    def forward_done(mod: Any, a: Any, out: Any) -> None:
        order.append("F")
        if isinstance(out, Tensor) and out.grad_fn is not None:
            out.grad_fn.register_hook(lambda *_: order.append("B"))

    net.register_forward_pre_hook(lambda mod, a: seen.append(int(a[0].shape[0])))
    net.register_forward_hook(forward_done)
    xs, ys = list(torch.tensor_split(x, cuts)), list(torch.tensor_split(y, cuts))
    value = _learner(m, "accumulate_gradients")(net, xs, ys, harness.loss_function(loss))
    out = {"loss": value, "grads": harness.grads(net), "forward_sizes": list(seen), "order": list(order)}
    if repeat:
        _learner(m, "accumulate_gradients")(net, xs, ys, harness.loss_function(loss))
        out["grads2"] = harness.grads(net)
    return out


def task_measure_costs(m: Any, model: dict, sample: Tensor, repeats: int) -> dict:
    net = harness.build(model)
    runs = [[0, 0] for _ in net]  # per layer: forwards run, backwards through it (what a cost claims to time)

    def counter(i: int) -> Any:
        def count(module: Any, args: Any, out: Any) -> None:
            runs[i][0] += 1
            if isinstance(out, Tensor) and out.grad_fn is not None:
                out.grad_fn.register_hook(lambda *_: runs[i].__setitem__(1, runs[i][1] + 1))
        return count

    for i, layer in enumerate(net):
        layer.register_forward_hook(counter(i))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        costs = _learner(m, "measure_layer_costs")(net, sample, repeats=repeats)
    finally:
        torch.set_num_threads(threads)
    return {"costs": costs, "grads_left": any(p.grad is not None for p in net.parameters()), "runs": runs}


def task_engine_run(m: Any, fn: str, M: int, K: int, model: dict, x: Tensor, y: Tensor, seed: int) -> dict:
    from gpipe_core import GPipe

    table = codec.plain_table(_learner(m, fn)(M, K))
    net = harness.build(model)
    pipe = GPipe(net, partitions=K, chunks=M, schedule=table, devices="cpu")
    loss = pipe.step(x, y, nn.functional.cross_entropy, seed=seed)
    return {"loss": loss, "grads": harness.grads(net), "balance": list(pipe.balance)}


def task_recompute_isolated(m: Any, model: dict, x: Tensor, grad_output: Tensor | None, seed: int,
                            loss: bool) -> dict:
    return harness.run_isolated(_learner(m, "MyRecompute")(), harness.build(model), x, seed, grad_output, loss)


def task_recompute_gpipe(m: Any, model: dict, balance: list[int], M: int, x: Tensor, y: Tensor, seed: int,
                         schedule: Any) -> dict:
    from gpipe_core import GPipe

    net = harness.build(model)
    pipe = GPipe(net, balance=balance, chunks=M, checkpoint=_learner(m, "MyRecompute")(), schedule=schedule,
                 devices="cpu")
    loss = pipe.step(x, y, nn.functional.cross_entropy, seed=seed)
    return {"loss": loss, "grads": harness.grads(net)}


def task_recompute_saved(m: Any, model: dict, x: Tensor) -> dict:
    from gpipe_core.engine.memory import MemoryMeter
    from gpipe_core.engine.rng import StageRandom

    net = harness.build(model)
    rng, meter = StageRandom(net, torch.device("cpu")), MemoryMeter(list(net.parameters()))
    try:
        with rng.active(), meter.saving():
            out, saved = _learner(m, "MyRecompute")().forward(net, x, rng)
    finally:
        rng.remove()
    held = _tensors_in(saved)
    return {"held_by_autograd": int(meter.current), "out_graph": isinstance(out, Tensor) and out.grad_fn is not None,
            "saved": [[int(t.numel() * t.element_size()), t.grad_fn is not None] for t in held],
            "rng_bytes": int(rng.get_state().numel())}


def _tensors_in(obj: Any, depth: int = 0) -> list[Tensor]:
    if isinstance(obj, Tensor):
        return [obj]
    if depth > 4:
        return []
    if type(obj) is dict:
        obj = list(obj.values())
    if type(obj) in (list, tuple):
        return [t for item in obj for t in _tensors_in(item, depth + 1)]
    if hasattr(obj, "__dict__") and not callable(obj):
        return _tensors_in(dict(vars(obj)), depth + 1)
    return []


def task_recompute_memory(m: Any, model: dict, K: int, M: int, x: Tensor, y: Tensor) -> dict:
    from gpipe_core import GPipe

    pipe = GPipe(harness.build(model), partitions=K, chunks=M, checkpoint=_learner(m, "MyRecompute")(), devices="cpu")
    pipe.step(x, y, harness.loss_function("energy"), measure_memory=True)
    return {"memory": [int(b) for b in pipe.memory]}


def task_assemble(m: Any, model: dict, costs: list[float], K: int, M: int, x: Tensor, y: Tensor, seed: int,
                  sgd_steps: int) -> dict:
    from gpipe_core import GPipe

    net = harness.build(model)
    pipe = _learner(m, "assemble")(net, costs, K, M)
    out: dict[str, Any] = {"is_gpipe": type(pipe) is GPipe}
    if type(pipe) is not GPipe:
        return out
    policy = getattr(pipe, "checkpoint", None)
    out.update(K=pipe.K, M=pipe.chunks, balance=list(pipe.balance), table=pipe.table,
               learner_policy=type(policy) is getattr(m, "MyRecompute", None),
               policy=codec.type_name(policy))
    try:  # the pipe's make-up is reported even when it cannot run, so the judge names the missing part
        out["loss"] = pipe.step(x, y, nn.functional.cross_entropy, seed=seed)
        out["grads"] = harness.grads(net)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
        losses = []
        for _ in range(sgd_steps):
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(pipe.step(x, y, nn.functional.cross_entropy, seed=seed).item()))
            optimizer.step()
        out["losses"] = losses
    except Exception as exc:  # noqa: BLE001 - reported as data
        out["step_error"] = error_data(exc)
    return out


def _recorded(stage: Any, kind: str, calls: list) -> Any:
    method = getattr(stage, {"F": "forward", "B": "backward"}[kind])

    def call(*args: Any, **kwargs: Any) -> Any:  # positional or by name, as Stage's own signature allows
        microbatch = args[0] if args else kwargs.get("microbatch")
        calls.append([kind, microbatch if type(microbatch) is int else codec.type_name(microbatch), stage.index])
        return method(*args, **kwargs)

    return call


def task_execute(m: Any, model: dict, balance: list[int], table: list, M: int, x: Tensor, y: Tensor,
                 seed: int) -> dict:
    """The learner's ``run_table`` on real stages; every stage call recorded in the order it was made."""
    net = harness.build(model)
    stages, xs = harness.stages_for_step(net, balance, x, y, M, seed, checkpoint=_storing())
    calls: list[list[Any]] = []
    for stage in stages:
        stage.forward, stage.backward = _recorded(stage, "F", calls), _recorded(stage, "B", calls)
    losses = _learner(m, "run_table")(stages, table, xs)
    return {"losses": losses, "grads": harness.grads(net), "calls": calls}


def task_train(m: Any, model: dict, balance: list[int], table: list, M: int, x: Tensor, y: Tensor,
               optimizer: list, steps: int, stale: bool = False) -> dict:
    from gpipe_core import GPipe

    net = harness.build(model)
    pipe = GPipe(net, balance=balance, chunks=M, schedule=table, checkpoint=_storing(), devices="cpu")
    if stale:  # a step that was only measured leaves its gradients in .grad: the loop must clear them first
        pipe.step(x, y, nn.functional.cross_entropy)
    opt = harness.make_optimizer(optimizer, net.parameters())
    losses = _learner(m, "train")(pipe, x, y, nn.functional.cross_entropy, opt, steps)
    return {"losses": losses}


def _storing() -> Any:
    """A policy that keeps the autograd graph (what ``checkpoint="never"`` does), for the tasks execute and train.

    While 05 is graded the grading view has no body for gpipe_core's own policies (any of them, or a subclass,
    passes a recomputation check that compares gradients), so the two tasks that grade a training loop and an
    executor bring this one. It is made for those two tasks only: a learner's MyRecompute, graded in other
    children, cannot ask for one (the caller must be one of the two tasks).
    """
    if sys._getframe(1).f_code not in (task_execute.__code__, task_train.__code__):
        raise PermissionError("the probe lends its storing policy to its tasks execute and train only")

    class Store:
        def forward(self, run: Any, x: Tensor, rng: Any) -> tuple[Tensor, Any]:
            x = x.detach().requires_grad_(x.requires_grad)
            with torch.enable_grad():
                out = run(x)
            return out.detach(), (x, out)

        def backward(self, run: Any, saved: Any, grad_output: Tensor | None, rng: Any) -> Tensor | None:
            x, out = saved
            torch.autograd.backward(out, grad_output)
            return x.grad

        def graph(self, run: Any, saved: Any, rng: Any) -> Any:
            return saved

    return Store()


def task_micro_batch_loss(m: Any, model: dict, x: Tensor, y: Tensor, loss: str, M: int, steps: int) -> dict:
    net = harness.build(model)
    weighted = _learner(m, "micro_batch_loss")(harness.loss_function(loss), int(x.shape[0]))
    if not callable(weighted):
        return {"callable": False}
    sample = weighted(net(x[:2]), y[:2])
    net.zero_grad(set_to_none=True)
    return {"callable": True, "sample": sample, "grads": harness.torch_pipeline_grads(net, x, y, weighted, M, steps)}


TASKS = {name.removeprefix("task_"): fn for name, fn in globals().items() if name.startswith("task_")}


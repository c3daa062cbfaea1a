"""Honest solutions of assignment 05's assembly, training and predictions, and of assignment 06.

Test data for the review (see :mod:`autograder.selftest.honest`): the three
learners of ``honest_05``, in the same styles. Every source is one solution
cell, keyed by grade id.
"""

from __future__ import annotations

SOURCES: dict[str, dict[str, dict[str, str]]] = {
    "05_assembling": {
        "gita": {
            "assemble": '''\
def assemble(model: nn.Sequential, costs: Sequence[float], K: int, M: int) -> GPipe:
    balance = my_partition(costs, K)
    table = my_schedule(M, K)
    policy = MyRecompute()
    return GPipe(model, balance=balance, chunks=M, schedule=table, checkpoint=policy, devices=DEVICE)
''',
            "train": '''\
def train(pipe: GPipe, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor],
          optimizer: torch.optim.Optimizer, steps: int) -> list[float]:
    history = []
    step = 0
    while step < steps:
        optimizer.zero_grad()
        value = pipe.step(x, y, loss_fn)
        history.append(value.item())
        optimizer.step()
        step += 1
    return history
''',
            "predictions": '''\
def predict_bubble(M: int, K: int) -> float:
    return (K - 1) / (M + K - 1)


def predict_peak_held(M: int, K: int) -> int:
    return M


def predict_speedup(M: int, K: int) -> float:
    return K * M / (M + K - 1)
''',
        },
        "hugo": {
            "assemble": '''\
def assemble(model: nn.Sequential, costs: Sequence[float], K: int, M: int) -> GPipe:
    return GPipe(model, chunks=M, devices=DEVICE, checkpoint=MyRecompute(),
                 schedule=my_schedule(M, K), balance=my_partition(costs, K))
''',
            "train": '''\
def train(pipe: GPipe, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor],
          optimizer: torch.optim.Optimizer, steps: int) -> list[float]:
    def one_step():
        optimizer.zero_grad(set_to_none=True)
        loss = pipe.step(x, y, loss_fn)
        optimizer.step()
        return float(loss)

    return [one_step() for _ in range(steps)]
''',
            "predictions": '''\
def predict_bubble(M: int, K: int) -> float:
    return 1 - M / (M + K - 1)


def predict_peak_held(M: int, K: int) -> int:
    return int(M)


def predict_speedup(M: int, K: int) -> float:
    return (M * K) / (K + M - 1)
''',
        },
        "ines": {
            "assemble": '''\
def assemble(model: nn.Sequential, costs: Sequence[float], K: int, M: int) -> GPipe:
    settings = dict(balance=my_partition(costs, K), chunks=M, schedule=my_schedule(M, K))
    return GPipe(model, checkpoint=MyRecompute(), devices=DEVICE, **settings)
''',
            "train": '''\
def train(pipe: GPipe, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor],
          optimizer: torch.optim.Optimizer, steps: int) -> list[float]:
    recorded = []
    for _ in range(steps):
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None
        recorded.append(pipe.step(x, y, loss_fn).detach().item())
        optimizer.step()
    return recorded
''',
            "predictions": '''\
def predict_bubble(M: int, K: int) -> float:
    busy, total = M, M + K - 1
    return (total - busy) / total


def predict_peak_held(M: int, K: int) -> int:
    forwards_before_first_backward = M
    return forwards_before_first_backward


def predict_speedup(M: int, K: int) -> float:
    one_device = K * M
    pipeline = M + K - 1
    return one_device / pipeline
''',
        },
    },
    "06_distributed": {
        "gita": {
            "micro_batch_loss": '''\
def micro_batch_loss(loss_fn: LossFn, batch_size: int) -> LossFn:
    def weighted(output: Tensor, target: Tensor) -> Tensor:
        share = output.shape[0] / batch_size
        return share * loss_fn(output, target)

    return weighted
''',
        },
        "hugo": {
            "micro_batch_loss": '''\
def micro_batch_loss(loss_fn: LossFn, batch_size: int) -> LossFn:
    return lambda out, tgt: loss_fn(out, tgt) * len(out) / batch_size
''',
        },
        "ines": {
            "micro_batch_loss": '''\
from functools import partial


def _scaled_loss(loss_fn, batch_size, output, target):
    n_i = output.size(0)
    return loss_fn(output, target) * n_i / batch_size


def micro_batch_loss(loss_fn: LossFn, batch_size: int) -> LossFn:
    return partial(_scaled_loss, loss_fn, batch_size)
''',
        },
    },
}

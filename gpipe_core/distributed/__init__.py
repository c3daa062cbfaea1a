"""The same pipeline on the engine PyTorch maintains: ``torch.distributed.pipelining``.

The course's engine runs K stages as K threads of one process. That stops at
one machine. ``torch.distributed.pipelining`` runs one *process* per stage,
talks between them with point-to-point sends (gloo on CPUs, NCCL on GPUs) and
is launched by ``torchrun``, on one machine or many. This module maps the
course's vocabulary onto it, so a learner keeps their model, balance, M and
schedule name and only changes how the program starts:

=====================  ==========================================================
course engine          torch.distributed.pipelining (what :class:`DistributedPipe` does)
=====================  ==========================================================
``Stage`` j            ``PipelineStage(submodule, stage_index=j, num_stages=K)`` on rank j
``balance``            the slice ``split_module(model, balance)[rank]`` each rank keeps
``schedule="gpipe"``   ``ScheduleGPipe``; ``"1f1b"``: ``Schedule1F1B`` (needs M >= K)
``chunks=M``           ``n_microbatches=M``; torch splits the batch with ``tensor_split``
weights n_i/N          the loss torch calls per micro-batch is weighted by n_i/N and
                       ``scale_grads=False``: torch's default divides every ``.grad``
                       by M *after* backward, which also divides gradient that was
                       already accumulated from an earlier step
``checkpoint``         ``torch.utils.checkpoint`` around the stage's layers
                       (``except_last`` skips the last micro-batch, as in the engine)
dropout seeds          micro-batch i on stage j runs right after
                       ``torch.manual_seed(stage_seed(seed, i, j))``, the rule
                       :func:`~gpipe_core.engine.reference.sequential_step` replays
``Trace``              every rank times its F/R/B actions; :meth:`gather_trace`
                       collects them on rank 0 as one :class:`~gpipe_core.engine.trace.Trace`
``StageError``         a failing action raises ``StageError`` on its rank; torchrun
                       then stops every other rank and exits with the error
=====================  ==========================================================

One limit comes from torch, not from this wrapper: micro-batches must be
equal (torch sizes each receive buffer from the first micro-batch, so the batch
must be a multiple of M; we check it and say so). :class:`DistributedPipe`
runs torch's fixed GPipe and 1F1B classes by name; any table of ours (a
learner's, a built-in of :mod:`gpipe_core.schedules.zoo`, split backwards and virtual
stages included) runs on torch's own action runtime through
:class:`~gpipe_core.distributed.export.TablePipe`, and
:mod:`~gpipe_core.distributed.torch_ir` brings torch's schedules the other way,
into our validator and simulator.

Launch: ``gpipe train --distributed ...`` starts torchrun for you;
``torchrun --nproc-per-node K -m gpipe_core.distributed ...`` takes the same
flags as ``gpipe train``; two machines add ``--nnodes 2 --node-rank R
--rdzv-endpoint HOST:PORT``.
"""

from .export import TablePipe
from .group import default_device, init, one_process
from .launch import launch, torchrun_command, train, worker_argv
from .pipe import SCHEDULES, DistributedPipe

__all__ = ["SCHEDULES", "DistributedPipe", "TablePipe", "default_device", "init", "launch", "one_process",
           "torchrun_command", "train", "worker_argv"]

"""``torchrun --nproc-per-node K -m gpipe_core.distributed [gpipe train flags]``."""

from torch.distributed.elastic.multiprocessing.errors import record

from .launch import main

raise SystemExit(record(main)())

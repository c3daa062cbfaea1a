"""``torchrun --nproc-per-node K -m gpipe_core.distributed [gpipe train flags]``: one worker of the pipeline.

The entry point torchrun starts on every rank. Nothing imports this module,
so it alone may use both the command line's parser (``gpipe_core.cli``) and
the worker's job (``gpipe_core.distributed.launch.train``) without a cycle.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from torch.distributed.elastic.multiprocessing.errors import record

from ..cli import build_parser
from .group import NoTorchrun
from .launch import train


@record
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    if args.distributed:
        raise SystemExit("gpipe_core.distributed already runs under torchrun: drop --distributed")
    try:
        return train(args)
    except (ValueError, TypeError, NoTorchrun) as exc:  # a setting that cannot work: say which, as `gpipe train` does
        rank = os.environ.get("RANK")
        print(f"gpipe (rank {rank}): {exc}" if rank else f"gpipe: {exc}", file=sys.stderr)
        return 2


raise SystemExit(main())

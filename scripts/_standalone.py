"""Running a ``coro bench`` module on its own (``python -m scripts.bench_pg``).

A benchmark module provides ``add_arguments(parser)`` and ``run(args)`` for
``coro bench``; ``standalone`` builds the same command line for the module
run directly, so each module's ``main`` is one call.
"""

from __future__ import annotations

import argparse
from typing import Callable, Sequence

__all__ = ["standalone"]


def standalone(doc: str | None, add_arguments: Callable[[argparse.ArgumentParser], None],
               run: Callable[[argparse.Namespace], int], argv: Sequence[str] | None = None,
               prog: str | None = None) -> int:
    """Parse ``argv`` with the module's arguments and run it.

    Args:
        doc: the module's docstring (its first line describes the command).
        add_arguments, run: the module's ``coro bench`` hooks.
        argv: the arguments (default: the process's).
        prog: the program name shown in usage (default: argparse's).

    Returns:
        What ``run`` returns (the exit status).
    """
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0] if doc else None)
    add_arguments(parser)
    return run(parser.parse_args(argv))

"""The command line (`deploy.py`): argparse -> typed options -> one domain call -> output."""

from jobtory_stack.cli.main import build_parser, main

__all__ = ["build_parser", "main"]

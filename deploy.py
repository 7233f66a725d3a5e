#!/usr/bin/env python3
"""Thin entry point; everything lives in jobtory_stack.cli (also installed as `deploy`)."""

import sys

from jobtory_stack.cli import main

if __name__ == "__main__":
    sys.exit(main())

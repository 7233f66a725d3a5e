"""The jobtory stack: one spec (stack.toml) turned into a local replica, AWS resources and hosts."""

__version__ = "0.1.0"

"""The AWS reconciler: one module per resource family, each desired -> observed -> diff -> apply.

Resources are owned through tags (`stack`, `env`): there is no state file, and
`destroy` removes exactly what carries the environment's tags. See docs/aws.md.
"""

"""Replica-only tooling: the stand-ins for what AWS runs (the ALB stand-in, the fleet's
helpers). Not part of the product: absent from the wheel and from host releases; the
replica's images and tests use it. It may import the product, never the reverse."""

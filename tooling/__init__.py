"""What runs around the hub but is not part of it: the local stack's installer and runner
(``stack``, ``localrun``), the device simulator (``simulate``), the demo and the benchmark.

The product (``hub``, ``streams``) never imports this package (``make lint``'s import contract);
its commands join ``hub``'s through the ``hub.commands`` entry points (``pyproject.toml``).
"""

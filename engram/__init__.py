"""The application on top of the layers: the engine process, the CLI, the demo, local queries.

Layers, lowest first (``tests/test_layers.py`` fails the build on an upward import):

- ``engine``: the kernel and SDK (events, errors, settings, stream, server, client);
  imports nothing of the others.
- ``projections``: pure state builders and their stores; imports only ``engine``.
- ``consumers``: the bus side (runners, replay, snapshots, the query service); imports
  ``engine`` and ``projections``.
- ``engram``: this package; composes the others into a running engine and its command line.
"""

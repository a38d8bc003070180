"""The testbed telemetry hub: settings, registry, storage, API and the ``hub`` command."""

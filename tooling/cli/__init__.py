"""The tooling's ``hub`` sub-commands (``stack``, ``simulate``, ``bench``, ``demo``)."""

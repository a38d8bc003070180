"""The programme: demonstrations applied, decided, changed and ended through the hub."""

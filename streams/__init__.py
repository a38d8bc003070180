"""The stream processors: intake, event-time windows, KPI judgement, routing, and the Faust app."""

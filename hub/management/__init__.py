"""The management view behind the API and `hub report`: its SQL and the scorecard."""

"""The management API and its web page (`hub api`)."""

"""The API's routes, a router per part of the management view."""

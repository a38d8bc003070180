"""Telling people: alert and incident delivery to webhooks and e-mail (`hub notify`)."""

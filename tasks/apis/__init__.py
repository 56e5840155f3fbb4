"""API clients and the capabilities built on them (http, llm, research, geocoding, messaging, drive, batches, phones, dedupe)."""

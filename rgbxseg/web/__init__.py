"""The annotation web app: project store, export, server and UI."""

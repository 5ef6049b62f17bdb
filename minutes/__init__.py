"""minutes: a streaming meeting-transcription server.

This package holds what every other package shares: the CLI entry point, configuration
loading, logging set-up and the typed result types (`minutes.types`).
"""

__version__ = "0.1.0"

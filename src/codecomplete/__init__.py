"""codecomplete: self-hosted code completion (serve, curate, train)."""

__version__ = "0.1.0"

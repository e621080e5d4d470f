"""asyncguard: a pull-request reviewer for async Python (FastAPI + SQLAlchemy asyncio)."""

__version__ = "0.1.0"

"""Local stand-ins for the external APIs the flows call (same paths, payloads, status codes)."""
from emulators.server import Emulator

__all__ = ["Emulator"]

"""wa-keeper connector: the daemon that keeps WhatsApp sessions open and safe."""

__version__ = "0.1.0"

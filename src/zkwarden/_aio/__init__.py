"""The asyncio I/O layer (the only code that talks to the network)."""

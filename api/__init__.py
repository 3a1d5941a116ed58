"""
The edges users touch: the FastAPI app, its WebSocket protocol, and the CLI.
"""

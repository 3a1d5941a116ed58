"""
The analysts' tools: projection status, rebuilds and the dead-letter queue.
"""

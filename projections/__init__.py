"""
The read side: pure "event in, rows out" logic over ports, one adapter per store.
"""

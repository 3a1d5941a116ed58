"""
Adapters, settings and wiring: everything that touches the outside world.
"""

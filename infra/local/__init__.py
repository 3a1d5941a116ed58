"""
Scripts that install and start real servers on 127.0.0.1 for integration tests.
"""

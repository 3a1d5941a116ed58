"""
The write side: command models and the application service that runs them.
"""

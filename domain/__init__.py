"""
The chat model: one ``Conversation`` aggregate per pair of users.

Nothing in this package performs I/O, logs, or reads settings.
"""

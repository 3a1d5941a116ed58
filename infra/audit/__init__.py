"""
``duetto audit``: prove from the log alone what was said and seen.

``sources`` reads the log (the event store's notification log, or the Kafka
topic) as ``LogRecord``s; ``decoding`` turns a record into its domain event,
loudly refusing what this build cannot read; ``verify``, ``export`` and
``show`` are the three things an auditor does with them; ``commands`` wires
them to the command line.
"""

"""
Cassandra at the edge: the history read model, its schema and its session.
"""

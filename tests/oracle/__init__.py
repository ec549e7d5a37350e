"""The SQLite oracle: rule programs translated into plain SQLite and replayed with the stdlib's sqlite3.

The translation is the plain meaning of the SQL. Where riskgw's semantics differ from SQLite
(docs/semantics.md, "Differences from SQLite"), the translation writes the difference out
explicitly, each in one place in `sqlfuncs` or `translate`, so that SQLite decides everything else.
"""

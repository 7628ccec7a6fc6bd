"""The critic's regularisers, one module each with its `TERM`; the registry is
objectives/regularizers.py."""

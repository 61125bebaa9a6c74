"""Generic chain kind: any HTTP JSON endpoint, located by configured dotted paths."""

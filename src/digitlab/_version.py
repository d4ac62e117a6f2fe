"""The package version, in a module of its own so that any layer can import it without the
package's `__init__` (which imports every layer)."""

__version__ = "0.2.0"

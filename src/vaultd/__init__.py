"""vaultd: answer the EC2 instance metadata service with STS role credentials."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # The version is written once, in pyproject.toml; the installed package's metadata carries
    # it. Read lazily (PEP 562): the control commands that never show it do not pay for it.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

        try:
            return version("vaultd")
        except PackageNotFoundError:  # running from a source tree that was never installed
            return "0+unknown"
    raise AttributeError(f"module 'vaultd' has no attribute {name!r}")

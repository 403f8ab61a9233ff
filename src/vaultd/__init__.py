"""vaultd: answer the EC2 instance metadata service with STS role credentials."""

__version__ = "0.1.0"

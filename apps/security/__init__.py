"""API keys, roles, encrypted secrets, audit, backups and the operator account."""

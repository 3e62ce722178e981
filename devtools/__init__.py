"""Development-only tooling (lint contracts); never imported by the running stack."""
